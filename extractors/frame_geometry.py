"""A library's eval resize/crop steps on video frames, exactly as the library runs them, in less time.

timm's ``create_transform`` and open_clip's ``image_transform`` are written for PIL images (their reference
pipeline: ``PIL.Image -> Resize -> CenterCrop -> ToTensor -> Normalize``). The frames run through those steps as PIL
images, so the uint8 pixels are the library's own; the [0,1] scaling and the normalisation run batched on the model's
device (``extractors.timm_frames.run_batched``), with the same arithmetic as ``ToTensor`` and ``Normalize``.

The common eval pair ``Resize(short side) -> CenterCrop`` runs with less work and the same pixels: Pillow resizes in
two separable passes, rounding to uint8 in between, and each output column of a vertical pass (row of a horizontal
one) depends on that column (row) alone. So the columns (or rows) the crop drops are dropped between the passes, in
the order Pillow itself takes for those sizes (it picks one by the sizes: :func:`pass_order`). Asserted bit for bit
in ``tests/test_frame_geometry.py``. For a 640x360 frame and timm's ``crop_pct`` 0.95 the second pass computes 224
instead of 418 columns: 2.3 instead of 3.5 ms per frame on one core (the earlier route, resizing uint8 tensors, took
3.0-3.4 ms and was up to 3 levels off timm's PIL pipeline). A single ``resize(box=...)`` of the kept region would
take 1.6 ms but is not exact (single-precision box, and Pillow may then take the passes in the other order).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

# torchvision's InterpolationMode value -> Pillow filter: the separable filters Pillow resizes in two passes.
_PIL_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                "lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX,
                "hamming": Image.Resampling.HAMMING}


@dataclass(frozen=True)
class ResizeCenterCrop:
    """torchvision ``Resize(size, interpolation)`` then ``CenterCrop(crop)`` on a PIL image, the same pixels with
    less work (what the crop drops is dropped between Pillow's two passes). None (the caller runs the steps) for a
    crop larger than the resized frame (torchvision pads) or while :func:`pass_order` has no answer.

    ``size``: ``[short side]`` or ``[h, w]`` (torchvision's meaning); ``crop``: ``(h, w)``.
    """

    size: tuple[int, ...]
    crop: tuple[int, int]
    resample: Image.Resampling

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """The resized (h, w) torchvision's Resize computes for a ``h`` x ``w`` frame (its own function)."""
        from torchvision.transforms.functional import _compute_resized_output_size

        new_h, new_w = _compute_resized_output_size((h, w), list(self.size), None)
        return new_h, new_w

    def __call__(self, img: Image.Image) -> Image.Image | None:
        w, h = img.size
        new_h, new_w = self.output_size(h, w)
        ch, cw = self.crop
        if ch > new_h or cw > new_w:
            return None
        top, left = int(round((new_h - ch) / 2.0)), int(round((new_w - cw) / 2.0))  # torchvision's center_crop
        if (new_h, new_w) == (h, w):  # torchvision's Resize returns such a frame untouched
            return img.crop((left, top, left + cw, top + ch))
        order = pass_order(w, h, new_w, new_h, self.resample)
        if order is None:
            return None
        if order == "hv":  # horizontal pass over every row, the kept columns, then the vertical pass on those
            img = img.resize((new_w, h), self.resample).crop((left, 0, left + cw, h))
            return img.resize((cw, new_h), self.resample).crop((0, top, cw, top + ch))
        img = img.resize((w, new_h), self.resample).crop((0, top, w, top + ch))
        return img.resize((new_w, ch), self.resample).crop((left, 0, left + cw, ch))


_ORDERS: dict[tuple[int, ...], str | None] = {}
_SEEN: dict[tuple[int, ...], int] = {}


def pass_order(w: int, h: int, new_w: int, new_h: int, resample: int) -> str | None:
    """``"hv"`` or ``"vh"``: the order of the two passes Pillow's ``resize`` takes from ``w`` x ``h`` to ``new_w`` x
    ``new_h`` (it picks one by the sizes), found by resizing a seeded random image both ways; None while a size has
    been seen once (a folder of photos of all sizes would pay the probe per photo) or when neither order reproduces
    Pillow (a future Pillow): the caller then runs the steps as they are."""
    key = (w, h, new_w, new_h, int(resample))
    if key in _ORDERS:
        return _ORDERS[key]
    _SEEN[key] = _SEEN.get(key, 0) + 1
    if _SEEN[key] < 2:
        return None
    if len(_ORDERS) > 4096:
        _ORDERS.clear()
    _SEEN.pop(key)
    probe = Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))
    full = np.asarray(probe.resize((new_w, new_h), resample))
    hv = np.asarray(probe.resize((new_w, h), resample).resize((new_w, new_h), resample))
    vh = np.asarray(probe.resize((w, new_h), resample).resize((new_w, new_h), resample))
    _ORDERS[key] = "hv" if np.array_equal(full, hv) else "vh" if np.array_equal(full, vh) else None
    return _ORDERS[key]


def fuse(geometry: list[Any]) -> ResizeCenterCrop | None:
    """The fused form of ``geometry`` when it is exactly torchvision's ``[Resize, CenterCrop]`` with a filter
    interpolation and no ``max_size``; else None (the steps then run one by one, on PIL images too)."""
    from torchvision import transforms as T

    if len(geometry) != 2 or type(geometry[0]) is not T.Resize or type(geometry[1]) is not T.CenterCrop:
        return None
    resize, crop = geometry
    mode = getattr(resize.interpolation, "value", resize.interpolation)
    if resize.max_size is not None or mode not in _PIL_FILTERS:
        return None
    size = (resize.size,) if isinstance(resize.size, int) else tuple(int(s) for s in resize.size)
    c = tuple(int(s) for s in crop.size)
    return ResizeCenterCrop(size, (c[0], c[-1]), _PIL_FILTERS[mode])


def apply_geometry(frames: Iterable[np.ndarray], geometry: list[Any]) -> torch.Tensor:
    """RGB uint8 ``[H, W, 3]`` frames through a library's resize/crop steps -> uint8 ``[T, 3, s, s]``.

    Frame by frame (a decoder stream never holds the clip at full size), on PIL images (the libraries' reference
    input), the ``[Resize, CenterCrop]`` pair with less work (module docstring). The result is a channels-last view
    (``[T, s, s, 3]`` in memory), the layout the networks run in. Raises ``ValueError`` when the frames differ in
    output size (a crop-free step list on frames of changing size).
    """
    fused = fuse(geometry)
    out: list[np.ndarray] = []
    for f in frames:
        img = Image.fromarray(np.ascontiguousarray(f))  # uint8 [H, W, 3] -> an RGB image
        done = fused(img) if fused is not None else None
        if done is None:
            done = img
            for step in geometry:
                done = step(done)
        out.append(np.asarray(done))
    if not out:
        raise ValueError("apply_geometry: no frames")
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise ValueError(f"apply_geometry: the steps {geometry} gave frames of different sizes {sorted(shapes)}")
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
