"""Labeled multi-frame clips made from the shared real face photos: each photo filmed by a moving camera.

No labeled face *video* is on this machine, and the shared videos carry no emotion labels, so the probe check of
issue 28 (``bench_probe.py``) builds its multi-frame clips from the shared labeled photos
(``../shared/data/faces-static``, person names from the file names). Each selected photo becomes a real H.264 video
of ``frames`` frames at 25 fps in which

- the camera drifts smoothly: a random affine path from the identity to an end pose (shift up to ``shift`` of the
  image side on each axis, scale in ``[1 - zoom, 1 + zoom]``, rotation up to ``rotate`` degrees), eased in and out;
- exposure drifts: gain from 1 to ``1 +- gain`` over the clip, plus a little sensor noise (sigma ``noise`` grey
  levels, fresh per frame);
- the codec compresses it (libx264, crf 23, one thread, so the same seed gives the same pixels).

Those clips then go through the real pipeline: ``preprocess`` (detect, track and crop the face in every frame),
``extract`` and ``fit``. What varies from frame to frame is what a camera adds to a still face (pose, scale, light,
noise, codec, a face box found again each frame); the expression itself does not change within a clip, so these
clips test how a probe and a model cope with frame-level variation around a clip-level label, not facial dynamics.

Selection: the classes named (default the 6 with at least 100 photos), up to ``per_class`` photos each, picked
deterministically (sorted by file name, evenly spaced). ``labels.csv`` (``video,label,subject``) is what
``preprocess --labels`` reads.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import photo_subject

CLASSES = ("anger", "disgust", "happiness", "neutral", "sadness", "surprise")


@dataclass(frozen=True)
class Motion:
    """The camera's end pose and exposure drift (start: identity), see the module docstring."""

    shift: float = 0.05
    zoom: float = 0.08
    rotate: float = 5.0
    gain: float = 0.12
    noise: float = 2.0


def select_photos(photos: Path, legend: Path, classes: tuple[str, ...] = CLASSES,
                  per_class: int = 110) -> list[tuple[str, str, str]]:
    """``(image file name, label, subject)`` of up to ``per_class`` photos per class (sorted, evenly spaced)."""
    by_class: dict[str, list[str]] = {c: [] for c in classes}
    with open(legend, newline="") as f:
        for row in csv.DictReader(f):
            label = row["emotion"].strip().lower()
            if label in by_class and (photos / row["image"]).is_file():
                by_class[label].append(row["image"])
    out = []
    for label, names in by_class.items():
        names = sorted(set(names))
        if len(names) > per_class:
            names = [names[int(i)] for i in np.linspace(0, len(names) - 1, per_class).round()]
        for name in names:
            out.append((name, label, photo_subject(name)))
    return out


def _smooth(t: float) -> float:
    return 0.5 - 0.5 * math.cos(math.pi * t)  # ease in and out, 0 -> 1


def film(rgb: np.ndarray, path: Path, frames: int = 24, fps: int = 25, motion: Motion = Motion(),
         seed: int = 0) -> Path:
    """Write ``rgb`` (``uint8 [H, W, 3]``) as an H.264 mp4 filmed by a drifting camera (module docstring)."""
    import av
    import cv2

    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    base = np.ascontiguousarray(rgb[:h, :w])
    rng = np.random.default_rng(seed)
    dx, dy = rng.uniform(-motion.shift, motion.shift, 2) * (w, h)
    zoom = rng.uniform(-motion.zoom, motion.zoom)
    angle = rng.uniform(-motion.rotate, motion.rotate)
    gain = rng.uniform(-motion.gain, motion.gain)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast", "x264-params": "threads=1:sync-lookahead=0:rc-lookahead=0"}
        for i in range(frames):
            s = _smooth(i / max(1, frames - 1))
            m = cv2.getRotationMatrix2D((w / 2, h / 2), angle * s, 1.0 + zoom * s)
            m[:, 2] += (dx * s, dy * s)
            img = cv2.warpAffine(base, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
            img = img.astype(np.float32) * (1.0 + gain * s) + rng.normal(0.0, motion.noise, img.shape)
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def build(photos: Path, legend: Path, out: Path, frames: int = 24, per_class: int = 110,
          classes: tuple[str, ...] = CLASSES, log=print) -> Path:
    """Film every selected photo into ``out/videos/<stem>.mp4`` (skipping those already there) and write
    ``out/labels.csv``; returns that labels file."""
    import cv2

    chosen = select_photos(photos, legend, classes, per_class)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    labels = out / "labels.csv"
    made = 0
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "label", "subject"])
        for k, (name, label, subject) in enumerate(chosen):
            video = out / "videos" / f"{Path(name).stem}.mp4"
            if not video.is_file():
                bgr = cv2.imread(str(photos / name), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise ValueError(f"cannot read photo {photos / name}")
                tmp = video.with_suffix(".part.mp4")
                film(np.ascontiguousarray(bgr[:, :, ::-1]), tmp, frames=frames, seed=k)
                tmp.rename(video)
                made += 1
            w.writerow([video.name, label, subject])
    log(f"moving photos: {len(chosen)} clips of {frames} frames in {out / 'videos'} ({made} written now)")
    return labels
