"""MediaPipe face mesh: 468 (or 478 with iris) 3-D landmarks per frame, normalised to the face box."""

from __future__ import annotations

from typing import Any

import numpy as np

from extractors.base import Extractor, FrameSource
from extractors.registry import register_extractor

# Landmark ids (MediaPipe canonical face mesh) for the derived geometry.
_MOUTH = (13, 14, 78, 308)  # upper lip, lower lip, left corner, right corner
_LEFT_EYE = (159, 145, 33, 133)  # upper lid, lower lid, outer corner, inner corner
_RIGHT_EYE = (386, 374, 263, 362)
_BROWS = (105, 334)  # left / right brow middle
_GEOMETRY = ["box_cx", "box_cy", "box_w", "box_h", "mouth_open", "left_eye_open", "right_eye_open",
             "left_brow_raise", "right_brow_raise"]


@register_extractor("facemesh")
class FaceMesh(Extractor):
    """Face-mesh landmarks, one face per frame (the most prominent).

    Coordinates are normalised to the tight box around the landmarks: x, y in [0, 1] within the box and z divided by
    the box width, so the features describe the expression, not where the face sits in the frame or how big it is.

    Config: ``refine_landmarks`` (478 points with iris when true, else 468), ``geometry`` (append 9 derived values:
    the face box in frame coordinates and mouth/eye opening and brow raise ratios), ``min_detection_confidence``,
    ``min_tracking_confidence``, ``static_image_mode``. Frames with no face are ``valid=False`` with zero features.
    A fresh MediaPipe graph per clip keeps results independent of which clips ran before (deterministic, resumable).

    ``static_image_mode`` (default true): detect the face on every frame instead of tracking it from the previous
    frame's landmarks. A store holds capped frames far apart in time (frame_cap 8 on a 472-frame clip: 67 frames,
    2.8 s between samples), where the tracked region is stale: on WolfgangLanger_Pexels.mp4 the tracked landmarks
    at cap 8/16 lie 8.4/8.2 px (mean) from those of tracking through every frame, detected ones 2.3/2.7 px; at cap
    64 (7 frames apart) tracking is closer (1.7 vs 2.7 px). Both modes find a face on the same frames of every
    shared video at caps 8/16/64; detection costs 1.3-2x the time. It also makes a frame's features independent of
    which other frames were sampled. Measured by benchmarks/bench_mediapipe_modes.py; ``false`` restores tracking
    (for dense, consecutive frames).
    """

    version = "1"
    runs_in_workers = True

    def __init__(self, refine_landmarks: bool = False, geometry: bool = True,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 static_image_mode: bool = True) -> None:
        for key, val in (("min_detection_confidence", min_detection_confidence),
                         ("min_tracking_confidence", min_tracking_confidence)):
            if not 0.0 <= val <= 1.0:
                raise ValueError(f"facemesh: {key} must be in [0, 1], got {val}")
        super().__init__(refine_landmarks=bool(refine_landmarks), geometry=bool(geometry),
                         min_detection_confidence=float(min_detection_confidence),
                         min_tracking_confidence=float(min_tracking_confidence),
                         static_image_mode=bool(static_image_mode))  # in the config: part of the store hash

    @property
    def num_points(self) -> int:
        return 478 if self.config["refine_landmarks"] else 468

    @property
    def dim(self) -> int:
        return self.num_points * 3 + (len(_GEOMETRY) if self.config["geometry"] else 0)

    @property
    def schema(self) -> list[str]:
        cols = [f"p{i}_{a}" for i in range(self.num_points) for a in "xyz"]
        return cols + (_GEOMETRY if self.config["geometry"] else [])

    def describe(self) -> dict[str, Any]:
        from extractors._mediapipe import mediapipe

        return {"weights_source": f"MediaPipe {mediapipe.__version__} face_mesh (bundled in the wheel)"}

    def forward(self, frames: FrameSource) -> tuple[np.ndarray, np.ndarray]:
        from extractors._mediapipe import mediapipe as mp

        feats: list[np.ndarray] = []
        valid: list[bool] = []
        empty = np.zeros(self.dim, np.float32)
        c = self.config
        with mp.solutions.face_mesh.FaceMesh(
            static_image_mode=c["static_image_mode"], max_num_faces=1, refine_landmarks=c["refine_landmarks"],
            min_detection_confidence=c["min_detection_confidence"],
            min_tracking_confidence=c["min_tracking_confidence"],
        ) as mesh:
            for frame in frames:  # one at a time: a decoder stream never holds the whole clip
                res = mesh.process(np.ascontiguousarray(frame))
                found = bool(res.multi_face_landmarks)
                if found:
                    lm = res.multi_face_landmarks[0].landmark
                    pts = np.array([(p.x, p.y, p.z) for p in lm], np.float32)[: self.num_points]
                feats.append(self._features(pts, frame.shape[1], frame.shape[0]) if found else empty)
                valid.append(found)
        return np.array(feats, np.float32).reshape(len(valid), self.dim), np.array(valid, bool)

    def _features(self, pts: np.ndarray, width: int, height: int) -> np.ndarray:
        xy = pts[:, :2] * np.array([width, height], np.float32)  # pixels, so the box keeps the face's aspect
        lo, hi = xy.min(0), xy.max(0)
        size = np.maximum(hi - lo, 1e-6)
        norm = np.concatenate([(xy - lo) / size, pts[:, 2:3] * width / size[0]], axis=1)
        out = [norm.reshape(-1)]
        if self.config["geometry"]:
            n = norm[:, :2]

            def gap(a: int, b: int, c: int, d: int) -> float:  # vertical opening over horizontal width
                return float(np.linalg.norm(n[a] - n[b]) / max(np.linalg.norm(n[c] - n[d]), 1e-6))

            center = (lo + hi) / 2 / np.array([width, height])
            out.append(np.array([
                center[0], center[1], size[0] / width, size[1] / height,
                gap(*_MOUTH), gap(*_LEFT_EYE), gap(*_RIGHT_EYE),
                float(n[_LEFT_EYE[0], 1] - n[_BROWS[0], 1]), float(n[_RIGHT_EYE[0], 1] - n[_BROWS[1], 1]),
            ], np.float32))
        return np.concatenate(out)
