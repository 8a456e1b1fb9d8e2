"""Your own labeled clips: labels file -> manifest, the inferred-vocabulary spelling check, extract --fit_config,
and the README's path end to end on the shared real videos (preprocess -> manifest -> extract -> fit ->
predict-video)."""

from __future__ import annotations

import csv
import json
import shlex
import shutil
from pathlib import Path

import pytest

from datamodules.labels import LabelSpellingError, check_inferred_labels, edit_distance, near_duplicate_labels
from datamodules.sources import LabelError, ManifestSource
from fer_zoo.cli_errors import UsageError
from fer_zoo.video.face_track import InputError
from fer_zoo.video.manifest import LabelRow, match_labels, print_summary, read_labels, write_manifest

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------------- label spellings


@pytest.mark.parametrize(("a", "b", "d"), [("happiness", "hapiness", 1), ("surprise", "suprrise", 2), ("", "abc", 3),
                                           ("sad", "sad", 0), ("kitten", "sitting", 3)])
def test_edit_distance(a: str, b: str, d: int) -> None:
    assert edit_distance(a, b) == edit_distance(b, a) == d


def test_near_duplicates_by_case_spacing_synonym_and_typo() -> None:
    counts = {"happiness": 563, "HAPPINESS": 37, "hapiness": 1, "Sad": 2, "sadness": 3, "very_happy": 1,
              "very happy": 2, "anger": 5, "neutral": 7, "fear": 3, "contempt": 1}
    groups = near_duplicate_labels(counts)
    assert groups == [{"happiness": 563, "HAPPINESS": 37, "hapiness": 1}, {"sadness": 3, "Sad": 2},
                      {"very happy": 2, "very_happy": 1}]
    assert near_duplicate_labels({"anger": 3, "neutral": 2, "fear": 1, "sadness": 4}) == []
    assert near_duplicate_labels({"fear": 3, "bear": 1}) == [{"fear": 3, "bear": 1}]  # short names: 1 edit
    assert near_duplicate_labels({"pain": 3, "rage": 1}) == []  # 2 edits apart is not a typo of a short name


def test_spelling_check_names_the_spellings_their_counts_and_the_way_out() -> None:
    with pytest.raises(LabelSpellingError) as err:
        check_inferred_labels({"happiness": 5, "hapiness": 1, "neutral": 3}, "m.csv")
    assert str(err.value).startswith("m.csv: labels that look like one class spelt several ways: 'happiness' x5, "
                                     "'hapiness' x1.")
    assert "vocabulary: [happiness, neutral]" in str(err.value)


def test_manifest_with_a_misspelt_label_stops_unless_the_vocabulary_is_named(tmp_path: Path) -> None:
    rows = ["a.mp4,happiness", "b.mp4,Happiness", "c.mp4,hapiness", "d.mp4,neutral", "e.mp4,happy", "f.mp4,neutral"]
    csv_path = _write(tmp_path / "m.csv", "path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(LabelSpellingError) as err:
        ManifestSource(csv=csv_path)
    assert "'happiness' x1, 'Happiness' x1, 'hapiness' x1, 'happy' x1" in str(err.value)
    assert str(csv_path) in str(err.value)
    # Named classes: case and synonyms map, the typo is refused with its line.
    with pytest.raises(LabelError, match=r"m\.csv:4: label 'hapiness' is not in the 'manifest' vocabulary"):
        ManifestSource(csv=csv_path, vocabulary=["happiness", "neutral"]).clips()
    _write(csv_path, "path,label\n" + "\n".join(r for r in rows if "hapiness" not in r) + "\n")
    src = ManifestSource(csv=csv_path, vocabulary=["neutral", "happiness"])
    assert src.vocabulary.classes == ("neutral", "happiness")  # the order given
    assert [c.label for c in src.clips()] == ["happiness", "happiness", "neutral", "happiness", "neutral"]


@pytest.mark.parametrize("command", ["extract", "fit"])
def test_a_misspelt_label_stops_extract_and_fit_with_one_line(command: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from fer_zoo.__main__ import main

    monkeypatch.chdir(tmp_path)
    _readme_setup(tmp_path, "a.jpg,happiness,\nb.jpg,hapiness,\nc.jpg,neutral,\n")
    argv = [*readme_commands()[command], "--wandb", "false"][: None if command == "fit" else -2]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"python -m fer_zoo {command}: error: data.source: data/my_clips/manifest.csv: labels that look "
                   "like one class spelt several ways: 'happiness' x1, 'hapiness' x1. The classes are inferred from "
                   "the labels (no vocabulary named), so fer_zoo will not guess which spellings are one class. Fix "
                   "the spellings in data/my_clips/manifest.csv, or name the classes, e.g. vocabulary: [happiness, "
                   "neutral] (then case and known synonyms such as happy/happiness map to one class, and any other "
                   "spelling is an error naming its line)."]


def test_manifest_with_empty_labels_lists_the_lines_to_fill_in(tmp_path: Path) -> None:
    csv_path = _write(tmp_path / "m.csv", "path,label,subject\na.mp4,,\nb.mp4,neutral,\nc.mp4,,\n")
    for vocab in (None, ["neutral"]):
        with pytest.raises(LabelError, match=r"m\.csv: 2 of 3 clips have no label \(lines 2, 4\): fill in the label"):
            ManifestSource(csv=csv_path, vocabulary=vocab).clips()


# ------------------------------------------------------------------------------------- labels -> manifest


def test_labels_match_videos_by_name_stem_or_path(tmp_path: Path) -> None:
    videos = [tmp_path / "in" / "a.mp4", tmp_path / "in" / "sub" / "b.mov", tmp_path / "in" / "c.mp4"]
    ids = {v: v.stem for v in videos}
    labels = _write(tmp_path / "labels.csv", "Video,Label,Subject\na.mp4,happiness,ann\nb,neutral,\n"
                    "in/c.mp4,neutral,bob\nnot_there.mp4,fear,\n")
    rows = read_labels(labels)
    matched, unmatched = match_labels(videos, ids, rows, labels)
    assert {c: (r.label, r.subject) for c, r in matched.items()} == {"a": ("happiness", "ann"), "b": ("neutral", ""),
                                                                    "c": ("neutral", "bob")}
    assert [r.video for r in unmatched] == ["not_there.mp4"] and unmatched[0].where == f"{labels}:5"
    twice = _write(tmp_path / "twice.csv", "video,label\na.mp4,happiness\na,neutral\n")
    with pytest.raises(InputError, match=r"twice\.csv:3: video .*a\.mp4 is already labeled at .*twice\.csv:2"):
        match_labels(videos, ids, read_labels(twice), twice)
    clash = [tmp_path / "x" / "a.mp4", tmp_path / "y" / "a.mp4"]
    with pytest.raises(InputError, match="matches 2 videos"):
        match_labels(clash, {clash[0]: "a", clash[1]: "a_2"}, [LabelRow("a.mp4", "fear", "", "l.csv:2")], labels)


@pytest.mark.parametrize(("text", "needle"), [("clip,label\na.mp4,fear\n", "missing column(s) ['video']"),
                                              ("video,label\na.mp4,\n", "needs both a video and a label")])
def test_a_bad_labels_file_is_named(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(InputError) as err:
        read_labels(_write(tmp_path / "labels.csv", text))
    assert needle in str(err.value) and "labels.csv" in str(err.value)


def _index(*rows: tuple[str, str, str]) -> list[dict[str, str]]:
    return [{"clip_id": c, "status": s, "reason": r} for c, s, r in rows]


def test_manifest_is_written_and_a_rerun_keeps_what_you_typed_and_added(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    sub = "Clip/clip_224x224"
    index = _index(("a", "ok", ""), ("b", "ok", ""), ("n", "no_face", "no face found in n.mp4"))
    s = write_manifest(tmp_path, sub, index, {"a": LabelRow("a.mp4", "happiness", "ann", "l:2")})
    assert _rows(tmp_path / "manifest.csv") == [  # person: the person id within the video (clips.csv's column)
        {"path": f"{sub}/a", "label": "happiness", "subject": "ann", "person": ""},
        {"path": f"{sub}/b", "label": "", "subject": "", "person": ""}]
    assert (s.clips, s.unlabeled, s.left_out) == (2, ["b"], {"n": "no face found in n.mp4"})
    print_summary(s, True, [])
    out = capsys.readouterr().out
    assert "NOT IN MANIFEST n: no face found in n.mp4" in out and "1 clips have no label yet (b)" in out

    # You fill in b, add a photo and a split column; a rerun with a new clip keeps all of it.
    _write(tmp_path / "manifest.csv", f"path,label,subject,split\n{sub}/a,happiness,ann,\n{sub}/b,sadness,,test\n"
           "/photos/p1.jpg,neutral,,\n")
    index.append({"clip_id": "c", "status": "ok", "reason": ""})
    s = write_manifest(tmp_path, sub, index, {"c": LabelRow("c.mp4", "neutral", "", "l:4")})
    assert _rows(tmp_path / "manifest.csv") == [
        {"path": f"{sub}/a", "label": "happiness", "subject": "ann", "split": "", "person": ""},
        {"path": f"{sub}/b", "label": "sadness", "subject": "", "split": "test", "person": ""},
        {"path": "/photos/p1.jpg", "label": "neutral", "subject": "", "split": "", "person": ""},
        {"path": f"{sub}/c", "label": "neutral", "subject": "", "split": "", "person": ""}]
    assert (s.clips, s.other_rows, s.unlabeled, dict(s.labels)) == (3, 1, [], {"happiness": 1, "sadness": 1,
                                                                             "neutral": 1})
    # A spelling that the training run would refuse is pointed out already here.
    s = write_manifest(tmp_path, sub, index, {"c": LabelRow("c.mp4", "Happiness", "", "l:4")})
    print_summary(s, True, [])
    assert "LABELS look like one class spelt several ways: 'happiness' x1, 'Happiness' x1." in capsys.readouterr().out
    # --labels overrides what is there for the videos it names; a clip that lost its crops drops out.
    index[1] = {"clip_id": "b", "status": "failed", "reason": "corrupt"}
    write_manifest(tmp_path, sub, index, {"a": LabelRow("a.mp4", "anger", "", "l:2")})
    assert [(r["path"], r["label"], r["subject"]) for r in _rows(tmp_path / "manifest.csv")] == [
        (f"{sub}/a", "anger", "ann"), ("/photos/p1.jpg", "neutral", ""), (f"{sub}/c", "Happiness", "")]


def test_preprocess_refuses_a_bad_labels_file_before_any_video(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from fer_zoo.video.preprocess import main

    video = _write(tmp_path / "v.mp4", "not decoded: the labels are checked first")
    assert main([str(video), "--out", str(tmp_path / "out"), "--labels", str(tmp_path / "nope.csv")]) == 2
    assert "--labels: file not found:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------------------- extract --fit_config


def test_extract_takes_source_store_and_modalities_from_the_fit_config(tmp_path: Path) -> None:
    from fer_zoo.extraction.command import apply_fit_config, build_parser

    manifest = _write(tmp_path / "m.csv", "path,label\na.jpg,happiness\nb.jpg,neutral\n")
    cfg_text = (REPO / "configs" / "my_clips.yaml").read_text().replace("data/my_clips/manifest.csv", str(manifest))
    fit_cfg = _write(tmp_path / "my_clips.yaml", cfg_text)
    parser = build_parser()
    cfg = parser.parse_args(["--config", str(REPO / "configs" / "extract.yaml"), "--fit_config", str(fit_cfg)])
    assert apply_fit_config(parser, cfg) == ["resnet", "facemesh"]
    init = parser.instantiate_classes(cfg)
    assert isinstance(init.source, ManifestSource) and init.store_root == "features/my_clips"
    # The sample's ImageFolderSource root must not leak into the manifest source.
    assert init.source.root is None and init.source.base == tmp_path
    assert init.source.vocabulary.classes == ("happiness", "neutral")

    _write(fit_cfg, "data:\n  modalities: [resnet]\n")
    cfg = parser.parse_args(["--config", str(REPO / "configs" / "extract.yaml"), "--fit_config", str(fit_cfg)])
    with pytest.raises(UsageError, match=r"--fit_config .*my_clips\.yaml: no data\.source, data\.store_root in it"):
        apply_fit_config(parser, cfg)


def test_fit_config_errors_name_the_file_and_key(tmp_path: Path) -> None:
    from fer_zoo.extraction.command import fit_config_data

    with pytest.raises(ValueError, match="file not found"):
        fit_config_data(str(tmp_path / "none.yaml"), ["resnet"])
    f = _write(tmp_path / "f.yaml", "data:\n  store_root: s\n  modalities: [resnet]\n")
    with pytest.raises(ValueError, match=r"f\.yaml: no data\.source in it"):
        fit_config_data(str(f), ["resnet"])
    _write(f, "data:\n  source: {class_path: x}\n  store_root: s\n  modalities: [resnet/mobilenet_v2-1234, pose]\n")
    with pytest.raises(ValueError, match=r"data\.modalities \['pose'\] are not modalities of the extract config"):
        fit_config_data(str(f), ["resnet"])


# ------------------------------------------------------------------------------- the README path, end to end


def readme_commands() -> dict[str, list[str]]:
    """The ``python -m fer_zoo ...`` lines of "Your own labeled clips" (docs/own-videos.md, linked from the README), by
    command (argv after the module)."""
    from test_documented_configs import documented_pages

    heading = "\n## Your own labeled clips"
    holders = [p for p in documented_pages() if heading in p.read_text()]
    assert len(holders) == 1, f"the section {heading.strip()!r} is in {len(holders)} pages: {holders}"
    text = holders[0].read_text()
    section = text[text.index(heading) + 1:]
    end = section.find("\n## ")
    section = section if end < 0 else section[:end]
    commands = {}
    for line in section.splitlines():
        if line.startswith("python -m fer_zoo "):
            argv = shlex.split(line.split(" #")[0])[3:]
            commands[argv[0]] = argv
    assert sorted(commands) == ["extract", "fit", "predict-video", "preprocess"], commands
    return commands


def _readme_setup(tmp_path: Path, manifest_rows: str) -> None:
    """A folder laid out as the README's steps leave the repository: configs/, your copy of my_clips.yaml."""
    (tmp_path / "configs").symlink_to(REPO / "configs")
    shutil.copy(REPO / "configs" / "my_clips.yaml", tmp_path / "my_clips.yaml")  # step 3: cp configs/my_clips.yaml
    if manifest_rows:
        _write(tmp_path / "data" / "my_clips" / "manifest.csv", "path,label,subject\n" + manifest_rows)


def test_readme_commands_resolve_to_your_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fer_zoo.extraction.command import apply_fit_config, build_parser
    from fer_zoo.training.cli import instantiate_spec, parse_fit_config

    monkeypatch.chdir(tmp_path)
    _readme_setup(tmp_path, "Clip/clip_224x224/a,happiness,\n/photos/p.jpg,neutral,\n")
    cmd = readme_commands()
    assert cmd["preprocess"][cmd["preprocess"].index("--out") + 1] == "data/my_clips"  # what my_clips.yaml reads
    cfg = parse_fit_config(cmd["fit"][1:])
    fit_source = instantiate_spec(cfg.data.source)
    assert isinstance(fit_source, ManifestSource) and fit_source.base == Path("data/my_clips")
    assert fit_source.vocabulary.classes == ("happiness", "neutral") and cfg.data.vocabulary is None
    assert sorted(c.path for c in fit_source.clips()) == ["/photos/p.jpg", "data/my_clips/Clip/clip_224x224/a"]
    parser = build_parser()
    ext = parser.parse_args(cmd["extract"][1:])
    assert apply_fit_config(parser, ext) == list(cfg.data.modalities)
    ext_source = parser.instantiate_classes(ext).source
    assert ext_source == fit_source and ext.store_root == cfg.data.store_root  # both commands read the same clips
    assert cmd["predict-video"][cmd["predict-video"].index("--ckpt") + 1] == f"runs/{cfg.run_name}"

    # Every documented fit command on my_clips.yaml (e.g. import-features' example) reads the same manifest.
    from test_documented_configs import _readme_commands

    others = [c for c in _readme_commands() if c[0] == "fit" and any(a.endswith("my_clips.yaml") for a in c)]
    assert len(others) >= 2, others
    for c in others:
        other = instantiate_spec(parse_fit_config(c[1:]).data.source)
        assert isinstance(other, ManifestSource) and Path(other.csv) == Path("data/my_clips/manifest.csv")


LABELS = "video,label\nsingle_face.mp4,happiness\nface_noface.mov,happiness\nnoface_face.mov,neutral\n" \
         "no_face.mp4,neutral\n"
TYPO = "Clip/clip_224x224/singel_face"  # a manifest row whose folder does not exist


def _photos(face_photos: Path, per_class: int) -> list[tuple[Path, str]]:
    """The first photos of each class in the shared legend (real labeled face photos)."""
    picked: dict[str, list[Path]] = {"happiness": [], "neutral": []}
    with open(face_photos.parent / "legend.csv", newline="") as f:
        for row in csv.DictReader(f):
            label = row["emotion"]
            if label in picked and len(picked[label]) < per_class:
                picked[label].append(face_photos / row["image"])
    return [(p, label) for label, ps in picked.items() for p in ps]


@pytest.mark.slow
def test_own_clips_end_to_end(face_videos: Path, face_photos: Path, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                              caplog: pytest.LogCaptureFixture) -> None:
    """The commands of README "Your own labeled clips", in a fresh folder, on the shared videos and photos."""
    from fer_zoo.__main__ import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    cmd = readme_commands()
    videos = tmp_path / "my_videos"
    videos.mkdir()
    for name in ("single_face.mp4", "face_noface.mov", "noface_face.mov", "no_face.mp4"):
        (videos / name).symlink_to(face_videos / name)
    _write(tmp_path / "my_labels.csv", LABELS)
    _readme_setup(tmp_path, "")

    # 1-2. preprocess: crops + a labeled manifest; the video without a face is left out and said so (exit 4).
    assert main(cmd["preprocess"]) == 4
    out = capsys.readouterr().out
    assert "NOT IN MANIFEST no_face: no face found in" in out
    assert "manifest: data/my_clips/manifest.csv (3 clip folders; labels: happiness 2, neutral 1)" in out
    manifest = tmp_path / "data" / "my_clips" / "manifest.csv"
    assert _rows(manifest) == [
        {"path": "Clip/clip_224x224/face_noface", "label": "happiness", "subject": "", "person": "1"},
        {"path": "Clip/clip_224x224/noface_face", "label": "neutral", "subject": "", "person": "1"},
        {"path": "Clip/clip_224x224/single_face", "label": "happiness", "subject": "", "person": "1"}]
    # Photos and clips in one manifest (absolute paths), and a typo in one row.
    with open(manifest, "a") as f:
        f.writelines(f"{p},{label},\n" for p, label in _photos(face_photos, 4))
        f.write(f"{TYPO},neutral,\n")

    # 3. your copy of my_clips.yaml: facemesh only, to keep the test short.
    my = tmp_path / "my_clips.yaml"
    _write(my, my.read_text().replace("modalities: [resnet, facemesh]", "modalities: [facemesh]"))

    # 4. extract what my_clips.yaml trains on; the typo fails (exit 3), the others go on.
    assert main([*cmd["extract"], "--frame_cap", "16", "--num_workers", "0"]) == 3
    out = capsys.readouterr().out
    assert "source manifest: 12 clips" in out
    assert f"FAILED [facemesh] {TYPO}: no such file or folder" in out
    assert "[resnet]" not in out, "only the modalities the fit config trains on are extracted"

    # fit: the failed clip is dropped from its split with one line naming it, and results.json records it.
    with caplog.at_level("WARNING", logger="datamodules.feature_datamodule"):
        assert main([*cmd["fit"], "--trainer.max_epochs", "3", "--trainer.enable_progress_bar", "false",
                     "--data.test_fraction", "0.25", "--wandb", "false"]) == 0
    dropped_lines = [r.getMessage() for r in caplog.records if "unusable clips" in r.getMessage()]
    assert len(dropped_lines) == 1 and f"{TYPO} (" in dropped_lines[0]
    assert "extraction failed in facemesh: no such file or folder" in dropped_lines[0]
    results = json.loads((tmp_path / "runs" / "first" / "results.json").read_text())
    assert results["class_names"] == ["happiness", "neutral"]
    assert results["dropped_clips"]["count"] == 1
    [d] = results["dropped_clips"]["clips"]
    assert d["clip_id"] == TYPO and d["split"] in ("train", "val", "test") and "no such file" in d["reason"]
    assert sum(results["split_sizes"].values()) == 11  # 3 video clips + 8 photos; the typo row is in no split
    assert 0.0 <= results["metrics"]["test/uar"] <= 1.0

    # 5. predict-video with the run folder.
    predict = [a.replace("interview_01.mp4", "single_face.mp4") for a in cmd["predict-video"]]
    assert main(predict) == 0
    pred = json.loads((tmp_path / "predictions" / "single_face" / "predictions.json").read_text())
    assert pred["status"] == "ok" and pred["class_names"] == ["happiness", "neutral"]
    assert pred["face_crops"]["settings_from"].endswith("data/my_clips/preprocess.json")  # cropped as in training
    with open(tmp_path / "predictions" / "single_face" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 72 and all(r["top_class"] in ("happiness", "neutral") for r in rows)  # every frame answered
    assert (tmp_path / "predictions" / "single_face" / "timeline.png").is_file()
