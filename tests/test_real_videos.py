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
