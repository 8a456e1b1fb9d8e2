"""Optional openpifpaf pose backend (COCO-17 body keypoints), loaded from a LOCAL checkpoint.

openpifpaf is not a regular dependency: it needs a patched source build against current torch
(``make install-openpifpaf``), so it is imported lazily in ``OpenPifPafBackend.__init__`` and importing
this module never imports it. Its pretrained checkpoints download from GitHub at run time, which fails
offline, so a local checkpoint path is mandatory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

COCO17_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

_INSTALL_HINT = (
    'openpifpaf is not installed: run "make install-openpifpaf" (a patched source build against current torch; '
    "see docs/troubleshooting.md)"
)


def _missing_checkpoint(checkpoint: str | None) -> FileNotFoundError:
    return FileNotFoundError(
        f"openpifpaf checkpoint not found: {checkpoint!r}. openpifpaf checkpoints download from GitHub at run "
        "time, which cannot work on an offline machine: download one (e.g. shufflenetv2k16 from "
        "https://github.com/openpifpaf/openpifpaf/releases) on a machine with internet and pass its local "
        "path as `checkpoint`."
    )


def best_pose(annotations: list[Any], width: int, height: int) -> tuple[np.ndarray, bool]:
    """Highest-scoring annotation as float32 [17, 3] (x/width, y/height clipped to [0, 1], confidence).

    Why clip: openpifpaf may place keypoints slightly outside the frame; consumers expect [0, 1].
    Keypoints with zero confidence are all-zero (openpifpaf leaves undetected points at 0 before its
    inverse transform shifts them). Returns (zeros, False) when there is no annotation.
    """
    out = np.zeros((len(COCO17_KEYPOINTS), 3), dtype=np.float32)
    if not annotations:
        return out, False
    best = max(annotations, key=lambda ann: float(ann.score))  # first one wins ties: deterministic
    data = np.asarray(best.data, dtype=np.float32)
    conf = np.nan_to_num(data[:, 2], nan=0.0).clip(0.0, 1.0)
    out[:, 0] = np.nan_to_num(data[:, 0] / width, nan=0.0).clip(0.0, 1.0)
    out[:, 1] = np.nan_to_num(data[:, 1] / height, nan=0.0).clip(0.0, 1.0)
    out[:, 2] = conf
    out[conf <= 0.0] = 0.0
    return out, True


class OpenPifPafBackend:
    """COCO-17 body keypoints from openpifpaf, read from a local checkpoint."""

    num_keypoints = 17
    keypoint_names: tuple[str, ...] = COCO17_KEYPOINTS

    def __init__(self, checkpoint: str, device: str = "cpu", long_edge: int | None = None) -> None:
        """Load ``checkpoint`` via ``openpifpaf.Predictor``; ``long_edge`` rescales frames first (None: as is)."""
        if not checkpoint or not Path(checkpoint).is_file():
            raise _missing_checkpoint(checkpoint)
        try:
            import openpifpaf  # lazy: optional, heavy (torch, torchvision, matplotlib.pyplot, cv2, plugins)
        except (ImportError, OSError, AttributeError) as exc:  # OSError: _cpp.so built against another torch
            raise ImportError(f"{_INSTALL_HINT}. Import failed with {type(exc).__name__}: {exc}") from exc
        import torch

        self._torch = torch
        # openpifpaf configures through CLASS attributes; a private subclass keeps our device/long_edge local.
        # loader_workers=0: no DataLoader worker processes (openpifpaf would start one for >1 image).
        predictor_cls = type(
            "_FerZooPredictor",
            (openpifpaf.Predictor,),
            {"device": torch.device(device), "long_edge": long_edge, "batch_size": 1, "loader_workers": 0},
        )
        factory_cls = openpifpaf.network.Factory
        saved_checkpoint = factory_cls.checkpoint  # Predictor(checkpoint=...) overwrites this class attribute
        try:
            # SECURITY: openpifpaf checkpoints are pickled whole nn.Modules, so loading necessarily unpickles
            # (the patched build calls torch.load(weights_only=False)). Only load checkpoints you trust.
            self._predictor = predictor_cls(checkpoint=str(checkpoint))
        finally:
            factory_cls.checkpoint = saved_checkpoint
        torch.ops.openpifpaf.set_quiet(True)  # silence the C++ decoder's "UserInfo: resizing buffer" prints

        names = tuple(self._predictor.model_cpu.head_metas[0].keypoints)
        if names != COCO17_KEYPOINTS:
            raise ValueError(f"openpifpaf checkpoint {checkpoint!r} is not a COCO-17 keypoint model: {names}")
        self.checkpoint = str(checkpoint)

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames: uint8 RGB [T, H, W, 3]. Returns (keypoints float32 [T, 17, 3] with x, y normalised to
        [0, 1] by the frame width/height and the third column the keypoint confidence, valid bool [T]).
        A frame with no person is all-zero with valid False. When several people are found, take the
        one with the highest score."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 RGB [T, H, W, 3], got {frames.dtype} {frames.shape}")
        num, height, width = frames.shape[:3]
        keypoints = np.zeros((num, self.num_keypoints, 3), dtype=np.float32)
        valid = np.zeros(num, dtype=bool)
        with self._torch.inference_mode():
            for i, (preds, _, _) in enumerate(self._predictor.numpy_images(list(frames))):
                keypoints[i], valid[i] = best_pose(preds, width, height)
        return keypoints, valid
