"""Issue 10, end to end: one extraction over a folder holding each kind of input that used to read wrong silently.

A manifest points at good clips that used to be misread (unpadded frame names, AppleDouble files, folders named
``subj.1``/``subj.2``, a cover picture before the video stream, .tif/.jfif/.webp photos) and at bad ones (a
truncated download, a garbled stream, a .heic photo, a missing file). The run must store every good clip, list
every bad one in the summary with its reason, exit 3, and keep MediaPipe's C++ log out of the terminal even with
``--num_workers 0`` (MediaPipe then runs in the main process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datamodules.feature_store import FeatureStore
from datamodules.frames import read_frames

sys.path.insert(0, str(Path(__file__).parent))
from video_data import cover_then_video  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CAP = 8


def _jpegs(folder: Path, frames: np.ndarray, names: list[str]) -> None:
    import cv2

    folder.mkdir(parents=True)
    for f, name in zip(frames, names):
        assert cv2.imwrite(str(folder / name), np.ascontiguousarray(f[:, :, ::-1]))


@pytest.mark.slow
def test_extraction_over_every_kind_of_bad_input(tmp_path: Path, face_videos: Path) -> None:
    import cv2

    clips = tmp_path / "clips"
    clips.mkdir()
    face = read_frames(face_videos / "single_face.mp4", 12).rgb  # 12 real face frames, 640x360
    small = np.ascontiguousarray(face[:, ::2, ::2])  # 320x180 keeps the photos small
    # Good clips that used to be misread.
    _jpegs(clips / "unpadded", face, [f"{i}.jpg" for i in range(1, 13)])
    for name in ("._1.jpg", "._2.jpg", ".DS_Store"):
        (clips / "unpadded" / name).write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    _jpegs(clips / "subj.1", face[:6], [f"{i:05d}.jpg" for i in range(1, 7)])
    _jpegs(clips / "subj.2", face[6:], [f"{i:05d}.jpg" for i in range(1, 7)])
    cover_then_video(clips / "cover.mkv", face)
    for suffix in (".tif", ".webp"):
        assert cv2.imwrite(str(clips / f"photo_{suffix[1:]}{suffix}"), np.ascontiguousarray(small[0][:, :, ::-1]))
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(small[0][:, :, ::-1]))
    (clips / "photo_jfif.jfif").write_bytes(buf.tobytes())
    (clips / "video.mp4").symlink_to(face_videos / "single_face.mp4")
    # Bad clips.
    data = (face_videos / "WolfgangLanger_Pexels.mp4").read_bytes()
    (clips / "half.mp4").write_bytes(data[: len(data) // 2])
    garbled = bytearray((face_videos / "single_face.mp4").read_bytes())
    rng = np.random.default_rng(1)
    for off in range(60_000, 180_000, 30_000):
        garbled[off:off + 16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
    (clips / "garbled.mp4").write_bytes(bytes(garbled))
    (clips / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    good = {"unpadded": "unpadded", "subj.1": "subj.1", "subj.2": "subj.2", "cover.mkv": "cover",
            "photo_tif.tif": "photo_tif", "photo_webp.webp": "photo_webp", "photo_jfif.jfif": "photo_jfif",
            "video.mp4": "video"}  # path -> clip id
    bad = {"half.mp4": ("half", "truncated or corrupt video"), "garbled.mp4": ("garbled", "cannot decode video"),
           "photo.heic": ("photo.heic", ".heic is not a known video or image type"),
           "gone.mp4": ("gone", "no such file")}  # path -> (clip id, reason)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label\n" + "".join(f"clips/{p},neutral\n" for p in [*good, *bad]))
    config = tmp_path / "extract.yaml"
    config.write_text(json.dumps({
        "source": {"class_path": "datamodules.sources.ManifestSource", "init_args": {"csv": str(manifest)}},
        "store_root": str(tmp_path / "features"), "frame_cap": CAP, "num_workers": 0,
        "modalities": {"face": {"name": "facemesh", "config": {"geometry": False}}},
    }))
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "fer_zoo", "extract", "--config", str(config)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    explain = f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-5000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
    assert proc.returncode == 3, explain
    for name, (clip_id, reason) in bad.items():  # every bad clip in the summary, with its reason
        line = next((x for x in proc.stdout.splitlines() if f"FAILED [face] clips/{clip_id}:" in x), None)
        assert line is not None and reason in line, f"{name}: {line}\n{explain}"
    assert "W0000" not in proc.stdout + proc.stderr and "XNNPACK" not in proc.stdout + proc.stderr, explain

    store_dir = next((tmp_path / "features" / "face").glob("*/meta.json")).parent
    assert "inference_feedback_manager" in (store_dir / "worker_stderr.log").read_text()  # the log kept its lines
    assert json.loads((store_dir / "request.json").read_text())["frame_order"] == "natural"
    idx = pd.read_parquet(store_dir / "index.parquet").set_index("clip_id")
    assert sorted(idx.index[idx.status == "ok"]) == sorted(f"clips/{c}" for c in good.values()), explain
    assert sorted(idx.index[idx.status == "failed"]) == sorted(f"clips/{c}" for c, _ in bad.values())
    store = FeatureStore(store_dir)
    # The unpadded folder was read in time order: its stored features are those of the frames 1, 2, ..., 12.
    feats, valid = store.clip("clips/unpadded")
    assert len(valid) == CAP and valid.all()
    from extractors import get_extractor

    keep = np.round(np.linspace(0, 11, CAP)).astype(int)  # the cap's frames, by time position
    in_time_order = np.stack([cv2.imread(str(clips / "unpadded" / f"{k + 1}.jpg"))[:, :, ::-1] for k in keep])
    expect, _ = get_extractor("facemesh", geometry=False).extract(np.ascontiguousarray(in_time_order))
    np.testing.assert_allclose(np.asarray(feats, np.float32), expect.astype(np.float16), atol=2e-3)
    assert len(store.clip("clips/cover")[1]) == CAP  # the 12-frame video, not the 1-frame cover
