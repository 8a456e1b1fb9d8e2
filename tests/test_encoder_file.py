"""Encoder files (``*.safetensors`` + JSON from finetune-frames) in the torchvision frame extractors.

The networks here are random (no download offline): these tests check loading, hashing and errors, never accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.labels import FACES8
from extractors import get_extractor
from extractors.encoder_file import EncoderFileError, json_path, load_encoder, save_encoder

MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.2, 0.3)


def _write_encoder(path: Path, seed: int, arch: str = "mobilenet_v2", size: int = 64) -> Path:
    import torchvision.models as tvm

    torch.manual_seed(seed)
    net = tvm.get_model(arch, weights=None).eval()
    dim = {"mobilenet_v2": 1280, "resnet18": 512}[arch]
    sd = {k: v for k, v in net.state_dict().items() if not k.startswith(("fc.", "classifier."))}
    head = {"head.weight": torch.randn(len(FACES8), dim) * 0.05, "head.bias": torch.randn(len(FACES8))}
    meta = {"architecture": arch, "library": "torchvision", "input_size": size,
            "normalisation": {"scale": "x / 255", "mean": list(MEAN), "std": list(STD)}, "embedding_dim": dim,
            "classes": list(FACES8.classes), "fingerprint": {"data": f"seed{seed}", "config": "test"}}
    return save_encoder(path, sd, head, meta)


@pytest.fixture()
def frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(3, 90, 70, 3), dtype=np.uint8)


def test_encoder_features_are_the_networks_own(tmp_path: Path, frames: np.ndarray) -> None:
    """The extractor loads every tensor, uses the file's input size and normalisation, and its head."""
    import cv2
    import torchvision.models as tvm

    enc = _write_encoder(tmp_path / "enc.safetensors", seed=0)
    ext = get_extractor("mobilenet_v2", weights=str(enc), precision="fp32")
    assert ext.config["image_size"] == 64 and ext.dim == 1280
    meta = ext.describe()
    assert meta["encoder"]["fingerprint"]["data"] == "seed0" and meta["weights_sha256"] == meta["encoder"][
        "safetensors_sha256"]
    assert str(MEAN) in meta["preprocessing"]
    feats, valid = ext.extract(frames)

    net = tvm.mobilenet_v2(weights=None).eval()
    torch.manual_seed(0)
    net.load_state_dict(tvm.mobilenet_v2(weights=None).state_dict())
    x = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_LINEAR) for f in frames])
    x = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / \
        torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        want = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(net.features(x), 1), 1).numpy()
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(feats, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())  # relative: random-net scale
    assert valid.all()

    both = get_extractor("mobilenet_v2", weights=str(enc), precision="fp32", output="both")
    out, _ = both.extract(frames)
    assert out.shape == (3, 1280 + 8) and both.schema[-8:] == [f"p_{c}" for c in FACES8.classes]
    np.testing.assert_array_equal(out[:, :1280], feats)
    head = load_encoder(enc).head
    probs = torch.softmax(torch.from_numpy(feats) @ head["head.weight"].T + head["head.bias"], -1).numpy()
    np.testing.assert_allclose(out[:, 1280:], probs, atol=1e-5)
    assert both.config_hash != ext.config_hash
    probs_only = get_extractor("mobilenet_v2", weights=str(enc), output="probs")
    assert probs_only.dim == 8


def test_a_changed_encoder_file_changes_the_hash(tmp_path: Path, frames: np.ndarray) -> None:
    path = tmp_path / "enc.safetensors"
    _write_encoder(path, seed=0)
    first = get_extractor("mobilenet_v2", weights=str(path))
    again = get_extractor("mobilenet_v2", weights=str(path))
    assert first.config_hash == again.config_hash
    _write_encoder(path, seed=1)  # fine-tuned again, saved over the same path
    changed = get_extractor("mobilenet_v2", weights=str(path))
    assert changed.config_hash != first.config_hash, "a new encoder at the same path would reuse the old store"
    a, b = changed.extract(frames)[0], first.extract(frames)[0]
    assert np.abs(a - b).max() > 0.1 * np.abs(b).max()


def test_wrong_or_truncated_encoder_files_are_refused(tmp_path: Path) -> None:
    path = _write_encoder(tmp_path / "enc.safetensors", seed=0)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # a copy that stopped half-way
    with pytest.raises(EncoderFileError, match=r"enc\.safetensors: sha256 .* truncated"):
        get_extractor("mobilenet_v2", weights=str(path))
    path.write_bytes(good)
    with pytest.raises(EncoderFileError, match=r"enc\.safetensors: an encoder for 'mobilenet_v2', not 'resnet18'"):
        get_extractor("resnet18", weights=str(path))
    with pytest.raises(ValueError, match="trained at 64"):
        get_extractor("mobilenet_v2", weights=str(path), image_size=224)
    with pytest.raises(ValueError, match="output='probs' needs class probabilities"):
        get_extractor("mobilenet_v2", weights="none", output="probs")
    # Bytes that are not safetensors, with a JSON that vouches for them: refused as unreadable, naming the file.
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"not a safetensors file at all")
    meta = json.loads(json_path(path).read_text())
    from extractors.encoder_file import file_sha256

    json_path(bogus).write_text(json.dumps({**meta, "safetensors_sha256": file_sha256(bogus)}))
    with pytest.raises(EncoderFileError, match=r"bogus\.safetensors: not a readable safetensors file"):
        get_extractor("mobilenet_v2", weights=str(bogus))
    json_path(path).unlink()
    with pytest.raises(FileNotFoundError, match=r"enc\.safetensors has no enc\.json"):
        get_extractor("mobilenet_v2", weights=str(path))
    with pytest.raises(FileNotFoundError, match="absent.safetensors"):
        get_extractor("mobilenet_v2", weights=str(tmp_path / "absent.safetensors"))
