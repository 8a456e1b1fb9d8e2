"""Body-pose keypoints: MediaPipe Pose (33 points, default) or openpifpaf (COCO-17, optional install)."""

from __future__ import annotations

from typing import Any

import numpy as np

from extractors.base import Extractor, FrameSource
from extractors.registry import register_extractor

MEDIAPIPE_POINTS = 33


@register_extractor("pose")
class Pose(Extractor):
    """Body keypoints per frame, x and y normalised to the frame (0..1).

    ``backend="mediapipe"``: 33 landmarks x (x, y, z, visibility), ``model_complexity`` 1 (the only one whose model
    ships in the MediaPipe wheel, so it works offline). ``backend="openpifpaf"``: COCO-17 x (x, y, confidence) from a
    local ``checkpoint`` (install with ``make install-openpifpaf``). Frames with no body are ``valid=False``.

    ``static_image_mode`` (MediaPipe, default true: detect the body on every frame instead of tracking it from the
    previous frame). Measured on the shared videos over capped frames (benchmarks/bench_mediapipe_modes.py),
    tracking keeps "finding" a body where there is none: on no_face.mp4 (sky and a logo, no person) it marks 37 of
    64 capped frames valid, detection 9; on face_noface.mov (a person, then a cartoon sky) 42 of 64, detection 29,
    while the face mesh finds the person on 27. Detection costs up to 3x the time on long uncapped clips (133 vs
    42 s for 472 frames), 1.6x at cap 64. Recorded in the config, so in the store hash.
    """

    version = "1"
    runs_in_workers = True

    def __init__(self, backend: str = "mediapipe", model_complexity: int = 1, min_detection_confidence: float = 0.5,
                 checkpoint: str | None = None, static_image_mode: bool = True) -> None:
        if backend not in {"mediapipe", "openpifpaf"}:
            raise ValueError(f"pose: backend must be 'mediapipe' or 'openpifpaf', got {backend!r}")
        if backend == "mediapipe" and model_complexity != 1:
            raise ValueError("pose: model_complexity must be 1 offline (0 and 2 download their model at run time)")
        if backend == "mediapipe" and not 0.0 <= float(min_detection_confidence) <= 1.0:
            raise ValueError(f"pose: min_detection_confidence must be in [0, 1], got {min_detection_confidence}")
        cfg: dict[str, Any] = {"backend": backend}
        if backend == "mediapipe":
            cfg.update(model_complexity=model_complexity, min_detection_confidence=float(min_detection_confidence),
                       static_image_mode=bool(static_image_mode))
        else:
            cfg.update(checkpoint=checkpoint)
        super().__init__(**cfg)
        self._pifpaf = None
        if backend == "openpifpaf":  # fail at construction, with the instructions, not inside a worker
            from extractors.pose_openpifpaf import OpenPifPafBackend

            self._pifpaf = OpenPifPafBackend(checkpoint=checkpoint or "")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pifpaf": None}  # rebuilt lazily in each worker process

    @property
    def _points(self) -> tuple[int, str]:
        return (MEDIAPIPE_POINTS, "xyzv") if self.config["backend"] == "mediapipe" else (17, "xyc")

    @property
    def dim(self) -> int:
        n, cols = self._points
        return n * len(cols)

    @property
    def schema(self) -> list[str]:
        n, cols = self._points
        return [f"kp{i}_{c}" for i in range(n) for c in cols]

    def describe(self) -> dict[str, Any]:
        if self.config["backend"] == "mediapipe":
            from extractors._mediapipe import mediapipe

            return {"weights_source": f"MediaPipe {mediapipe.__version__} pose, model_complexity=1 (in the wheel)"}
        return {"weights_source": f"openpifpaf checkpoint {self.config['checkpoint']}"}

    def forward(self, frames: FrameSource) -> tuple[np.ndarray, np.ndarray]:
        if self.config["backend"] == "openpifpaf":
            if self._pifpaf is None:
                from extractors.pose_openpifpaf import OpenPifPafBackend

                self._pifpaf = OpenPifPafBackend(checkpoint=self.config["checkpoint"])
            frames = frames if isinstance(frames, np.ndarray) else np.stack(list(frames))
            kp, valid = self._pifpaf(frames)
            return kp.reshape(len(frames), -1), valid
        from extractors._mediapipe import mediapipe as mp

        feats: list[np.ndarray] = []
        valid: list[bool] = []
        empty = np.zeros(self.dim, np.float32)
        with mp.solutions.pose.Pose(static_image_mode=self.config["static_image_mode"], model_complexity=1,
                                    enable_segmentation=False,
                                    min_detection_confidence=self.config["min_detection_confidence"]) as pose:
            for frame in frames:  # one at a time: a decoder stream never holds the whole clip
                res = pose.process(np.ascontiguousarray(frame))
                found = res.pose_landmarks is not None
                feats.append(np.array([(p.x, p.y, p.z, p.visibility) for p in res.pose_landmarks.landmark],
                                      np.float32).reshape(-1) if found else empty)
                valid.append(found)
        return np.array(feats, np.float32).reshape(len(valid), self.dim), np.array(valid, bool)
