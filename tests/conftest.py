"""Shared fixtures: the real data in ``../shared/data`` (skipped with a reason when that folder is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def face_videos() -> Path:
    """``../shared/data/face-videos`` (single_face.mp4, no_face.mp4, face_noface.mov, noface_face.mov, ...)."""
    path = SHARED_DATA / "face-videos"
    if not (path / "single_face.mp4").is_file():
        pytest.skip(f"real face videos not found at {path} (the shared data folder is absent)")
    return path


@pytest.fixture(scope="session")
def face_photos() -> Path:
    """``../shared/data/faces-static/images`` (real labeled face photos, mostly 350x350)."""
    path = SHARED_DATA / "faces-static" / "images"
    if not path.is_dir():
        pytest.skip(f"real face photos not found at {path} (the shared data folder is absent)")
    return path


@pytest.fixture(scope="session")
def sample_stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Feature stores of the bundled sample (every default extractor), built once per test session."""
    import os

    from fer_zoo.extraction.command import main as extract

    root = tmp_path_factory.mktemp("sample_features")
    cwd = Path.cwd()
    os.chdir(REPO)  # the config's paths are relative to the repository
    try:
        rc = extract(["--config", "configs/extract.yaml", "--store_root", str(root)])
    finally:
        os.chdir(cwd)
    assert rc == 0, "extracting the bundled sample failed"
    return root
