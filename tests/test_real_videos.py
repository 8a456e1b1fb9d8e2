"""Face mesh on real videos: frames with a face are valid, frames without one are ``valid=False`` (never dropped).

Each clip is read with a uniform frame cap (48 frames), which keeps the first and last frame and the time order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.frames import read_frames
from extractors import get_extractor

pytestmark = pytest.mark.slow
CAP = 48


@pytest.fixture(scope="module")
def facemesh():  # noqa: ANN201
    return get_extractor("facemesh")


def _run(facemesh, path: Path) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    frames = read_frames(path, max_frames=CAP)
    assert len(frames) == CAP, "every test video has more than CAP frames"
    assert frames.indices[0] == 0 and (np.diff(frames.indices) > 0).all()
    feats, valid = facemesh.extract(frames.rgb)
    assert feats.shape == (len(frames), facemesh.dim) and valid.shape == (len(frames),)
    assert np.isfinite(feats).all()
    assert not feats[~valid].any(), "frames without a face must have all-zero features"
    if valid.any():
        pts = feats[valid][:, : facemesh.num_points * 3].reshape(-1, facemesh.num_points, 3)
        xy = pts[..., :2]
        assert xy.min() >= -1e-4 and xy.max() <= 1 + 1e-4, "x, y are normalised to the face box"
        assert (xy.max(axis=1) - xy.min(axis=1) > 0.99).all(), "the box is tight around the landmarks"
    return feats, valid


def _mask(valid: np.ndarray) -> str:
    return "".join("1" if v else "." for v in valid)


def test_single_face_is_valid(facemesh, face_videos: Path) -> None:  # noqa: ANN001
    _, valid = _run(facemesh, face_videos / "single_face.mp4")
    frac = valid.mean()
    assert frac >= 0.9, f"single_face.mp4: face in {frac:.1%} of {len(valid)} frames (need >= 90%): {_mask(valid)}"


def test_pexels_clip_is_valid(facemesh, face_videos: Path) -> None:  # noqa: ANN001
    _, valid = _run(facemesh, face_videos / "WolfgangLanger_Pexels.mp4")
    frac = valid.mean()
    assert frac >= 0.9, f"WolfgangLanger_Pexels.mp4: face in {frac:.1%} of {len(valid)} frames: {_mask(valid)}"


def test_no_face_is_all_invalid(facemesh, face_videos: Path) -> None:  # noqa: ANN001
    feats, valid = _run(facemesh, face_videos / "no_face.mp4")
    assert len(valid) == CAP, "frames without a face are kept, not dropped"
    assert not valid.any(), f"no_face.mp4: a face was 'found' in {valid.mean():.1%} of frames: {_mask(valid)}"
    assert not feats.any()


@pytest.mark.parametrize(("name", "face_first"), [("face_noface.mov", True), ("noface_face.mov", False)])
def test_face_leaving_or_entering_the_shot(facemesh, face_videos: Path, name: str, face_first: bool) -> None:  # noqa: ANN001
    _, valid = _run(facemesh, face_videos / name)
    q = len(valid) // 4
    head, tail = valid[:q].mean(), valid[-q:].mean()
    with_face, without = (head, tail) if face_first else (tail, head)
    msg = (
        f"{name}: valid in {head:.1%} of the first quarter, {tail:.1%} of the last quarter, "
        f"{valid.mean():.1%} overall: {_mask(valid)}"
    )
    assert with_face >= 0.75, msg
    assert without <= 0.25, msg
    assert 0.2 <= valid.mean() <= 0.8, msg


def test_face_mesh_over_capped_frames_far_apart(facemesh, face_videos: Path) -> None:  # noqa: ANN001
    """Frame cap 8 on a 472-frame clip: samples 2.8 s apart, the face moving between them. Tracking from the
    previous sample's landmarks goes stale (8.4 px mean from tracking through every frame, measured by
    benchmarks/bench_mediapipe_modes.py); the default detects on every frame, so each frame's features are what
    that frame alone gives, whatever else was sampled."""
    from extractors.base import config_hash

    assert facemesh.config["static_image_mode"] is True
    tracking = get_extractor("facemesh", static_image_mode=False)
    assert tracking.config_hash != facemesh.config_hash  # the mode is part of the store hash
    assert config_hash("facemesh", "1", {**facemesh.config, "static_image_mode": False}) == tracking.config_hash
    whole = read_frames(face_videos / "WolfgangLanger_Pexels.mp4")
    keep = whole.indices[np.round(np.linspace(0, len(whole) - 1, 8)).astype(int)]
    feats, valid = facemesh.extract(whole.rgb[keep])
    assert valid.all(), f"a face on every sampled frame: {_mask(valid)}"
    for j in (0, 3, 7):
        alone, _ = facemesh.extract(whole.rgb[keep[j]:keep[j] + 1])
        np.testing.assert_allclose(alone[0], feats[j], atol=1e-6)
    # Against tracking through every frame (the mode's intended use), at the sampled frames, in face-box units.
    dense, dense_valid = tracking.extract(whole.rgb)
    n = facemesh.num_points * 3
    ref = dense[keep, :n].reshape(8, -1, 3)[..., :2]
    tracked, _ = tracking.extract(whole.rgb[keep])
    err_detect = np.abs(feats[:, :n].reshape(8, -1, 3)[..., :2] - ref).mean()
    err_track = np.abs(tracked[:, :n].reshape(8, -1, 3)[..., :2] - ref).mean()
    assert dense_valid[keep].all()
    assert err_detect < err_track, f"detection {err_detect:.4f} vs tracking {err_track:.4f} (box units)"


def test_pose_does_not_find_bodies_where_there_is_no_person(face_videos: Path) -> None:
    """no_face.mp4 is sky and a logo. Tracking (``static_image_mode=False``) carried a false detection on from frame
    to frame: 37 of 64 capped frames valid; the default detects on every frame (9 of 64, benchmarks/
    bench_mediapipe_modes.py). The mode is part of the store hash."""
    pose = get_extractor("pose")
    tracking = get_extractor("pose", static_image_mode=False)
    assert pose.config["static_image_mode"] is True and tracking.config_hash != pose.config_hash
    frames = read_frames(face_videos / "no_face.mp4", 32).rgb
    _, valid = pose.extract(frames)
    _, tracked = tracking.extract(frames)
    assert valid.sum() < tracked.sum(), f"detection {_mask(valid)} vs tracking {_mask(tracked)}"
    assert valid.mean() <= 0.25, f"bodies 'found' on {valid.mean():.0%} of frames without a person: {_mask(valid)}"
