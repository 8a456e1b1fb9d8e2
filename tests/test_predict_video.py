"""``python -m fer_zoo predict-video``: run resolution, clear errors, and real videos end to end: every person,
every frame (VFR included), a folder as one tidy table, live streams on loopback, bad live inputs."""

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
from stream_server import closed_port, serve

from fer_zoo.video.run_info import PredictError, resolve_run

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
POSE_META = {"extractor": "pose", "config": {"backend": "mediapipe", "min_detection_confidence": 0.5,
                                             "model_complexity": 1}, "frame_cap": 64, "dim": 132, "version": "1"}
MESH_META = {"extractor": "facemesh", "config": {"geometry": True, "min_detection_confidence": 0.5,
                                                 "min_tracking_confidence": 0.5, "refine_landmarks": False},
             "frame_cap": 64, "dim": 1413, "version": "1"}


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
    summary = {Path(r["input"]).name: r for r in json.loads((out / "summary.json").read_text())}
    assert summary["fake.mp4"]["status"] == "failed" and "not a readable video" in summary["fake.mp4"]["message"]
    assert summary["half.mp4"]["status"] == "failed" and "truncated" in summary["half.mp4"]["message"]
    assert summary["clip.mp4"]["status"] == "no_face"  # the good (black) video was still processed
    # the truncated video's rows (before its end was found missing) are kept apart, never in the run's table
    assert (out / "half" / "predictions.partial.csv").is_file() and not (out / "half" / "predictions.csv").exists()
    assert "predictions.partial.csv" in summary["half.mp4"]["message"]
    assert not [r for r in _read(out / "predictions.csv") if r["video"] == "half"]
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




def test_tracking_follows_every_face_whatever_the_training_tree_did(tmp_path: Path) -> None:
    """A run trained on crops made one face at a time (a tree from before `faces`) still answers for every person:
    only the settings that change a crop's pixels come from the training tree."""
    import yaml

    run = _fake_run(tmp_path, {"facemesh": MESH_META})
    tree = tmp_path / "old"
    tree.mkdir()
    (tree / "preprocess.json").write_text(json.dumps({"margin": 0.3, "size": 224, "version": "1"}))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["source"] = {"class_path": "datamodules.sources.DFEWSource", "init_args": {"root": str(tree)}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    info = resolve_run(run)
    assert (info.track.margin, info.track.snap) == (0.3, 0.0)  # pixels as trained (snap: before it existed)
    assert (info.track.faces, info.track.detect_every) == ("all", 1)
    assert resolve_run(run, {"faces": "largest", "detect_every": 3}).track.faces == "largest"


# ------------------------------------------------------------------------------------------------ end to end


def _cli(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "fer_zoo", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"`fer_zoo {' '.join(args)}` failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A facemesh model fitted for 1 epoch on the face crops of a 4-per-class subset of the bundled sample, via the
    real CLIs (preprocess, extract, fit)."""
    tmp = tmp_path_factory.mktemp("predict_video_run")
    images = tmp / "images"
    for cls in sorted((REPO / "data" / "sample" / "images").iterdir()):
        if cls.is_dir():
            (images / cls.name).mkdir(parents=True)
            for f in sorted(cls.glob("*.jpg"))[:4]:
                shutil.copy(f, images / cls.name / f.name)
    labels = tmp / "labels.csv"
    labels.write_text("video,label\n" + "".join(f"{f.name},{f.parent.name}\n" for f in sorted(images.rglob("*.jpg"))))
    proc = subprocess.run([sys.executable, "-m", "fer_zoo", "preprocess", str(images), "--out", str(tmp / "crops"),
                           "--labels", str(labels)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode in (0, 4), proc.stderr[-2000:]  # 4: a photo without a face is left out
    source = ["--source.class_path", "datamodules.sources.ManifestSource", "--source.init_args.csv",
              str(tmp / "crops" / "manifest.csv")]
    _cli(["extract", "--config", "configs/extract.yaml", "--store_root", str(tmp / "features"), "--only",
          "facemesh", *source, "--num_workers", "0"], REPO)
    _cli(["fit", "--config", "configs/facemesh.yaml", *[a.replace("--source", "--data.source") for a in source],
          "--data.store_root", str(tmp / "features"), "--runs_dir", str(tmp / "runs"), "--run_name", "t",
          "--trainer.max_epochs", "1", "--data.num_workers", "0", "--wandb", "false",
          "--trainer.enable_progress_bar", "false", "--trainer.num_sanity_val_steps", "0"], REPO)
    run = tmp / "runs" / "t"
    assert (run / "results.json").is_file() and list((run / "checkpoints").glob("*.ckpt"))
    return run


def _frame_times(video: Path) -> list[float]:
    import av

    with av.open(str(video)) as c:
        return [float(f.time) for f in c.decode(video=0)]


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def predictions(trained_run: Path, face_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """predict-video over a folder of the short videos (rows per frame), and over the long one with 32-frame
    windows (rows per window)."""
    from fer_zoo.video.predict import main

    tmp = tmp_path_factory.mktemp("predict_video_out")
    folder = tmp / "videos"
    folder.mkdir()
    for name in ("single_face.mp4", "face_noface.mov", "noface_face.mov", "no_face.mp4"):
        (folder / name).symlink_to(face_videos / name)
    out = tmp / "out"
    rc_folder = main([str(folder), "--ckpt", str(trained_run), "--out", str(out)])
    rc_long = main([str(face_videos / "WolfgangLanger_Pexels.mp4"), "--ckpt", str(trained_run / "checkpoints"
                    / "last.ckpt"), "--out", str(tmp / "out_long"), "--window", "32", "--stride", "16",
                    "--per", "window"])
    return {"out": out, "out_long": tmp / "out_long", "rc_folder": rc_folder, "rc_long": rc_long,
            "run": trained_run, "videos": folder}


@pytest.mark.slow
def test_a_folder_gives_one_tidy_table_with_every_frame_of_every_person(predictions: dict, face_videos: Path) -> None:
    out = predictions["out"]
    assert predictions["rc_folder"] == 4  # the folder holds no_face.mp4
    rows = _read(out / "predictions.csv")
    assert list(rows[0])[:6] == ["video", "person", "frame", "time", "valid", "windows"]
    assert list(rows[0])[-2:] == ["top_class", "top_prob"] and set(CLASSES) <= set(rows[0])
    assert {r["video"] for r in rows} == {"single_face", "face_noface", "noface_face"}  # no_face: no person
    summary = {s["video"]: s["status"] for s in json.loads((out / "summary.json").read_text())}
    assert summary == {"face_noface": "ok", "no_face": "no_face", "noface_face": "ok", "single_face": "ok"}
    for video in ("single_face", "face_noface", "noface_face"):
        mine = [r for r in rows if r["video"] == video]
        assert mine == _read(out / video / "predictions.csv")  # the folder table is the videos' tables, together
        times = _frame_times(face_videos / f"{video}.{'mp4' if video == 'single_face' else 'mov'}")
        boxes = _read(out / video / "boxes.csv")
        for person in {r["person"] for r in mine}:
            frames = [int(r["frame"]) for r in mine if r["person"] == person]
            assert frames == list(range(frames[0], frames[-1] + 1))  # every frame of the person's span, once
            face = {int(b["frame"]) for b in boxes if b["person"] == person and b["face_found"] == "1"}
            assert frames[0] == min(face) and frames[-1] == max(face)  # from its first to its last face frame
            for r in (r for r in mine if r["person"] == person):
                assert float(r["time"]) == pytest.approx(times[int(r["frame"])], abs=1e-6)  # its own time (to the us)
                assert r["valid"] == ("1" if int(r["frame"]) in face else "0")
                probs = np.array([float(r[c]) for c in CLASSES])
                assert int(r["windows"]) >= 1 and probs.sum() == pytest.approx(1.0, abs=1e-4)
                assert r["top_class"] == CLASSES[int(np.argmax(probs))]
    single = [r for r in rows if r["video"] == "single_face"]
    assert [int(r["frame"]) for r in single] == list(range(72))  # first and last frame included
    doc = json.loads((out / "single_face" / "predictions.json").read_text())
    assert doc["status"] == "ok" and doc["frames"] == 72 and list(doc["people"]) == ["1"]
    assert {"decode", "detect", "track+crop", "model", "extract:facemesh"} <= set(doc["compute_seconds"])
    import matplotlib.image

    png = matplotlib.image.imread(out / "single_face" / "timeline.png")
    assert png.shape[0] > 300 and png.shape[1] > 1000


@pytest.mark.slow
def test_per_frame_answers_are_the_mean_of_the_windows_covering_each_frame(predictions: dict) -> None:
    """The folder run's per-frame rows against its own window outputs, recomputed with --per window."""
    from fer_zoo.video.predict import main

    out = predictions["out"].parent / "win"
    assert main([str(predictions["videos"] / "single_face.mp4"), "--ckpt", str(predictions["run"]), "--out",
                 str(out), "--per", "window"]) == 0
    wins = _read(out / "predictions.csv")
    frames = _read(predictions["out"] / "single_face" / "predictions.csv")
    assert [(int(w["start_frame"]), int(w["end_frame"])) for w in wins] == [(s, s + 15) for s in range(0, 57, 8)]
    probs = np.array([[float(w[c]) for c in CLASSES] for w in wins])
    for r in frames:
        f = int(r["frame"])
        cover = [i for i, w in enumerate(wins) if int(w["start_frame"]) <= f <= int(w["end_frame"])]
        assert int(r["windows"]) == len(cover)
        np.testing.assert_allclose([float(r[c]) for c in CLASSES], probs[cover].mean(axis=0), atol=2e-6)


@pytest.mark.slow
def test_the_long_video_uses_the_window_and_stride_asked_for(predictions: dict) -> None:
    assert predictions["rc_long"] == 0
    doc = json.loads((predictions["out_long"] / "WolfgangLanger_Pexels" / "predictions.json").read_text())
    assert (doc["window"], doc["stride"], doc["num_frames"], doc["per"]) == (32, 16, 16, "window")
    wins = _read(predictions["out_long"] / "predictions.csv")
    assert [int(w["start_frame"]) for w in wins][:3] == [0, 16, 32]
    assert all(int(w["valid_frames"]) == 16 for w in wins)
    seconds = _read(predictions["out_long"] / "WolfgangLanger_Pexels" / "seconds.csv")
    assert [int(s["second"]) for s in seconds] == list(range(len(seconds)))
    assert sum(int(s["frames"]) for s in seconds) == doc["frames"] == 472


@pytest.mark.slow
@pytest.mark.parametrize("stem,where", [("face_noface", "end"), ("noface_face", "start")])
def test_the_person_is_answered_only_while_on_screen(predictions: dict, stem: str, where: str) -> None:
    rows = _read(predictions["out"] / stem / "predictions.csv")
    boxes = _read(predictions["out"] / stem / "boxes.csv")
    seen = sorted({int(b["frame"]) for b in boxes if b["face_found"] == "1"})
    frames = sorted({int(r["frame"]) for r in rows})
    assert seen and frames[0] == seen[0] and frames[-1] == seen[-1]
    if where == "end":  # the face leaves: no row after it has gone
        assert frames[0] == 0 and frames[-1] < 168
    else:  # the face enters: no row before it comes
        assert frames[0] > 0 and frames[-1] >= 160


def _vfr_video(face_videos: Path, path: Path) -> list[float]:
    """single_face.mp4's first 40 frames re-encoded with irregular timestamps (variable frame rate)."""
    from fractions import Fraction

    import av

    from fer_zoo.video.face_track import open_video

    with open_video(face_videos / "single_face.mp4") as (_, it):
        frames = [rgb for i, _, rgb in it if i < 40]
    gaps_ms = [33, 33, 100, 16, 50, 250, 33, 20]
    pts = np.cumsum([0] + [gaps_ms[i % len(gaps_ms)] for i in range(len(frames) - 1)]).tolist()
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 640, 360, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        s.time_base = Fraction(1, 1000)
        s.options = {"crf": "18", "preset": "veryfast", "x264-params": "threads=1:bframes=0"}
        for rgb, t in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = int(t), Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return [t / 1000.0 for t in pts]


@pytest.mark.slow
def test_variable_frame_rate_rows_carry_each_frames_own_time(trained_run: Path, face_videos: Path,
                                                             tmp_path: Path) -> None:
    from fer_zoo.video.predict import main

    video = tmp_path / "vfr.mp4"
    written = _vfr_video(face_videos, video)
    times = _frame_times(video)
    assert times == pytest.approx(written, abs=1e-3)  # the container kept the irregular clock
    out = tmp_path / "out"
    assert main([str(video), "--ckpt", str(trained_run), "--out", str(out)]) == 0
    rows = _read(out / "predictions.csv")
    assert [int(r["frame"]) for r in rows] == list(range(40))
    assert [float(r["time"]) for r in rows] == pytest.approx(times, abs=1e-6)
    seconds = _read(out / "vfr" / "seconds.csv")
    expect = np.bincount(np.floor(np.array(times)).astype(int))
    assert [int(s["frames"]) for s in seconds] == [int(n) for n in expect if n]


@pytest.mark.slow
def test_two_people_get_their_own_rows_and_panels(trained_run: Path, face_videos: Path, tmp_path: Path) -> None:
    from video_data import two_person_composite

    from fer_zoo.video.predict import main

    video = two_person_composite(face_videos, tmp_path / "two.mp4")
    out = tmp_path / "out"
    assert main([str(video), "--ckpt", str(trained_run), "--out", str(out)]) == 0
    rows = _read(out / "predictions.csv")
    assert {r["person"] for r in rows} == {"1", "2"}
    boxes = _read(out / "two" / "boxes.csv")
    centre = {p: np.median([(float(b["x0"]) + float(b["x1"])) / 2 for b in boxes
                            if b["person"] == p and b["face_found"] == "1"]) for p in ("1", "2")}
    assert sorted(centre.values())[0] < 640 < sorted(centre.values())[1]  # one face in each half
    for p in ("1", "2"):
        assert len([r for r in rows if r["person"] == p]) >= 60  # each tracked through (nearly) all 72 frames
    assert main([str(video), "--ckpt", str(trained_run), "--out", str(tmp_path / "one"), "--faces", "largest"]) == 0
    assert {r["person"] for r in _read(tmp_path / "one" / "predictions.csv")} == {"1"}


# ------------------------------------------------------------------------------------------------ live input


@pytest.mark.slow
def test_a_stream_on_loopback_is_answered_live_second_by_second(trained_run: Path, face_videos: Path,
                                                                tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from fer_zoo.video.predict import main

    out = tmp_path / "live"
    with serve(face_videos / "single_face.mp4") as url:
        assert main([url, "--ckpt", str(trained_run), "--out", str(out)]) == 0
    printed = [ln for ln in capsys.readouterr().out.splitlines() if "person 1:" in ln]
    assert len(printed) == 3 and all("latency" in ln for ln in printed)  # seconds 0, 1, 2 of a 2.4 s stream
    [folder] = [d for d in out.iterdir() if d.is_dir()]
    assert folder.name == url.split("://")[1].replace(":", "_")  # host_port
    rows = _read(out / "predictions.csv")
    assert [int(r["frame"]) for r in rows] == list(range(72))  # every frame of the stream, live
    assert float(rows[-1]["time"]) == pytest.approx(71 / 30, abs=0.02)
    doc = json.loads((folder / "predictions.json").read_text())
    lat = doc["live_latency_s"]
    assert lat["seconds"] == 3 and 0 <= lat["median"] < 30


@pytest.mark.parametrize("source, expect", [("/dev/video9", "no such device"), ("9", "no such device"),
                                            (None, "connection refused")])
def test_a_camera_that_does_not_exist_or_a_dead_url_is_one_line_and_exit_2(
        source: str | None, expect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fer_zoo.video.predict import main

    if source is None:
        source = f"tcp://127.0.0.1:{closed_port()}"
    elif not sys.platform.startswith("linux"):
        pytest.skip("v4l2 camera devices are Linux's")
    st = {"margin": 0.25, "size": 224, "min_confidence": 0.5, "detector": "short", "jpeg_quality": 95, "snap": 0.08,
          "version": "1"}
    run = _fake_run(tmp_path, {"facemesh": {**MESH_META, "face_crops": _crops(20, 0, [st])}})  # no crop warning
    assert main([source, "--ckpt", str(run), "--out", str(tmp_path / "o"), "--open_timeout", "2"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("predict-video: error:") and expect in err[0], err


def test_a_person_back_within_the_same_second_keeps_one_row_for_that_second(tmp_path: Path) -> None:
    """A re-identified person (a new segment of the same id) that returns within the second it left: seconds.csv
    keeps one row per (video, person, second), its frames counted together (review finding: two rows)."""
    from fer_zoo.perframe.outputs import OutputLayout, TidyCsv
    from fer_zoo.video.predict import TableSink

    layout = OutputLayout(classes=("a", "b"))
    run_table = TidyCsv(tmp_path / "all.csv", layout.header("second"))
    sink = TableSink("v", tmp_path / "v", layout, "second", run_table)

    def rows(times: list[float], p: float) -> list[dict]:
        return [{"frame": int(t * 25), "time": t, "valid": True, "windows": 1, "vec": np.array([p, 1 - p]),
                 "arrived": 0.0} for t in times]

    sink.frames("model", 1, rows([3.0, 3.04, 3.08], 1.0))
    sink.person_ended(1)
    sink.frames("model", 1, rows([3.6, 3.64], 0.0))
    sink.person_ended(1)
    sink.finish_people()
    sink.finish(ok=True)
    run_table.close()
    seconds = _read(tmp_path / "v" / "seconds.csv")
    assert [(s["second"], s["frames"]) for s in seconds] == [("3", "5")]
    assert float(seconds[0]["a"]) == pytest.approx(0.6)  # the mean over all five frames of that second
    points = sink.plot_points()[1]
    assert points[2]["t1"] <= 3.12  # the timeline does not draw the person across the gap


def test_a_stride_longer_than_the_window_is_refused(dummy_video: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Frames between two windows would get no answer at all: refused before anything is read (exit 2)."""
    from fer_zoo.video.predict import main

    run = _fake_run(tmp_path, {"facemesh": MESH_META})
    assert main([str(dummy_video), "--ckpt", str(run), "--out", str(tmp_path / "o"), "--window", "8", "--stride",
                 "9"]) == 2
    assert "--stride 9 is longer than --window 8" in capsys.readouterr().err
