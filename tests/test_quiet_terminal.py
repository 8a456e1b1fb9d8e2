"""Issue 26: the terminal shows progress and results, not library chatter, and reads well piped to a file.

Each command runs as a user runs it with its output piped (not a terminal) and without ``PYTHONUNBUFFERED``
(``nohup``, ``> log 2>&1``): no carriage-return redraws, no Lightning device lines or tips, no torchvision
``Downloading:`` line for a download fer_zoo reports itself, no MediaPipe C++ log; plain progress lines with a rate
and an ETA; messages in the order they were printed; the library messages in log files beside the results.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "images"
CHATTER = ("\r", "GPU available", "TPU available", "Tip:", "litlogger", "Downloading:", "deprecated",
           "XNNPACK", "W0000", "inference_feedback_manager", "absl::")


def _piped_env(**extra: str) -> dict[str, str]:
    """The environment of a command under nohup: Python's stdout block-buffered (no PYTHONUNBUFFERED), a progress
    line at every update (FER_ZOO_PROGRESS_INTERVAL=0)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return {**env, "WANDB_MODE": "offline", "FER_ZOO_PROGRESS_INTERVAL": "0", **extra}


def _run(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m fer_zoo ARGS`` with stdout and stderr into one pipe, as ``> log 2>&1`` writes them."""
    return subprocess.run([sys.executable, "-m", "fer_zoo", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def _no_chatter(text: str) -> None:
    found = [c for c in CHATTER if c in text]
    assert not found, f"library chatter {found} on the terminal:\n{text[-4000:]}"


def _photos(folder: Path, per_class: int) -> list[tuple[Path, str]]:
    """``per_class`` bundled photos of each class copied into ``folder``: (path, label)."""
    rows = []
    for cls in sorted(p for p in SAMPLE.iterdir() if p.is_dir()):
        for photo in sorted(cls.glob("*.jpg"))[:per_class]:
            dst = folder / cls.name / photo.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(photo, dst)
            rows.append((dst, cls.name))
    return rows


# ------------------------------------------------------------------------------------------------ fer_zoo.progress


def test_plain_progress_lines_carry_count_rate_and_eta() -> None:
    from fer_zoo.progress import Progress

    out = io.StringIO()
    with Progress("fit", total=8, unit="batch", stream=out, every_s=0, initial=2) as bar:
        for _ in range(6):
            bar.update()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("fit: 3/8 batches (38%), ") and " batches/s, " in lines[0] and ", ETA " in lines[0]
    assert lines[-1].startswith("fit: 8/8 batches (100%), ") and lines[-1].endswith("elapsed (done)")
    assert len(lines) == 7  # one per update, then the closing line


def test_progress_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from fer_zoo.progress import Progress, progress_interval

    monkeypatch.delenv("FER_ZOO_PROGRESS_INTERVAL", raising=False)
    assert progress_interval() == 10.0
    monkeypatch.setenv("FER_ZOO_PROGRESS_INTERVAL", "2.5")
    assert Progress("x", stream=io.StringIO(), tty=False).every_s == 2.5
    for bad in ("ten", "-1", "nan"):
        monkeypatch.setenv("FER_ZOO_PROGRESS_INTERVAL", bad)
        with pytest.raises(ValueError, match=f"FER_ZOO_PROGRESS_INTERVAL={bad!r}: expected a number of seconds"):
            progress_interval()


# ----------------------------------------------------------------------------- Lightning's loops as plain lines


def test_lightning_loops_write_plain_lines_with_epoch_rate_eta_and_metrics() -> None:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from fer_zoo.lightning_progress import LineProgressBar

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(3, 1)

        def training_step(self, batch: list, batch_idx: int) -> torch.Tensor:
            loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
            self.log("train/loss", loss, prog_bar=True)
            return loss

        def test_step(self, batch: list, batch_idx: int) -> None:
            self.log("test/loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def predict_step(self, batch: list, batch_idx: int) -> torch.Tensor:
            return self.net(batch[0])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(8, 3), torch.randn(8, 1)), batch_size=2)  # 4 batches
    out = io.StringIO()
    bar = LineProgressBar(predict_label="extract x", predict_unit="clip", every_s=0, stream=out)
    trainer = L.Trainer(max_epochs=2, callbacks=[bar], logger=False, enable_checkpointing=False,
                        enable_model_summary=False, accelerator="cpu")
    model = Tiny()
    trainer.fit(model, data)
    trainer.test(model, data, verbose=False)
    trainer.predict(model, data)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    fit = [ln for ln in lines if ln.startswith("fit ")]
    assert fit[0].startswith("fit epoch 1/2: 1/8 batches (12%), ") and ", ETA " in fit[0]
    assert re.search(r", train/loss \d+\.\d{3}$", fit[0]), fit[0]
    assert fit[4].startswith("fit epoch 2/2: 5/8 batches (62%), "), fit
    assert fit[-1].startswith("fit epoch 2/2: 8/8 batches (100%), ") and "(done)" in fit[-1]
    assert [ln for ln in lines if ln.startswith("test: ")][-1].startswith("test: 4/4 batches (100%)")
    assert [ln for ln in lines if ln.startswith("extract x: ")][-1].startswith("extract x: 4/4 clips (100%)")


def test_line_progress_is_chosen_only_off_a_terminal_and_when_bars_are_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.pytorch.callbacks import TQDMProgressBar

    from fer_zoo.lightning_progress import wants_line_progress

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    assert wants_line_progress(None, []) and wants_line_progress(True, [])
    assert not wants_line_progress(False, [])  # Lightning refuses a bar callback with enable_progress_bar=False
    assert not wants_line_progress(None, [TQDMProgressBar()])  # the user's own bar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert not wants_line_progress(None, [])  # a terminal keeps Lightning's bar


# ------------------------------------------------------------------------------- torchvision's download message


def test_a_failed_torchvision_download_prints_only_fer_zoos_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capfd: pytest.CaptureFixture[str]) -> None:
    """torch.hub printed `Downloading: "<url>" to <cache>` before a download that then failed offline; fer_zoo's
    WeightsUnavailableError already names the URL and the cache file, so the line only confused."""
    import urllib.error

    import torch

    from extractors.weights import WeightsUnavailableError, torchvision_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network (simulated)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsUnavailableError) as info:
        torchvision_weights("resnet18", "IMAGENET1K_V1")
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(cached) in str(info.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in str(info.value)
    said = capfd.readouterr()
    assert "Downloading" not in said.out + said.err, said


# ------------------------------------------------------------------------------------------ the commands, piped


@pytest.fixture(scope="module")
def piped_extract(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`extract` of 32 bundled photos (4 per class), fer2013 and a resnet18 that cannot be downloaded (a proxy
    that refuses, an empty torch cache) so its configured fallback runs; 0 workers; output piped."""
    from extractors.fer2013_xception import default_weights_path
    from extractors.weights import offline_mobilenet_path

    for need, what in ((default_weights_path(), "FER2013 mini-Xception"), (offline_mobilenet_path(), "MobileNetV2")):
        if not need.is_file():
            pytest.skip(f"{what} weights not at {need} (run `make install`)")
    work = tmp_path_factory.mktemp("piped_extract")
    rows = _photos(work / "photos", per_class=4)
    manifest = work / "manifest.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    config = work / "extract.yaml"
    config.write_text(json.dumps({
        "source": {"class_path": "datamodules.sources.ManifestSource", "init_args": {"csv": str(manifest)}},
        "store_root": str(work / "store"), "frame_cap": 4, "num_workers": 0,
        "modalities": {
            "fer2013": {"name": "fer2013", "config": {"output": "both"}},
            "resnet": {"name": "resnet18", "config": {"weights": "IMAGENET1K_V1", "image_size": 112},
                       "fallback": {"name": "mobilenet_v2", "config": {"image_size": 112}}},
        },
    }))
    offline = {"TORCH_HOME": str(work / "torch"), "https_proxy": "http://127.0.0.1:9",
               "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}
    proc = _run(["extract", "--config", str(config)], _piped_env(**offline))
    return {"proc": proc, "work": work, "n": len(rows)}


def test_extract_piped_shows_progress_and_results_not_library_chatter(piped_extract: dict) -> None:
    proc, work, n = piped_extract["proc"], piped_extract["work"], piped_extract["n"]
    text = proc.stdout
    assert proc.returncode == 0, text[-4000:]
    _no_chatter(text)
    for modality in ("fer2013", "resnet"):
        lines = [ln for ln in text.splitlines() if ln.startswith(f"extract {modality}: ")]
        assert lines and all(re.search(r" clips \(\d+%\), \d+\.\d clips/s, \d:\d\d:\d\d elapsed", ln) for ln in lines)
        assert lines[-1].startswith(f"extract {modality}: {n}/{n} clips (100%)"), lines
        # messages arrive in the order printed: the plan (stdout) before the progress (stderr), not at the end
        plan = next(i for i, ln in enumerate(text.splitlines()) if ln.startswith(f"[{modality}] ") and "to extract"
                    in ln)
        assert plan < text.splitlines().index(lines[0]), text
    # the fallback: one warning while building, and the summary says in words what the modality ran
    assert text.count("falling back to `mobilenet_v2`") == 1, text
    assert ("  [resnet] -> mobilenet_v2 (fallback for resnet18: resnet18 IMAGENET1K_V1 weights are not in the torch "
            f"cache ({work / 'torch' / 'hub' / 'checkpoints' / 'resnet18-f37072fd.pth'})") in text, text
    # Lightning's messages and the warnings are kept, beside each store
    for modality in ("fer2013", "resnet"):
        (store,) = (work / "store" / modality).iterdir()
        log = (store / "extract.log").read_text()
        assert "GPU available" in log
        assert f"[{modality}] logs: Lightning's messages and warnings: {store / 'extract.log'}" in text


def test_preprocess_piped_keeps_mediapipe_off_the_terminal(tmp_path: Path) -> None:
    rows = _photos(tmp_path / "photos", per_class=1)
    out = tmp_path / "crops"
    proc = _run(["preprocess", str(tmp_path / "photos"), "--out", str(out)], _piped_env())
    text = proc.stdout
    assert proc.returncode in (0, 4), text[-4000:]  # 4: a photo without a face (reported)
    _no_chatter(text)
    lines = text.splitlines()
    progress = [ln for ln in lines if ln.startswith("preprocess: ") and " photos (" in ln]
    assert progress and all(re.search(r" photos/s, \d:\d\d:\d\d elapsed", ln) for ln in progress), text
    assert progress[-1].startswith(f"preprocess: {len(rows)}/{len(rows)} photos (100%)"), text
    assert lines[0].startswith("preprocess: 0 video(s), 8 photo(s) -> "), text  # stdout, before the progress
    native = (out / "native_stderr.log").read_text()
    assert "XNNPACK" in native or "inference_feedback_manager" in native, native
    assert f"MediaPipe's C++ log (native stderr): {out / 'native_stderr.log'}" in text


@pytest.mark.slow
def test_fit_piped_prints_epoch_lines_and_one_table_of_results(piped_extract: dict, tmp_path: Path) -> None:
    """`fit` piped: plain lines per epoch instead of Lightning's rich bar, fer_zoo's table of test results and not
    Lightning's (which repeated it), library messages in fit.log."""
    work = piped_extract["work"]
    if piped_extract["proc"].returncode != 0:
        pytest.skip("the extraction this fit trains on failed (see the extract test)")
    manifest = work / "manifest.csv"
    args = ["fit", "--data.source.class_path", "datamodules.sources.ManifestSource",
            "--data.source.init_args.csv", str(manifest), "--data.store_root", str(work / "store"),
            "--data.modalities", "[fer2013]", "--data.num_workers", "0", "--trainer.max_epochs", "2",
            "--trainer.accelerator", "cpu", "--trainer.enable_model_summary", "false", "--runs_dir", str(tmp_path),
            "--run_name", "r", "--wandb", "false"]
    proc = _run(args, _piped_env(OMP_NUM_THREADS="1"), timeout=600)
    text = proc.stdout
    assert proc.returncode == 0, text[-4000:]
    _no_chatter(text)
    assert "Test metric" not in text and "┏" not in text and "━" not in text, text  # no rich bar, no rich table
    fit = [ln for ln in text.splitlines() if ln.startswith("fit epoch ")]
    assert fit and fit[0].startswith("fit epoch 1/2: 1/") and " batches/s, " in fit[0] and ", ETA " in fit[0]
    assert fit[-1].startswith("fit epoch 2/2: ") and "(100%)" in fit[-1] and "(done)" in fit[-1], fit
    assert "test split (" in text, text  # fer_zoo's own table of the test results
    assert "GPU available" in (tmp_path / "r" / "fit.log").read_text()


def test_fit_prints_the_models_test_results_also_when_the_baselines_failed(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Lightning's table of test metrics is no longer printed (it repeated fer_zoo's); the model's numbers must
    then still reach the terminal when the probe could not be fitted."""
    from types import SimpleNamespace

    from fer_zoo.training.cli import FERCLI

    (tmp_path / "results.json").write_text(json.dumps({
        "metrics": {"test/uar": 0.25, "test/war": 0.375, "test/f1": 0.2}, "split_sizes": {"test": 8},
        "baselines": {"error": "ValueError: n_splits=2 cannot be greater than the number of members in each class."},
    }))
    FERCLI._print_baselines(SimpleNamespace(run_dir=tmp_path))
    assert capsys.readouterr().out == ("test split (8 clips): model UAR 25.0%, WAR 37.5%, F1 20.0% (no baselines: "
                                       "ValueError: n_splits=2 cannot be greater than the number of members in each "
                                       "class.)\n")
