"""Encoder files: a fine-tuned frame encoder as ``<name>.safetensors`` plus ``<name>.json`` beside it.

``python -m fer_zoo finetune-frames`` writes them; frame extractors load them with ``weights: path/to/x.safetensors``.
The safetensors file holds the network's tensors under the architecture's own key names (torchvision's, or timm's
for timm backbones) with the classification head under ``head.weight``/``head.bias``. The JSON says how to use it::

    {"format": "fer_zoo.encoder/1", "architecture": "mobilenet_v2", "library": "torchvision",
     "input_size": 224, "normalisation": {"scale": "x / 255", "mean": [...], "std": [...]},
     "embedding_dim": 1280, "classes": ["anger", ...], "fingerprint": {"data": "...", "config": "..."},
     "safetensors_sha256": "...", ...}

The JSON records the sha256 of the safetensors file, so a file that was truncated, replaced or paired with another
model's JSON is refused with an error naming both files, never loaded half-right. Extractors put that sha256 in their
config hash and the JSON in the store's meta: a changed encoder builds a new store.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from extractors.weight_check import WeightsFileError

FORMAT = "fer_zoo.encoder/1"
REQUIRED = ("format", "architecture", "input_size", "normalisation", "embedding_dim", "classes", "fingerprint",
            "safetensors_sha256")
HEAD_KEYS = ("head.weight", "head.bias")


class EncoderFileError(WeightsFileError):
    """An encoder file (or its JSON) is missing, truncated, mismatched or not an encoder file (a ``ValueError``)."""


@dataclass(frozen=True)
class EncoderFile:
    """A loaded encoder file: ``state_dict`` (body tensors), ``head`` (``weight [C, D]``, ``bias [C]``) and ``meta``."""

    path: Path
    meta: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return str(self.meta["safetensors_sha256"])

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def source(self) -> str:
        fp = self.meta.get("fingerprint", {})
        return (f"fer_zoo encoder file {self.path.resolve()} ({self.meta['architecture']}, fine-tuned on "
                f"{fp.get('train_images', '?')} photos, data {fp.get('data', '?')}, config {fp.get('config', '?')}; "
                f"sha256 {self.sha256[:12]})")


def is_encoder_file(weights: str | None) -> bool:
    return bool(weights) and str(weights).endswith(".safetensors")


def json_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_encoder(path: str | Path, state_dict: dict[str, torch.Tensor], head: dict[str, torch.Tensor],
                 meta: dict[str, Any]) -> Path:
    """Write ``path`` (``.safetensors``) and its JSON atomically (temp file + rename); return ``path``.

    ``meta`` must hold every key of :data:`REQUIRED` except ``format`` and ``safetensors_sha256``, which are added.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"an encoder file must end in .safetensors, got {path}")
    missing = [k for k in REQUIRED if k not in meta and k not in ("format", "safetensors_sha256")]
    if missing:
        raise ValueError(f"encoder meta lacks {missing}")
    if set(head) != set(HEAD_KEYS):
        raise ValueError(f"head must hold exactly {HEAD_KEYS}, got {sorted(head)}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in {**state_dict, **head}.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "architecture": str(meta["architecture"])})
    full = {"format": FORMAT, **meta, "safetensors_sha256": file_sha256(tmp)}
    tmp_json = path.with_name(f".{path.stem}.json.tmp")
    tmp_json.write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    tmp_json.replace(json_path(path))
    return path


def load_encoder(path: str | Path, architecture: str | None = None) -> EncoderFile:
    """Read and verify an encoder file; ``architecture`` (when given) must be the one it was trained as.

    Raises ``FileNotFoundError`` (file or JSON absent) or :class:`EncoderFileError` (unreadable JSON, missing keys,
    sha256 mismatch: truncated or replaced, not a safetensors file, wrong architecture), naming the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    side = json_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder file {path} does not exist")
    if not side.is_file():
        raise FileNotFoundError(f"encoder file {path} has no {side.name} beside it (architecture, input size, "
                                "normalisation, classes): copy both files written by finetune-frames")
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EncoderFileError(f"{side}: not valid JSON ({err})") from err
    missing = [k for k in REQUIRED if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise EncoderFileError(f"{side}: not a fer_zoo encoder JSON (lacks {missing})")
    if meta["format"] != FORMAT:
        raise EncoderFileError(f"{side}: format {meta['format']!r}, this fer_zoo reads {FORMAT!r}")
    sha = file_sha256(path)
    if sha != meta["safetensors_sha256"]:
        raise EncoderFileError(
            f"{path}: sha256 {sha[:12]}... does not match {side.name} ({str(meta['safetensors_sha256'])[:12]}...): "
            "the file is truncated, damaged or from another run; copy both files of one finetune-frames run")
    if architecture is not None and meta["architecture"] != architecture:
        raise EncoderFileError(f"{path}: an encoder for {meta['architecture']!r}, not {architecture!r}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise EncoderFileError(f"{path}: not a readable safetensors file ({err})") from err
    head = {k: tensors.pop(k) for k in HEAD_KEYS if k in tensors}
    if len(head) != len(HEAD_KEYS) or head["head.weight"].shape[0] != len(meta["classes"]):
        raise EncoderFileError(f"{path}: head tensors {sorted(head)} do not match the {len(meta['classes'])} classes "
                               "of its JSON")
    return EncoderFile(path=path, meta=meta, state_dict=tensors, head=head)
