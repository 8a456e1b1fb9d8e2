"""``python -m fer_zoo predict-video``: windows, run resolution, clear errors, and real videos end to end."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_zoo.video.predict import PredictError, make_windows, resolve_run, window_frames

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
POSE_META = {"extractor": "pose", "config": {"backend": "mediapipe", "min_detection_confidence": 0.5,
                                             "model_complexity": 1}, "frame_cap": 64, "dim": 132, "version": "1"}
MESH_META = {"extractor": "facemesh", "config": {"geometry": True, "min_detection_confidence": 0.5,
                                                 "min_tracking_confidence": 0.5, "refine_landmarks": False},
             "frame_cap": 64, "dim": 1413, "version": "1"}


# ------------------------------------------------------------------------------------------------ windows


@pytest.mark.parametrize("n,window,stride", [(72, 16, 8), (472, 32, 16), (169, 16, 8), (100, 16, 7), (10, 16, 8),
                                             (16, 16, 8), (1, 16, 8), (95, 30, 30)])
def test_windows_cover_the_whole_video(n: int, window: int, stride: int) -> None:
    wins = make_windows(n, window, stride)
    assert wins[0][0] == 0 and wins[-1][1] == n - 1
    assert all(e - s + 1 == min(window, n) for s, e in wins)
    starts = [s for s, _ in wins]
    assert starts == sorted(set(starts))
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))


def test_window_frames_follow_the_datamodule_sampling() -> None:
    held, picked = window_frames(10, 25, frame_cap=None, num_frames=16)
    assert held.tolist() == list(range(10, 26)) and picked.tolist() == list(range(10, 26))
    held, picked = window_frames(0, 63, frame_cap=None, num_frames=16)  # TSN eval: middle of 16 segments of 4
    assert picked.tolist() == list(range(2, 64, 4))
    held, picked = window_frames(100, 199, frame_cap=20, num_frames=10)  # capped like a stored clip, then TSN
    assert len(held) == 20 and held[0] == 100 and held[-1] == 199 and len(picked) == 10
    held, picked = window_frames(0, 4, frame_cap=None, num_frames=16)  # short, stretched (default): all 16 slots
    assert picked.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    held, picked = window_frames(0, 4, frame_cap=None, num_frames=16, short_clips="pad")  # every frame once
    assert picked.tolist() == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------------------------------------ fake runs, errors


def _fake_run(tmp: Path, metas: dict[str, dict | None], input_dims: dict[str, int] | None = None,
              saved_meta: bool = False) -> Path:
    """A run folder like `fit` writes (config.yaml, results.json, checkpoints/last.ckpt) around an untrained model."""
    import lightning
    import torch
    import yaml

    from fer_zoo.training.lit_module import FERLitModule

    run = tmp / "runs" / "fake"
    (run / "checkpoints").mkdir(parents=True)
    stores = {}
    for key, meta in metas.items():
        path = tmp / "features" / key / f"{key}-0000"
        if meta is not None:
            path.mkdir(parents=True)
            (path / "meta.json").write_text(json.dumps({**meta, "modality": key}))
        stores[key] = {"path": str(path), "extractor": (meta or {}).get("extractor")}
        if saved_meta:
            stores[key]["meta"] = {**(meta or MESH_META)}
    dims = input_dims or {k: (m or {}).get("dim", 8) for k, m in metas.items()}
    model = FERLitModule(input_dims=dims, num_classes=len(CLASSES), class_names=CLASSES, d_model=32, depth=1)
    ckpt = run / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": lightning.__version__}, ckpt)
    config = {"data": {"modalities": list(metas), "store_root": str(tmp / "nowhere"), "num_frames": 16}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "results.json").write_text(json.dumps({"checkpoint": str(ckpt), "stores": stores}))
    return run


@pytest.fixture()
def dummy_video(tmp_path: Path) -> Path:
    """A real 3-frame video (it passes the probe); the errors tested with it must come before any decoding."""
    import av

    p = tmp_path / "clip.mp4"
    with av.open(str(p), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return p


def test_missing_checkpoint_is_a_clear_error(dummy_video: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from fer_zoo.video.predict import main

    assert main([str(dummy_video), "--ckpt", str(tmp_path / "runs" / "gone" / "last.ckpt")]) == 2
    assert "no such file or folder; pass a run folder" in capsys.readouterr().err
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("data: {}\n")
    assert main([str(dummy_video), "--ckpt", str(run / "config.yaml")]) == 2  # the run's config, not a checkpoint
    err = capsys.readouterr().err
    assert f"--ckpt {run / 'config.yaml'}: a .yaml file is not a checkpoint; pass the run folder ({run}/)" in err
    assert "weights_only" not in err
    lone = tmp_path / "lone.ckpt"
    lone.write_bytes(b"x")
    assert main([str(dummy_video), "--ckpt", str(lone)]) == 2
    assert "no run folder around this checkpoint" in capsys.readouterr().err


def test_a_file_that_is_not_a_video_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fer_zoo.video.predict import main

    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert main([str(notes), "--ckpt", str(tmp_path)]) == 2
    assert "notes.txt: not a video file" in capsys.readouterr().err


def test_bad_videos_named_on_the_command_line_are_recorded_and_the_batch_goes_on(
        tmp_path: Path, dummy_video: Path, face_videos: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Issue 10: a file that does not open, or a truncated one, used to stop the whole batch (exit 2) before any
    video was processed; now each is recorded in summary.json with its reason, the others go on, exit 3. MediaPipe's
    C++ log goes to <out>/native_stderr.log, not the terminal."""
    from fer_zoo.video.predict import main

    run = _fake_run(tmp_path, {"pose": POSE_META, "facemesh": MESH_META})
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video at all")
    data = (face_videos / "WolfgangLanger_Pexels.mp4").read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert main([str(fake), str(half), str(dummy_video), "--ckpt", str(run), "--out", str(out)]) == 3
    summary = {Path(r["video"]).name: r for r in json.loads((out / "summary.json").read_text())}
    assert summary["fake.mp4"]["status"] == "failed" and "not a readable video" in summary["fake.mp4"]["message"]
    assert summary["half.mp4"]["status"] == "failed" and "truncated" in summary["half.mp4"]["message"]
    assert summary["clip.mp4"]["status"] == "no_face"  # the good (black) video was still processed
    assert (out / "clip" / "predictions.json").is_file()
    err = capfd.readouterr().err
    assert "FAILED" in err and "half.mp4" in err
    assert "W0000" not in err and "XNNPACK" not in err, err[-2000:]
    assert (out / "native_stderr.log").is_file()


def test_a_corrupt_video_in_a_folder_is_reported_and_the_others_go_on(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from fer_zoo.video.predict import main

    run = _fake_run(tmp_path, {"pose": POSE_META, "facemesh": MESH_META})
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "broken.mov").write_bytes(b"\x00\x00\x00\x14ftypqt  " + bytes(200))
    assert main([str(tmp_path / "videos"), "--ckpt", str(run), "--out", str(tmp_path / "out")]) == 3
    assert "FAILED" in capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary[0]["status"] == "failed" and "broken.mov" in summary[0]["message"]


@pytest.mark.parametrize("pose_meta,expect", [
    pytest.param({**POSE_META, "config": {"backend": "openpifpaf", "checkpoint": "/nonexistent/shufflenetv2k16.pkl"},
                  "dim": 51}, "openpifpaf", marks=pytest.mark.slow),  # slow: importing openpifpaf when installed
    ({**POSE_META, "extractor": "no_such_extractor"}, "unknown extractor 'no_such_extractor'"),
    ({**POSE_META, "store_key": "deadbeef"}, "does not reproduce the store's key deadbeef"),
])
def test_an_extractor_that_cannot_be_built_here_is_a_clear_error(
        pose_meta: dict, expect: str, dummy_video: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from fer_zoo.video.predict import main

    run = _fake_run(tmp_path, {"pose": pose_meta, "facemesh": MESH_META})
    assert main([str(dummy_video), "--ckpt", str(run)]) == 2
    err = capsys.readouterr().err
    assert "modality 'pose'" in err and expect in err


def test_a_checkpoint_that_does_not_match_its_run_is_refused(dummy_video: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from fer_zoo.video.predict import main

    run = _fake_run(tmp_path, {"pose": POSE_META, "facemesh": MESH_META}, input_dims={"resnet": 512})
    assert main([str(dummy_video), "--ckpt", str(run / "checkpoints" / "last.ckpt")]) == 2
    assert "does not belong to this run folder" in capsys.readouterr().err


def test_a_gone_store_needs_the_meta_saved_in_results_json(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "a", {"facemesh": None}, input_dims={"facemesh": 1413})
    with pytest.raises(PredictError, match="feature store is gone"):
        resolve_run(run)
    run = _fake_run(tmp_path / "b", {"facemesh": None}, input_dims={"facemesh": 1413}, saved_meta=True)
    spec = resolve_run(run).modalities[0]
    assert spec.meta_from == "results.json" and spec.extractor == "facemesh" and spec.frame_cap == 64


# ------------------------------------------------------------------------------------------------ end to end


def _cli(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "fer_zoo", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"`fer_zoo {' '.join(args)}` failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pose+facemesh model fitted for 1 epoch on a 4-per-class subset of the bundled sample, via the real CLIs."""
    tmp = tmp_path_factory.mktemp("predict_video_run")
    images = tmp / "images"
    for cls in sorted((REPO / "data" / "sample" / "images").iterdir()):
        if cls.is_dir():
            (images / cls.name).mkdir(parents=True)
            for f in sorted(cls.glob("*.jpg"))[:4]:
                shutil.copy(f, images / cls.name / f.name)
    _cli(["extract", "--config", "configs/extract.yaml", "--store_root", str(tmp / "features"), "--only",
          "pose", "facemesh", "--source.class_path", "datamodules.sources.ImageFolderSource",
          "--source.init_args.root", str(images), "--num_workers", "0"], REPO)
    _cli(["fit", "--config", "configs/pose_facemesh.yaml", "--data.source.class_path",
          "datamodules.sources.ImageFolderSource", "--data.source.init_args.root", str(images),
          "--data.store_root", str(tmp / "features"), "--runs_dir", str(tmp / "runs"), "--run_name", "t",
          "--trainer.max_epochs", "1", "--data.num_workers", "0", "--wandb", "false",
          "--trainer.enable_progress_bar", "false", "--trainer.num_sanity_val_steps", "0"], REPO)
    run = tmp / "runs" / "t"
    assert (run / "results.json").is_file() and list((run / "checkpoints").glob("*.ckpt"))
    return run


@pytest.fixture(scope="session")
def predictions(trained_run: Path, face_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """predict-video over a folder of the short videos, and over the long one with 32-frame windows."""
    from fer_zoo.video.predict import main

    tmp = tmp_path_factory.mktemp("predict_video_out")
    folder = tmp / "videos"
    folder.mkdir()
    for name in ("single_face.mp4", "face_noface.mov", "noface_face.mov", "no_face.mp4"):
        (folder / name).symlink_to(face_videos / name)
    out = tmp / "out"
    rc_folder = main([str(folder), "--ckpt", str(trained_run), "--out", str(out)])
    rc_long = main([str(face_videos / "WolfgangLanger_Pexels.mp4"), "--ckpt", str(trained_run / "checkpoints"
                    / "last.ckpt"), "--out", str(tmp / "out_long"), "--window", "32", "--stride", "16"])
    (out / "WolfgangLanger_Pexels").symlink_to(tmp / "out_long" / "WolfgangLanger_Pexels")
    return {"out": out, "rc_folder": rc_folder, "rc_long": rc_long, "run": trained_run}


def _load(out: Path, stem: str) -> tuple[dict, list[dict[str, str]], list[dict[str, str]]]:
    d = out / stem
    doc = json.loads((d / "predictions.json").read_text())
    with open(d / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(d / "boxes.csv", newline="") as f:
        boxes = list(csv.DictReader(f))
    return doc, rows, boxes


@pytest.mark.slow
@pytest.mark.parametrize("stem,frames", [("single_face", 72), ("WolfgangLanger_Pexels", 472)])
def test_a_face_video_gets_a_timeline_over_the_whole_clip(predictions: dict, stem: str, frames: int) -> None:
    import matplotlib.image

    doc, rows, _ = _load(predictions["out"], stem)
    assert doc["status"] == "ok" and doc["frames"] == frames
    wins = doc["windows"]
    assert wins[0]["start_frame"] == 0 and wins[0]["start_time"] == 0.0
    assert wins[-1]["end_frame"] == frames - 1
    assert all(w["probs"] is not None for w in wins)
    probs = np.array([[w["probs"][c] for c in doc["class_names"]] for w in wins])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert [r["top_class"] for r in rows] == [w["top_class"] for w in wins]
    np.testing.assert_allclose(np.array([[float(r[c]) for c in doc["class_names"]] for r in rows]), probs, atol=1e-5)
    # exactly the extractors (name + config + frame cap) of the stores the model was trained on
    results = json.loads((predictions["run"] / "results.json").read_text())
    for key, store in results["stores"].items():
        meta = json.loads((Path(store["path"]) / "meta.json").read_text())
        used = doc["modalities"][key]
        assert (used["extractor"], used["config"], used["frame_cap"]) == (meta["extractor"], meta["config"],
                                                                          meta["frame_cap"])
    png = matplotlib.image.imread(predictions["out"] / stem / "timeline.png")
    assert png.shape[0] > 400 and png.shape[1] > 1000


@pytest.mark.slow
def test_the_long_video_uses_the_window_and_stride_asked_for(predictions: dict) -> None:
    doc, _, _ = _load(predictions["out"], "WolfgangLanger_Pexels")
    assert predictions["rc_long"] == 0
    assert (doc["window"], doc["stride"], doc["num_frames"]) == (32, 16, 16)
    assert [w["start_frame"] for w in doc["windows"]][:3] == [0, 16, 32]
    assert all(w["valid_frames"] == 16 for w in doc["windows"])


@pytest.mark.slow
def test_no_face_video_gives_no_face_found_and_exit_status_4(predictions: dict, face_videos: Path,
                                                             tmp_path: Path) -> None:
    from fer_zoo.video.predict import main

    assert predictions["rc_folder"] == 4  # the folder holds no_face.mp4
    doc, rows, boxes = _load(predictions["out"], "no_face")
    assert doc["status"] == "no_face" and doc["message"].startswith("no face found in")
    assert all(w["probs"] is None and w["valid_frames"] == 0 for w in doc["windows"])
    assert all(r["top_class"] == "" for r in rows) and not any(b["face_found"] == "1" for b in boxes)
    summary = json.loads((predictions["out"] / "summary.json").read_text())
    summary = {Path(s["video"]).name: s["status"] for s in summary}
    assert summary == {"face_noface.mov": "ok", "no_face.mp4": "no_face", "noface_face.mov": "ok",
                       "single_face.mp4": "ok"}
    assert main([str(face_videos / "no_face.mp4"), "--ckpt", str(predictions["run"]), "--out", str(tmp_path)]) == 4


@pytest.mark.parametrize("flag", ["--window", "--stride"])
def test_a_zero_window_or_stride_is_refused(predictions: dict, face_videos: Path, tmp_path: Path, flag: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from fer_zoo.video.predict import main

    args = [str(face_videos / "single_face.mp4"), "--ckpt", str(predictions["run"]), "--out", str(tmp_path)]
    assert main([*args, flag, "0"]) == 2  # never silently replaced by the default
    assert f"{flag} must be >= 1 frame, got 0" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("stem,where", [("face_noface", "end"), ("noface_face", "start")])
def test_the_gap_without_a_face_is_where_the_face_is_missing(predictions: dict, stem: str, where: str) -> None:
    doc, _, boxes = _load(predictions["out"], stem)
    face = np.array([b["face_found"] == "1" for b in boxes])
    assert len(face) == doc["frames"] == 169 and 0 < face.sum() < len(face)
    has = [w["probs"] is not None for w in doc["windows"]]
    for w, h in zip(doc["windows"], has):
        s, e = w["start_frame"], w["end_frame"]
        assert w["face_frames"] == int(face[s:e + 1].sum())
        if not face[s:e + 1].any():
            assert not h and w["top_class"] is None, f"window {s}-{e} has no face but got a prediction"
        if face[s:e + 1].all():
            assert h, f"window {s}-{e} is all face but got no prediction"
    missing = [i for i, h in enumerate(has) if not h]
    assert missing, "the no-face part must show as a gap"
    if where == "end":  # the face leaves: the gap is a run of windows at the end
        assert missing == list(range(missing[0], len(has)))
        assert doc["windows"][missing[0]]["start_time"] >= float(boxes[int(np.flatnonzero(face).max())]["timestamp"])
    else:  # the face enters: the gap is a run of windows at the start
        assert missing == list(range(len(missing)))
        assert doc["windows"][missing[-1]]["end_time"] < float(boxes[int(np.flatnonzero(face).min())]["timestamp"])


def test_crops_follow_the_training_trees_preprocess_settings(tmp_path: Path) -> None:
    """A run trained on `preprocess` output crops videos with that tree's settings; flags override them."""
    import yaml

    run = _fake_run(tmp_path, {"facemesh": MESH_META})
    tree = tmp_path / "dfew"
    tree.mkdir()
    (tree / "preprocess.json").write_text(json.dumps({"margin": 0.4, "size": 112, "min_confidence": 0.6,
                                                      "detector": "full", "frame_cap": None, "version": "1"}))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["source"] = {"class_path": "datamodules.sources.DFEWSource", "init_args": {"root": str(tree)}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    info = resolve_run(run)
    assert (info.track.margin, info.track.size, info.track.detector) == (0.4, 112, "full")
    assert info.track_from == str(tree / "preprocess.json")
    info = resolve_run(run, {"margin": 0.1, "size": None})
    assert (info.track.margin, info.track.size) == (0.1, 112) and "command line (margin)" in info.track_from
    # A run trained on the manifest that `preprocess` wrote next to preprocess.json crops with the same settings.
    config["data"]["source"] = {"class_path": "datamodules.sources.ManifestSource",
                                "init_args": {"csv": str(tree / "manifest.csv"), "root": None}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    info = resolve_run(run)
    assert (info.track.margin, info.track.size, info.track.detector) == (0.4, 112, "full")
    assert info.track_from == str(tree / "preprocess.json")


def _crops(cropped: int, uncropped: int, settings: list[dict] | None = None) -> dict:
    return {"cropped": cropped, "uncropped": uncropped, "settings": settings or [], "roots": [],
            "uncropped_examples": ["/photos/a.jpg"] if uncropped else []}


def test_a_model_trained_on_uncropped_photos_is_flagged_and_refused_on_request(
        dummy_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The store meta says the training clips were whole photos: predict-video (which feeds face crops) warns, and
    refuses with --crop_mismatch error, before loading anything."""
    from fer_zoo.video.predict import main

    run = _fake_run(tmp_path, {"facemesh": {**MESH_META, "face_crops": _crops(0, 12)}})
    info = resolve_run(run)
    assert info.training_crops == "uncropped" and len(info.crop_mismatch) == 1
    assert "12 of its 12 training clips were not cropped by `preprocess` (e.g. /photos/a.jpg)" in info.crop_mismatch[0]
    assert main([str(dummy_video), "--ckpt", str(run), "--out", str(tmp_path / "p"), "--crop_mismatch", "error"]) == 2
    err = capsys.readouterr().err
    assert "not trained on the face crops it would be given here" in err and "python -m fer_zoo preprocess" in err


def test_crop_settings_come_from_the_store_meta_and_other_flags_are_flagged(tmp_path: Path) -> None:
    """Crops recorded in the store meta set the crop settings (no preprocess.json needed); a margin other than the
    training crops' is a mismatch, as is a mixed training set."""
    st = {"margin": 0.4, "size": 112, "min_confidence": 0.5, "detector": "short", "jpeg_quality": 95, "version": "1"}
    run = _fake_run(tmp_path, {"facemesh": {**MESH_META, "face_crops": _crops(20, 0, [st])}})
    info = resolve_run(run)
    assert (info.track.margin, info.track.size) == (0.4, 112) and info.track_from.startswith("store meta")
    assert info.training_crops == "preprocess" and info.crop_mismatch == []
    info = resolve_run(run, {"margin": 0.25})
    assert len(info.crop_mismatch) == 1 and "margin 0.4 but cropped here with margin 0.25" in info.crop_mismatch[0]
    # recorded before `snap` existed: those crops were cut at the detected box, so a snapped box here is a mismatch
    info = resolve_run(run, {"snap": 0.08})
    assert info.track.snap == 0.08 and len(info.crop_mismatch) == 1
    assert "snap 0.0 but cropped here with snap 0.08" in info.crop_mismatch[0]
    mixed = _fake_run(tmp_path / "m", {"facemesh": {**MESH_META, "face_crops": _crops(20, 3, [st])}})
    info = resolve_run(mixed)
    assert info.training_crops == "mixed" and "3 of its 23 training clips" in info.crop_mismatch[0]


def test_crop_record_counts_preprocess_crops(tmp_path: Path) -> None:
    from datamodules.crops import crop_record

    tree = tmp_path / "crops"
    (tree / "Clip" / "clip_224x224" / "a").mkdir(parents=True)
    (tree / "preprocess.json").write_text(json.dumps({"margin": 0.25, "size": 224}))
    rec = crop_record([tree / "Clip" / "clip_224x224" / "a", tmp_path / "photo.jpg"], dataset_boxes=1)
    assert (rec["cropped"], rec["uncropped"], rec["dataset_boxes"]) == (1, 1, 1)
    assert rec["settings"] == [{"margin": 0.25, "size": 224}] and rec["roots"] == [str(tree.absolute())]
    assert rec["uncropped_examples"] == [str(tmp_path / "photo.jpg")]


# ------------------------------------------------------------------------------------------ smoothing, valid frames


def test_smoothing_averages_only_windows_with_a_prediction() -> None:
    from fer_zoo.video.predict import smooth_probs

    p = np.array([[1.0, 0.0], [0.0, 1.0], [np.nan, np.nan], [0.5, 0.5], [1.0, 0.0]])
    s = smooth_probs(p, 3)
    np.testing.assert_allclose(s[0], [0.5, 0.5])  # edges: the windows that exist
    np.testing.assert_allclose(s[1], [0.5, 0.5])  # the NaN neighbour is left out, not counted as zero
    assert np.isnan(s[2]).all()  # no prediction stays no prediction
    np.testing.assert_allclose(s[3], [0.75, 0.25])
    np.testing.assert_allclose(smooth_probs(p, 1)[[0, 1, 3, 4]], p[[0, 1, 3, 4]])
    with pytest.raises(ValueError, match="odd"):
        smooth_probs(p, 4)


@pytest.mark.slow
def test_nothing_is_smoothed_unless_asked_and_each_window_says_its_valid_frames(
        predictions: dict, face_videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fer_zoo.video.predict import main

    doc, rows, _ = _load(predictions["out"], "face_noface")
    assert doc["smoothing"] is None and not any(k.startswith("smoothed") for k in rows[0])
    assert doc["short_clips"] == "stretch"  # the run's DataModule setting, read from its config.yaml
    face = [w["face_frames"] for w in doc["windows"]]
    counts = [w["valid_frames"] for w in doc["windows"]]
    assert [int(r["valid_frames"]) for r in rows] == counts
    assert counts[0] == 16 and 0 in counts and all(c <= 16 for c in counts)
    assert all(c == 0 for c, f in zip(counts, face) if f == 0)
    args = [str(face_videos / "single_face.mp4"), "--ckpt", str(predictions["run"]), "--out", str(tmp_path)]
    assert main([*args, "--smooth", "2"]) == 2 and "--smooth must be 0 (off) or an odd" in capsys.readouterr().err
    assert main([*args, "--smooth", "3"]) == 0
    doc3, rows3, _ = _load(tmp_path, "single_face")
    assert doc3["smoothing"]["windows"] == 3
    raw = np.array([[w["probs"][c] for c in doc3["class_names"]] for w in doc3["windows"]])
    sm = np.array([[float(r[f"smoothed_{c}"]) for c in doc3["class_names"]] for r in rows3])
    np.testing.assert_allclose(sm[1], raw[0:3].mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(np.array([[float(r[c]) for c in doc3["class_names"]] for r in rows3]), raw, atol=1e-5)
    assert [r["smoothed_top_class"] for r in rows3] == [doc3["class_names"][int(i)] for i in sm.argmax(1)]
