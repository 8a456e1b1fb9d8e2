"""Frame embeddings from any timm model: the pooled pre-logits features, with timm's own data config.

timm (Wightman, *PyTorch Image Models*, github.com/huggingface/pytorch-image-models) maintains the architectures and
the pretrained weights researchers cite: CLIP image towers (``vit_base_patch16_clip_224.openai``), DINOv2
(``vit_small_patch14_dinov2.lvd142m``), SigLIP (``vit_base_patch16_siglip_224``), ConvNeXt, EfficientNet...
Everything model-specific (architecture, checkpoint conversion, input size, interpolation, crop, mean/std) is timm's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from extractors.base import Extractor, FrameSource
from extractors.frame_geometry import apply_geometry
from extractors.hub_weights import RANDOM_SOURCE, HubFile, resolve
from extractors.registry import register_extractor
from extractors.torchvision_frames import _file_sha256, bf16_supported
from extractors.weight_check import load_matched, match_state_dict, read_state_dict


def parse_weights(value: Any) -> bool | str:
    """``pretrained``: ``true`` (the hub checkpoint of the model's tag), ``false``/``none`` (random, tests only), or a
    local file path (str)."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in {"", "none", "false"}):
        return False
    if value is True or (isinstance(value, str) and value.strip().lower() == "true"):
        return True
    if isinstance(value, str | Path):
        return str(value)
    raise ValueError(f"pretrained must be true, false/none or a file path, got {value!r}")


def check_common(name: str, precision: str, batch_frames: int, extra: dict[str, Any]) -> str:
    """Validate the keys every network extractor shares; returns the resolved precision (``bf16``/``fp32``)."""
    if extra:
        raise TypeError(f"{name}: unknown config keys {sorted(extra)}")
    if precision not in {"auto", "bf16", "fp32"}:
        raise ValueError(f"{name}: precision must be auto, bf16 or fp32, got {precision!r}")
    if isinstance(batch_frames, bool) or not isinstance(batch_frames, int) or batch_frames < 1:
        raise ValueError(f"{name}: batch_frames must be a positive integer, got {batch_frames!r}")
    return ("bf16" if bf16_supported() else "fp32") if precision == "auto" else precision


def timm_hub_file(model_name: str) -> HubFile:
    """Where timm would fetch ``model_name``'s pretrained weights (HF hub repo, else its URL)."""
    import timm
    from timm.models import get_pretrained_cfg

    arch, tag = timm.models.split_model_name_tag(model_name)
    cfg = get_pretrained_cfg(f"{arch}.{tag}" if tag else model_name) or get_pretrained_cfg(arch)
    if cfg is None:
        raise ValueError(f"timm: no pretrained weights are registered for {model_name!r}")
    if cfg.hf_hub_id:
        repo, _, rev = cfg.hf_hub_id.partition("@")
        if cfg.hf_hub_filename:
            names: tuple[str, ...] = (cfg.hf_hub_filename,)
        else:
            names = ("model.safetensors", "pytorch_model.bin")  # timm's order (safetensors first)
        return HubFile(repo_id=repo, filenames=names, revision=rev or None)
    if cfg.url:
        from torch.hub import get_dir

        return HubFile(url=cfg.url, url_cache=Path(get_dir()) / "checkpoints")
    raise ValueError(f"timm: {model_name!r} has no hub id or URL for its weights; pass a local file as `pretrained`")


class TimmFrames(Extractor):
    """Frozen timm image encoder per frame: ``forward_head(forward_features(x), pre_logits=True)``.

    Config:
      - ``model``: any timm model name, with or without a pretrained tag (``convnext_tiny.in12k_ft_in1k``).
      - ``pretrained``: ``true`` (timm's hub checkpoint: from the Hugging Face cache, downloaded once by
        ``fetch-weights``), a local file (``.safetensors``/``.pth``, e.g. copied from a login node), or ``false``
        (random init: only for tests; the store and ``fit`` say so). Both real routes load the file through
        :func:`load_timm_file`: every tensor of the network must come from the file (timm's checkpoint conversion
        applied where the file is not in timm's layout), else one error names the file and the missing keys.
      - ``model_kwargs``: extra ``timm.create_model`` arguments (e.g. ``{img_size: 224}`` for a DINOv2 ViT).
      - ``precision`` (``auto``: bf16 autocast where supported), ``batch_frames``.

    Preprocessing is timm's eval transform for the model (``resolve_data_config`` + ``create_transform``: resize the
    short side to ``input_size / crop_pct`` with the model's interpolation, centre-crop ``input_size``, normalise
    with its mean/std), recorded in the store's meta under ``data_config``. The resize and crop run on PIL images,
    timm's reference input, with the pixels of timm's own pipeline bit for bit (``extractors.frame_geometry``).
    Output: float32 ``[T, D]``, D = the model's pre-logits width (``head_hidden_size``); every frame valid.
    Raises ``WeightsUnavailableError`` (offline, not cached; names file and command), ``FileNotFoundError``,
    ``WeightsFileError`` (a ``ValueError``: the file is cut short, unreadable, or does not fit the model).
    """

    name = "timm"
    version = "2"  # 2: resize/crop on PIL images as timm's reference pipeline (was: on uint8 tensors)

    def __init__(self, model: str, pretrained: bool | str = True, model_kwargs: dict[str, Any] | None = None,
                 precision: str = "auto", batch_frames: int = 64, **extra: Any) -> None:
        resolved = check_common(self.name, precision, batch_frames, extra)
        if not isinstance(model, str) or not model:
            raise ValueError(f"{self.name}: model must be a timm model name, got {model!r}")
        weights = parse_weights(pretrained)
        kwargs = dict(model_kwargs or {})
        super().__init__(model=model, pretrained=weights, model_kwargs=kwargs, precision=resolved)
        self.batch_frames = batch_frames
        self.weights_sha256: str | None = None
        self.model, self.weights_source, self.weights_file = self._build(model, weights, kwargs)
        self._data_config, self._geometry, self._mean, self._std = self._transform()

    @property
    def random_weights(self) -> bool:
        return self.config["pretrained"] is False

    def _build(self, model: str, weights: bool | str, kwargs: dict[str, Any]) -> tuple[nn.Module, str, str | None]:
        import timm

        if not timm.is_model(timm.models.split_model_name_tag(model)[0]):
            raise ValueError(f"{self.name}: unknown timm model {model!r} (see timm.list_models())")
        if weights is False:
            net = timm.create_model(model, pretrained=False, num_classes=0, **kwargs)
            return self._finish(net), RANDOM_SOURCE, None
        if weights is True:
            hub = timm_hub_file(model)
            file = resolve(hub, f"timm {model}")
            source = f"timm {model} pretrained ({hub.describe()}; loaded from {file})"
        else:
            file = Path(weights).expanduser()
            if not file.is_file():
                raise FileNotFoundError(f"{self.name}: weights file {file} does not exist (config key `pretrained`)")
            self.weights_sha256 = _file_sha256(str(file))
            source = f"timm {model} from local file {file.resolve()}"
        net, note = load_timm_file(model, file, kwargs)
        return self._finish(net), source + note, str(file)

    @staticmethod
    def _finish(net: nn.Module) -> nn.Module:
        return net.eval().requires_grad_(False).to(memory_format=torch.channels_last)

    def _transform(self) -> tuple[dict[str, Any], list[Any], tuple[float, ...], tuple[float, ...]]:
        from timm.data import create_transform, resolve_data_config

        size = self.config["model_kwargs"].get("img_size")  # a resized ViT: timm's config keeps the pretrained size
        args = {"input_size": (3, *((size, size) if isinstance(size, int) else tuple(size)))} if size else {}
        cfg = resolve_data_config(args, model=self.model)
        t = create_transform(**cfg, is_training=False)
        steps = list(getattr(t, "transforms", [t]))
        kinds = [type(s).__name__ for s in steps]
        if kinds[-1] != "Normalize" or not {"ToTensor", "MaybeToTensor"} & set(kinds):
            raise ValueError(f"{self.name}: unexpected timm eval transform {kinds}")
        # The geometric steps run on PIL images in the loader workers (extractors.frame_geometry); the tensor
        # conversion and the normalisation (with the same mean/std) run batched on the model's device.
        geometry = [s for s in steps if type(s).__name__ not in {"ToTensor", "MaybeToTensor", "Normalize"}]
        mean, std = tuple(float(x) for x in cfg["mean"]), tuple(float(x) for x in cfg["std"])
        return dict(cfg), geometry, mean, std

    @property
    def dim(self) -> int:
        return int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)

    @property
    def schema(self) -> list[str]:
        return [f"{self.config['model']}_{i}" for i in range(self.dim)]

    def describe(self) -> dict[str, Any]:
        cfg = self._data_config
        return {"weights_source": self.weights_source, "random_weights": self.random_weights,
                **({"weights_sha256": self.weights_sha256} if self.weights_sha256 else {}),
                **({"weights_file": self.weights_file} if self.weights_file else {}),
                "data_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
                "preprocessing": (
                    f"timm eval transform of {self.config['model']}: {' -> '.join(repr(s) for s in self._geometry)}"
                    f" on the RGB frame as a PIL image (what the crop drops skipped between Pillow's two passes), "
                    f"scaled to [0,1], normalised with mean {self._mean} / std {self._std}")}

    def preprocess(self, frames: FrameSource) -> torch.Tensor:
        return apply_geometry(frames, self._geometry)  # uint8 [T, 3, s, s]; normalised on the model's device

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-logits embedding of a normalised float batch ``[B, 3, s, s]`` -> ``[B, D]``."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(self, pre: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        feats = run_batched(self.embed, next(self.model.parameters()).device, pre, self._mean, self._std,
                            self.config["precision"] == "bf16", self.batch_frames)
        return feats, np.ones(len(feats), dtype=bool)


def run_batched(fn: Any, device: torch.device, pre: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                bf16: bool, batch_frames: int) -> np.ndarray:
    """``fn`` over ``pre`` (uint8 ``[T, 3, s, s]``) in chunks: to the device, [0,1], normalised, channels-last,
    under ``inference_mode`` and (when ``bf16``) bf16 autocast; float32 ``[T, D]`` on the CPU."""
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    outs = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for chunk in pre.split(batch_frames):
            x = ((chunk.to(device).float() / 255.0 - m) / s).contiguous(memory_format=torch.channels_last)
            outs.append(fn(x).float().cpu())
    return torch.cat(outs).numpy()


def _classifiers(net: nn.Module) -> tuple[str, ...]:
    """Key prefixes of the classifier(s) timm's pretrained config names (``head.fc.``; ``head.``, ``head_dist.``)."""
    names = (getattr(net, "pretrained_cfg", None) or {}).get("classifier") or ()
    return tuple(f"{n}." for n in ((names,) if isinstance(names, str) else names))


def load_timm_file(model: str, file: Path, kwargs: dict[str, Any]) -> tuple[nn.Module, str]:
    """timm model ``model`` (classifier removed) with the weights of ``file``, every tensor verified.

    A file in timm's own layout (hub files, ``save_file(model.state_dict())``) must fit the network exactly, the
    classifier aside (it is dropped, as ``num_classes=0`` does): loaded directly. A file under one wrapper prefix
    is accepted only when it then fits exactly (:mod:`extractors.weight_check`). Anything else goes through timm's
    own loading (``pretrained_cfg_overlay``: its checkpoint filter converts e.g. original OpenAI CLIP or DINOv2
    files and resamples position embeddings), strictly: the model is built with as many classes as the (converted)
    file's classifier has, so timm keeps ``strict=True`` and refuses any missing, unexpected or mis-shaped tensor;
    the classifier is removed afterwards. Returns the network (eval not yet set) and a note for ``weights_source``.
    Raises :class:`~extractors.weight_check.WeightsFileError` naming the file (cut short, or not fitting: the first
    missing keys).
    """
    import timm

    what = f"timm model {model}"
    found = read_state_dict(file)
    net = timm.create_model(model, pretrained=False, num_classes=0, **kwargs)
    heads = _classifiers(net)
    match = match_state_dict(net.state_dict(), found, ignore=heads)
    if match.exact:
        load_matched(net, match, file, what, ignore=heads)
        return net, match.note()
    if match.prefix is not None:  # a wrapper's prefix, and still no exact fit: never converted half-blind
        raise match.error(file, what)
    cfg = net.pretrained_cfg
    rows = [int(found[f"{h}weight"].shape[0]) for h in heads if f"{h}weight" in found]
    last: BaseException | None = None
    for n in dict.fromkeys([*rows[:1], int(cfg.get("num_classes") or 0), 0]):
        try:  # num_classes equal in the model and the overlay: timm drops nothing and loads strictly
            net = timm.create_model(model, pretrained=True, num_classes=n, **kwargs, pretrained_cfg_overlay={
                "state_dict": found, "num_classes": n, "label_offset": 0})
        except (RuntimeError, KeyError, ValueError, IndexError, AssertionError) as err:  # strict load or filter
            last = err
            continue
        net.pretrained_cfg.pop("state_dict", None)  # a deep copy of every tensor: do not keep (or pickle) it
        net.reset_classifier(0)
        return net, "; converted by timm's checkpoint filter and loaded strictly"
    raise match.error(file, what, cause=last)


register_extractor("timm")(TimmFrames)
