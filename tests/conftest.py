"""Shared fixtures: the real data in ``../shared/data`` (skipped with a reason when that folder is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def face_videos() -> Path:
    """``../shared/data/face-videos`` (single_face.mp4, no_face.mp4, face_noface.mov, noface_face.mov, ...)."""
    path = SHARED_DATA / "face-videos"
    if not (path / "single_face.mp4").is_file():
        pytest.skip(f"real face videos not found at {path} (the shared data folder is absent)")
    return path
