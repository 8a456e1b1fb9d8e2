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


#: A CLIP small enough for CPU tests (open_clip model config; the file's stem is the model name).
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session")
def tiny_backbones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small timm and open_clip networks created here with seeded random weights and saved the way downloaded
    checkpoints are (safetensors / a torch state dict), so tests load them through the libraries' file routes.
    Keys: ``convnext_atto`` (timm safetensors), ``clip_config`` (fz-tiny-clip.json), ``clip`` (its .pt)."""
    import json

    import open_clip
    import timm
    import torch
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("backbones")
    torch.manual_seed(0)
    save_file(timm.create_model("convnext_atto", pretrained=False).state_dict(), root / "convnext_atto.safetensors")
    cfg = root / "fz-tiny-clip.json"
    cfg.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    torch.save(open_clip.create_model("fz-tiny-clip").state_dict(), root / "fz-tiny-clip.pt")
    return {"convnext_atto": root / "convnext_atto.safetensors", "clip_config": cfg, "clip": root / "fz-tiny-clip.pt"}
