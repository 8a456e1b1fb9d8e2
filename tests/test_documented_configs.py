"""Every documented command and every config composition resolves to the source, vocabulary and fold it means.

jsonargparse keeps the ``init_args`` that an old and a new ``class_path`` share when a later config switches the
class, so a default source carrying ``root``/``vocabulary`` silently leaked them into DFEW (integer labels 1-7 read
through 8 class names: every class name wrong, UAR/WAR unchanged). These tests resolve configs exactly as the CLI
does (FERCLI's own parser, nothing instantiated but the source) and check the meaning, not just that parsing works.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from datamodules.labels import get_vocabulary
from datamodules.sources import DFEWSource, LabelError, ManifestSource
from fer_zoo.training.cli import instantiate_spec, parse_fit_config

REPO = Path(__file__).resolve().parents[1]

# The data set each source class reads and the vocabulary its integer labels / names must map through.
EXPECTED = {
    "SampleSource": ("image_folder", "faces8"),
    "DFEWSource": ("dfew", "dfew"),
    "MAFWSource": ("mafw", "mafw_official"),
    "FERV39KSource": ("ferv39k", "ferv39k"),
}
DATA_CONFIGS = {  # configs/data/<x>.yaml -> (source class, fold it sets)
    "sample": ("SampleSource", None),
    "dfew": ("DFEWSource", 1),
    "mafw": ("MAFWSource", 1),
    "ferv39k": ("FERV39KSource", None),
}
# my_clips.yaml names your own manifest (a user copies and edits it): tests/test_own_clips.py resolves it.
# abaw_*.yaml are the dense (per-frame) task on Aff-Wild2: tests/test_dense_configs.py resolves them.
# ablation_abaw.yaml is an ablation grid over them: tests/test_ablate.py resolves it.
# demo_faces.yaml is the quick path's manifest of face crops that `make demo` writes: tests/test_quick_path.py runs it.
TRAINING_CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.yaml")
                          if p.name not in {"extract.yaml", "ablation.yaml", "ablation_abaw.yaml", "my_clips.yaml",
                                            "demo_faces.yaml"}
                          and not p.name.startswith("abaw_"))


def _fit_args(training: str, *more: str) -> list[str]:
    """``--config configs/<training>`` (+ more); presets that name no modalities (demo.yaml) get one."""
    import yaml

    names = (yaml.safe_load((REPO / "configs" / training).read_text()).get("data") or {}).get("modalities")
    return ["--config", f"configs/{training}", *more, *([] if names else ["--data.modalities=[resnet]"])]


def _check(cfg, source_class: str, fold: int | None) -> None:
    source = instantiate_spec(cfg.data.source)
    assert type(source).__name__ == source_class
    dataset, vocab_name = EXPECTED[source_class]
    assert source.name == dataset
    assert cfg.data.vocabulary is None  # the DataModule takes the source's vocabulary
    assert source.vocabulary.name == vocab_name
    assert list(source.vocabulary.classes) == list(get_vocabulary(vocab_name).classes)
    assert cfg.data.fold == fold


def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # config paths are relative to the repository, as in the README and docs/


@pytest.mark.slow
@pytest.mark.parametrize("data", sorted(DATA_CONFIGS))
@pytest.mark.parametrize("training", TRAINING_CONFIGS)
def test_training_config_composed_with_each_data_config(training: str, data: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _in_repo(monkeypatch)
    cfg = parse_fit_config(_fit_args(training, "--config", f"configs/data/{data}.yaml"))
    _check(cfg, *DATA_CONFIGS[data])


@pytest.mark.parametrize("training", TRAINING_CONFIGS)
def test_training_config_alone_is_the_sample(training: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _in_repo(monkeypatch)
    _check(parse_fit_config(_fit_args(training)), "SampleSource", None)


def test_switching_class_path_on_the_command_line_inherits_nothing(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _in_repo(monkeypatch)
    cfg = parse_fit_config(_fit_args("demo.yaml", "--data.source.class_path=datamodules.sources.DFEWSource",
                                     "--data.source.init_args.root=/data/DFEW"))
    _check(cfg, "DFEWSource", None)
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path,label\na.mp4,happy\nb.mp4,sad\n")
    cfg = parse_fit_config(_fit_args("demo.yaml", "--data.source.class_path=datamodules.sources.ManifestSource",
                                     f"--data.source.init_args.csv={manifest}"))
    source = instantiate_spec(cfg.data.source)
    assert isinstance(source, ManifestSource)
    assert source.root is None and source.base == tmp_path  # paths resolve against the CSV, not the sample
    assert [c.path for c in source.clips()] == [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]


def documented_pages() -> list[Path]:
    """The pages that document commands: README.md and every ``docs/*.md`` (the README links to them)."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    assert len(pages) > 1, "docs/*.md not found: the documented commands live there"
    return pages


def _readme_commands() -> list[list[str]]:
    """``python -m fer_zoo fit|validate|test|ablate`` lines of the code blocks of README.md and docs/*.md
    (continuations joined)."""
    blocks = []
    for page in documented_pages():
        inside = False
        for line in page.read_text().splitlines():
            if line.startswith("```"):
                inside = not inside
                blocks.append("")
            elif inside:
                blocks[-1] += line + "\n"
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if re.match(r"python -m fer_zoo (fit|validate|test|ablate)\b", line) and "<" not in line:
                commands.append(shlex.split(line)[3:])
    return commands


def test_readme_training_commands_resolve_to_their_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    _in_repo(monkeypatch)
    commands = _readme_commands()
    # configs/my_clips.yaml and your copy of it name your own manifest: tests/test_own_clips.py resolves those
    # configs/abaw_*.yaml (the dense task on Aff-Wild2): tests/test_dense_configs.py resolves those
    fits = [c for c in commands if c[0] in {"fit", "validate", "test"} and not any(
        a.endswith("my_clips.yaml") or Path(a).name.startswith("abaw_") for a in c)]
    assert len(fits) >= 2, f"the fit commands of README.md and docs/*.md were not found: {commands}"
    for cmd in fits:
        args = [a for a in cmd[1:] if not a.startswith("--print_config")]
        cfg = parse_fit_config(args)
        data = [Path(a).stem for a in args if a.startswith("configs/data/")]
        source_class, fold = DATA_CONFIGS[data[-1]] if data else ("SampleSource", None)
        if "--data.fold" in args:
            fold = int(args[args.index("--data.fold") + 1])
        _check(cfg, source_class, fold)


def test_ablation_config_base_resolves_to_the_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    _in_repo(monkeypatch)
    spec = yaml.safe_load((REPO / "configs/ablation.yaml").read_text())
    args = [a for b in spec["base"] for a in ("--config", b)] + spec["overrides"] + ["--data.modalities=[pose]"]
    _check(parse_fit_config(args), "SampleSource", None)


def test_extract_config_switching_source_inherits_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from fer_zoo.extraction.command import build_parser

    _in_repo(monkeypatch)
    parser = build_parser()
    cfg = parser.parse_args(["--config", "configs/extract.yaml"])
    assert type(parser.instantiate_classes(cfg).source).__name__ == "SampleSource"
    cfg = parser.parse_args(["--config", "configs/extract.yaml",
                             "--source.class_path", "datamodules.sources.DFEWSource",
                             "--source.init_args.root", "/data/DFEW", "--store_root", "features/dfew"])
    source = parser.instantiate_classes(cfg).source
    assert isinstance(source, DFEWSource) and source.vocabulary.name == "dfew"


@pytest.mark.parametrize("vocabulary", ["faces8", "mafw_official"])
def test_dfew_refuses_a_vocabulary_of_other_classes(vocabulary: str) -> None:
    with pytest.raises(LabelError, match=rf"vocabulary '{vocabulary}' \(\d+ classes.*custom_order: true"):
        DFEWSource("/data/DFEW", vocabulary=vocabulary)
    assert DFEWSource("/data/DFEW", vocabulary=vocabulary, custom_order=True).vocabulary.name == vocabulary
    assert DFEWSource("/data/DFEW", vocabulary="ferv39k").vocabulary.name == "ferv39k"  # same 7 classes: allowed
