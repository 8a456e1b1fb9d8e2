"""CLIP frame encoders through open_clip: image embeddings, and zero-shot class probabilities from the text tower.

Why open_clip (github.com/mlfoundations/open_clip) rather than transformers: it loads the original OpenAI CLIP
checkpoints and the LAION/DataComp ones with one name + tag (``ViT-B-16`` / ``openai``, ``laion2b_s34b_b88k``),
keeps each tag's exact preprocessing (mean/std, interpolation, resize mode) and activation (OpenAI's QuickGELU) in
its pretrained table, and builds a model from a local checkpoint file the same way, so an offline node runs the
same code. transformers covers the OpenAI CLIPs only as converted copies, each with its own processor download.

Zero-shot (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision", sec. 3.1.4):
for each class, every prompt template is filled with the class's word, the text embeddings are L2-normalised and
averaged over templates (prompt ensembling), renormalised; a frame's probabilities are
``softmax(logit_scale * <normalised image embedding, class embedding>)`` over the classes, in the order of the
dataset's label vocabulary (the extraction run passes its class names).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from extractors.base import Extractor, FrameSource
from extractors.frame_geometry import apply_geometry
from extractors.hub_weights import RANDOM_SOURCE, HubFile, resolve
from extractors.registry import register_extractor
from extractors.timm_frames import check_common, parse_weights, run_batched
from extractors.torchvision_frames import _file_sha256
from extractors.weight_check import load_matched, match_state_dict, read_state_dict

#: Prompt templates ("{}" is the class word); after CLIP's prompt-ensembling recipe, worded for faces.
DEFAULT_TEMPLATES = (
    "a photo of a {} face.",
    "a close-up photo of a {} face.",
    "a photo of a person with a {} facial expression.",
    "a face that looks {}.",
)
#: Canonical class name -> the adjective a prompt uses ("a photo of a happy face", not "... a happiness face").
DEFAULT_CLASS_WORDS = {
    "happiness": "happy", "sadness": "sad", "anger": "angry", "surprise": "surprised", "disgust": "disgusted",
    "fear": "fearful", "neutral": "neutral", "contempt": "contemptuous", "anxiety": "anxious",
    "helplessness": "helpless", "disappointment": "disappointed",
}
_SKIP_STEPS = {"ToTensor", "MaybeToTensor", "Normalize", "_convert_to_rgb", "MaybeConvertMode"}  # PIL-side steps


def prompts_for(class_names: list[str], templates: list[str], class_words: dict[str, str]) -> list[list[str]]:
    """``[C][K]`` prompt texts: every template filled with each class's word (class order kept); "a" before a
    vowel becomes "an" ("a photo of an angry face")."""
    return [[re.sub(r"\b([Aa]) ([aeiouAEIOU])", r"\1n \2", t.format(class_words.get(c, c))) for t in templates]
            for c in class_names]


def open_clip_hub_file(model: str, tag: str) -> tuple[HubFile, dict[str, Any]]:
    """Where open_clip keeps ``model``/``tag``'s checkpoint, and the tag's pretrained config."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise ValueError(f"clip: {model!r} has no pretrained tag {tag!r}; known tags: {tags}, or give a file path")
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])  # "org/repo/" (default file name) or "org/repo/file"
        filename = filename or "open_clip_pytorch_model.bin"
        names = (filename[:-4] + ".safetensors", filename) if filename.endswith(".bin") else (filename,)
        if filename == "open_clip_pytorch_model.bin":
            names = ("open_clip_model.safetensors", filename)
        return HubFile(repo_id=repo, filenames=names), cfg
    return HubFile(url=cfg["url"], url_cache=Path("~/.cache/clip").expanduser()), cfg


class ClipFrames(Extractor):
    """Frozen open_clip image tower per frame; ``output`` picks the modality.

    Config:
      - ``model``: an open_clip model name (``ViT-B-16``, ``ViT-L-14``, ``ViT-B-16-SigLIP``...).
      - ``pretrained``: an open_clip tag (``openai``, ``laion2b_s34b_b88k``: from the Hugging Face cache, fetched
        once by ``fetch-weights``), a local checkpoint file, or ``none`` (random init: tests only, labelled as such).
      - ``tag``: with a local file, the tag whose preprocessing and QuickGELU setting the file was trained with.
      - ``model_config``: a JSON model config to register with open_clip first (custom or test architectures).
      - ``output``: ``embedding`` (the projected image embedding, D = ``embed_dim``: 512 for ViT-B/16, 768 for
        ViT-L/14) or ``zeroshot`` (per-frame class probabilities, D = number of classes, rows sum to 1).
      - ``class_names`` (zero-shot; filled by the extraction run from the source's vocabulary, in its order),
        ``templates`` (list of prompts with ``{}``), ``class_words`` (class -> word in the prompt; see defaults).
      - ``precision`` (``auto``: bf16 autocast where supported), ``batch_frames``.
    Output float32 ``[T, D]``, all frames valid. Raises ``WeightsUnavailableError`` (offline, not cached),
    ``FileNotFoundError``, ``ValueError`` (bad key value, zero-shot without class names), ``WeightsFileError`` (a
    ``ValueError``: the file is cut short, unreadable, or does not fit the model; see :func:`load_clip_file`).
    """

    name = "clip"
    version = "2"  # 2: resize/crop on PIL images as open_clip's reference pipeline (was: on uint8 tensors)
    needs_class_names: ClassVar[bool] = False

    def __init__(self, model: str = "ViT-B-16", pretrained: str | bool | None = "openai", tag: str | None = None,
                 model_config: str | None = None, output: str = "embedding", class_names: list[str] | None = None,
                 templates: list[str] | None = None, class_words: dict[str, str] | None = None,
                 precision: str = "auto", batch_frames: int = 64, **extra: Any) -> None:
        resolved = check_common(self.name, precision, batch_frames, extra)
        if output not in {"embedding", "zeroshot"}:
            raise ValueError(f"{self.name}: output must be 'embedding' or 'zeroshot', got {output!r}")
        weights = parse_weights(pretrained) if pretrained is not True else "openai"
        cfg: dict[str, Any] = {"model": model, "pretrained": weights, "tag": tag, "output": output,
                               "precision": resolved}
        if model_config is not None:
            cfg["model_config"] = str(model_config)
        if output == "zeroshot":
            if not class_names:
                raise ValueError(f"{self.name}: output 'zeroshot' needs class_names (the extraction run passes the "
                                 "source's vocabulary; in Python pass class_names=[...])")
            tpl = list(templates or DEFAULT_TEMPLATES)
            if not tpl or any("{}" not in t for t in tpl):
                raise ValueError(f"{self.name}: every template needs a '{{}}' for the class word, got {tpl}")
            words = {**DEFAULT_CLASS_WORDS, **(class_words or {})}
            cfg.update(class_names=list(class_names), templates=tpl,
                       class_words={c: words.get(c, c) for c in class_names})
        super().__init__(**cfg)
        self.batch_frames = batch_frames
        self.weights_sha256: str | None = None
        self.model, self.weights_source, steps, self._pre_cfg = self._build()
        self._geometry = steps
        self._mean = tuple(float(x) for x in self._pre_cfg["mean"])
        self._std = tuple(float(x) for x in self._pre_cfg["std"])

    @property
    def random_weights(self) -> bool:
        return self.config["pretrained"] is False

    def _build(self) -> tuple[nn.Module, str, list[Any], dict[str, Any]]:
        import open_clip

        c = self.config
        if c.get("model_config"):
            path = Path(c["model_config"]).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"{self.name}: model_config {path} does not exist")
            open_clip.add_model_config(path)
        if c["model"] not in open_clip.list_models():
            raise ValueError(f"{self.name}: unknown open_clip model {c['model']!r} (see open_clip.list_models())")
        weights, kwargs = c["pretrained"], {}
        if weights is False:
            file, source = None, RANDOM_SOURCE
        elif Path(str(weights)).expanduser().is_file() or "/" in str(weights) or str(weights).endswith(
                (".pt", ".pth", ".bin", ".safetensors")):
            file = Path(str(weights)).expanduser()
            if not file.is_file():
                raise FileNotFoundError(f"{self.name}: weights file {file} does not exist (config key `pretrained`)")
            self.weights_sha256 = _file_sha256(str(file))
            source = f"open_clip {c['model']} from local file {file.resolve()}"
            if c["tag"]:
                kwargs = _tag_kwargs(open_clip_hub_file(c["model"], c["tag"])[1])
        else:
            hub, tag_cfg = open_clip_hub_file(c["model"], str(weights))
            file = resolve(hub, f"open_clip {c['model']} {weights}")
            source = f"open_clip {c['model']} {weights} ({hub.describe()}; loaded from {file})"
            kwargs = _tag_kwargs(tag_cfg)
        with _no_random_init_warning(file is not None):  # the file's weights are loaded just below
            net, _, val = open_clip.create_model_and_transforms(c["model"], pretrained=None, device="cpu", **kwargs)
        if file is not None:
            source += load_clip_file(open_clip, net, file, c["model"])
        pre_cfg = dict(net.visual.preprocess_cfg)
        steps = [s for s in getattr(val, "transforms", [val])
                 if type(s).__name__ not in _SKIP_STEPS and getattr(s, "__name__", "") not in _SKIP_STEPS]
        tokens = self._prompt_tokens(open_clip) if c["output"] == "zeroshot" else None
        head = _Head(net, tokens, len(c["class_names"]) if tokens is not None else 0)
        return head.eval().requires_grad_(False).to(memory_format=torch.channels_last), source, steps, pre_cfg

    def _prompt_tokens(self, open_clip: Any) -> torch.Tensor:
        c = self.config
        texts = [p for row in prompts_for(c["class_names"], c["templates"], c["class_words"]) for p in row]
        return open_clip.get_tokenizer(c["model"])(texts)  # [C*K, context_length], class-major

    @property
    def class_names(self) -> list[str] | None:
        return self.config.get("class_names")

    @property
    def dim(self) -> int:
        return len(self.class_names or []) if self.config["output"] == "zeroshot" else self.model.embed_dim

    @property
    def schema(self) -> list[str]:
        if self.config["output"] == "zeroshot":
            return [f"p_{c}" for c in self.class_names or []]
        return [f"{self.config['model']}_{i}" for i in range(self.dim)]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "weights_source": self.weights_source, "random_weights": self.random_weights,
            **({"weights_sha256": self.weights_sha256} if self.weights_sha256 else {}),
            "data_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self._pre_cfg.items()},
            "preprocessing": (f"open_clip eval transform of {self.config['model']}: "
                              f"{' -> '.join(repr(s) for s in self._geometry)} on the RGB frame as a PIL image "
                              "(what the crop drops skipped between Pillow's two resize passes), scaled to [0,1], "
                              f"normalised with mean {self._mean} / std {self._std}")}
        if self.config["output"] == "zeroshot":
            c = self.config
            out["class_names"] = list(c["class_names"])
            out["prompts"] = prompts_for(c["class_names"], c["templates"], c["class_words"])
            out["zeroshot"] = ("per-frame softmax over classes of logit_scale * cosine(image, class text embedding); "
                               f"logit_scale {float(self.model.logit_scale):.2f}; text embeddings averaged over "
                               "templates (CLIP prompt ensembling)")
        return out

    def preprocess(self, frames: FrameSource) -> torch.Tensor:
        return apply_geometry(frames, self._geometry)

    def forward(self, pre: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        fn = self.model.zeroshot if self.config["output"] == "zeroshot" else self.model.embed
        feats = run_batched(fn, self.model.logit_scale.device, pre, self._mean, self._std,
                            self.config["precision"] == "bf16", self.batch_frames)
        return feats, np.ones(len(feats), dtype=bool)


class _Head(nn.Module):
    """The image tower, plus (zero-shot) the class text embeddings computed once; the text tower is then dropped."""

    def __init__(self, clip: nn.Module, tokens: torch.Tensor | None, num_classes: int) -> None:
        super().__init__()
        self.visual = clip.visual
        self.embed_dim = int(clip.text_projection.shape[1]) if hasattr(clip, "text_projection") and \
            clip.text_projection is not None else int(clip.visual.output_dim)
        self.register_buffer("logit_scale", clip.logit_scale.detach().exp().float().clone())
        text = torch.zeros(0, self.embed_dim)
        if tokens is not None:
            clip.eval()
            with torch.inference_mode():
                emb = nn.functional.normalize(clip.encode_text(tokens).float(), dim=-1)  # [C*K, E]
            per_class = emb.view(num_classes, -1, emb.shape[-1]).mean(dim=1)  # class-major [C, K, E] -> [C, E]
            text = nn.functional.normalize(per_class, dim=-1)
        self.register_buffer("text", text.clone())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)

    def zeroshot(self, x: torch.Tensor) -> torch.Tensor:
        img = self.visual(x).float()
        with torch.autocast(x.device.type, enabled=False):  # similarities and softmax in fp32: rows sum to 1
            img = nn.functional.normalize(img, dim=-1)
            return torch.softmax(self.logit_scale * img @ self.text.T, dim=-1)


def load_clip_file(open_clip: Any, net: nn.Module, file: Path, model: str) -> str:
    """Load ``file`` into the open_clip model ``net``, every tensor verified; returns a note for ``weights_source``.

    A file in open_clip's layout must fit exactly (loaded directly); under one wrapper prefix (``module.`` from
    open_clip's own DDP training) only when it then fits exactly (:mod:`extractors.weight_check`). Anything else
    goes through ``open_clip.load_checkpoint(strict=True)``, which converts third-party layouts and resizes position
    embeddings and refuses any missing, unexpected or mis-shaped tensor. Raises
    :class:`~extractors.weight_check.WeightsFileError` naming the file (cut short, or not fitting: the first keys).
    """
    what = f"open_clip model {model}"
    match = match_state_dict(net.state_dict(), read_state_dict(file))
    if match.exact:
        load_matched(net, match, file, what)
        return match.note()
    if match.prefix is not None:
        raise match.error(file, what)
    try:
        open_clip.load_checkpoint(net, str(file), strict=True)
    except (RuntimeError, KeyError, ValueError, IndexError, AssertionError) as err:
        raise match.error(file, what, cause=err) from err
    return "; converted by open_clip.load_checkpoint and loaded strictly"


@contextlib.contextmanager
def _no_random_init_warning(active: bool) -> Iterator[None]:
    """Drop open_clip's "No pretrained weights loaded ... initialized randomly" (root logger) while a model is
    built to receive a file's weights right after; every other record passes."""
    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")

    root = logging.getLogger()
    if active:
        root.addFilter(keep)
    try:
        yield
    finally:
        if active:
            root.removeFilter(keep)


def _tag_kwargs(tag_cfg: dict[str, Any]) -> dict[str, Any]:
    """The tag's preprocessing and activation, applied when its file is loaded by path (open_clip only warns on a
    QuickGELU mismatch when loading by tag; a wrong activation silently changes every feature)."""
    keys = ("mean", "std", "interpolation", "resize_mode", "size")
    pre = {k: tag_cfg[k] for k in keys if k in tag_cfg}
    return {"force_preprocess_cfg": pre or None, "force_quick_gelu": bool(tag_cfg.get("quick_gelu", False))}


register_extractor("clip", output="embedding")(ClipFrames)


@register_extractor("clip_zeroshot", output="zeroshot")
class ClipZeroShotFrames(ClipFrames):
    """Per-frame zero-shot class probabilities (see :class:`ClipFrames`); needs the source's class names."""

    needs_class_names: ClassVar[bool] = True
