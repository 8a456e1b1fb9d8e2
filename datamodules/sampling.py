"""TSN-style temporal sampling: a fixed number of frames spread over the whole clip.

Why TSN (Temporal Segment Networks): an expression unfolds over the whole clip (onset, apex, offset), and clips vary
from a few frames to hundreds. Splitting the clip into ``num_frames`` equal segments and taking one frame from each
covers the whole clip at a fixed cost per clip, whatever its length. Training takes a random frame per segment (a
cheap temporal augmentation: another epoch sees other frames of the same clip); evaluation takes each segment's
middle frame, so a score never depends on a random draw.

Clips shorter than ``num_frames`` (a photo is a 1-frame clip) are either **stretched** (the default): every slot
is valid and shows the frame under it when the clip's frames are spread evenly over the slots, so a photo becomes a
still video of ``num_frames`` identical frames, which is what the model meets at inference on a video window; or
**padded**: the clip's frames once, then masked repeats of the last one. Padding leaves a model trained only on
photos with one valid token per clip: it never sees time positions 1.. nor attention over several frames, and its
output on a 16-frame window is undefined (issue 16; measured in ``benchmarks/bench_still_video.py``).
"""

from __future__ import annotations

import numpy as np

SHORT_CLIPS = ("stretch", "pad")


def segment_indices(
    length: int, num_frames: int, train: bool, rng: np.random.Generator | None = None, short_clips: str = "stretch"
) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices ``int64 [num_frames]`` into a clip of ``length`` frames, and ``pad bool [num_frames]``.

    - ``length >= num_frames``: segment ``k`` is ``[k*length//num_frames, (k+1)*length//num_frames)`` (never empty);
      training draws one frame uniformly inside it (needs ``rng``), evaluation takes its middle frame.
    - ``0 < length < num_frames`` with ``short_clips="stretch"``: slot ``k`` covers the time span
      ``[k, k+1) * length / num_frames`` of the clip and shows the frame under a point of it (training: a uniform
      draw, evaluation: the span's middle), so every frame fills about ``num_frames / length`` consecutive slots,
      in order, and no slot is padded. A 1-frame clip gives ``num_frames`` copies of its frame.
    - ``0 < length < num_frames`` with ``short_clips="pad"``: every frame once, in order, then the last frame
      repeated; the repeats have ``pad=True`` so the model masks them.
    - ``length == 0`` (a failed or empty clip): indices 0 and every slot padded; the caller must not index with them.

    Training draws ``rng.random(num_frames)`` exactly once per call (one uniform offset per segment), so two clips
    of different lengths sampled from generators in the same state get the same *relative* positions: this keeps
    modalities stored at different lengths aligned in time.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if train and rng is None:
        raise ValueError("training sampling draws random frames: pass a seeded np.random.Generator as `rng`")
    if short_clips not in SHORT_CLIPS:
        raise ValueError(f"short_clips={short_clips!r} is not one of {list(SHORT_CLIPS)}")
    pad = np.zeros(num_frames, dtype=np.bool_)
    if length == 0:
        return np.zeros(num_frames, dtype=np.int64), ~pad
    if length < num_frames and short_clips == "stretch":
        u = rng.random(num_frames) if train else np.full(num_frames, 0.5)  # type: ignore[union-attr]
        pos = (np.arange(num_frames) + u) * length / num_frames  # strictly inside slot k's span: in order
        return np.minimum(np.floor(pos).astype(np.int64), length - 1), pad
    if length < num_frames:
        idx = np.minimum(np.arange(num_frames, dtype=np.int64), length - 1)
        pad[length:] = True
        return idx, pad
    k = np.arange(num_frames, dtype=np.int64)
    start = k * length // num_frames
    size = (k + 1) * length // num_frames - start  # >= 1 because length >= num_frames
    if train:
        offset = np.floor(rng.random(num_frames) * size).astype(np.int64)  # type: ignore[union-attr]
        offset = np.minimum(offset, size - 1)  # guard against a float rounding up to `size`
    else:
        offset = size // 2
    return start + offset, pad
