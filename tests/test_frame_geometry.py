"""The frame geometry of the timm and CLIP extractors against the libraries' own eval pipelines on PIL images.

The fused ``Resize -> CenterCrop`` (the crop's columns dropped between Pillow's two passes) must give the pixels of
the steps run one by one on PIL images, bit for bit. Frames the pair does not fuse for (a crop larger than the resized
frame: torchvision pads) run the steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from datamodules.frames import read_frames
from extractors.frame_geometry import apply_geometry, fuse, pass_order

BICUBIC, BILINEAR = T.InterpolationMode.BICUBIC, T.InterpolationMode.BILINEAR


@pytest.fixture(scope="module")
def video_frames(face_videos: Path) -> np.ndarray:
    return read_frames(face_videos / "single_face.mp4", max_frames=4).rgb  # 640x360 H.264, real faces


def reference(frames: np.ndarray, steps: list) -> torch.Tensor:
    """The library route: every step on a PIL image, then the pixels as uint8 [T, 3, h, w]."""
    out = []
    for f in frames:
        img = Image.fromarray(f)
        for step in steps:
            img = step(img)
        out.append(torch.from_numpy(np.array(img)).permute(2, 0, 1))
    return torch.stack(out)


def assert_equal_to_reference(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.dtype == torch.uint8 and ours.shape == ref.shape
    d = (ours.int() - ref.int()).abs()
    assert int(d.max()) == 0, f"{int((d > 0).sum())} values differ (by up to {int(d.max())}) from the PIL pipeline"


TIMM_LIKE = [  # (short side, crop) of timm's data configs: convnext_tiny 0.95, vit 0.9, efficientnet 0.875, CLIP 1.0
    [T.Resize(235, interpolation=BICUBIC), T.CenterCrop(224)],
    [T.Resize(248, interpolation=BICUBIC), T.CenterCrop(224)],
    [T.Resize(256, interpolation=BILINEAR), T.CenterCrop(224)],
    [T.Resize(224, interpolation=BICUBIC), T.CenterCrop(224)],
    [T.Resize((224, 224), interpolation=BICUBIC), T.CenterCrop(224)],  # timm crop_mode "squash"
]


@pytest.mark.parametrize("steps", TIMM_LIKE, ids=lambda s: f"{s[0].size}-{s[0].interpolation.value}")
@pytest.mark.parametrize("shape", ["video", "portrait", "odd", "square_at_size", "tiny"])
def test_fused_resize_crop_matches_the_pil_pipeline(steps: list, shape: str, video_frames: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    frames = {"video": video_frames, "portrait": np.ascontiguousarray(video_frames.transpose(0, 2, 1, 3)),
              "odd": rng.integers(0, 256, (2, 301, 517, 3), dtype=np.uint8),
              "square_at_size": rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8),
              "tiny": rng.integers(0, 256, (2, 100, 90, 3), dtype=np.uint8)}[shape]
    assert fuse(steps) is not None
    assert_equal_to_reference(apply_geometry(frames, steps), reference(frames, steps))


def test_crop_larger_than_the_frame_runs_the_steps_and_pads() -> None:
    """torchvision pads a crop larger than the resized frame; the fused route declines and the steps run."""
    steps = [T.Resize((100, 150), interpolation=BICUBIC), T.CenterCrop(224)]
    frames = np.random.default_rng(1).integers(0, 256, (2, 90, 160, 3), dtype=np.uint8)
    ours = apply_geometry(frames, steps)
    assert torch.equal(ours, reference(frames, steps))
    assert ours.shape == (2, 3, 224, 224) and int(ours[:, :, :10].max()) == 0  # the padding


def test_unfused_steps_run_on_pil_images_exactly() -> None:
    steps = [T.Resize(64, interpolation=BICUBIC, max_size=80), T.CenterCrop(48)]  # max_size: not fused
    assert fuse(steps) is None
    frames = np.random.default_rng(2).integers(0, 256, (3, 120, 200, 3), dtype=np.uint8)
    assert torch.equal(apply_geometry(frames, steps), reference(frames, steps))


def test_output_is_channels_last_and_keeps_frame_order(video_frames: np.ndarray) -> None:
    steps = TIMM_LIKE[0]
    ours = apply_geometry(iter(video_frames), steps)  # a stream, consumed once
    assert ours.is_contiguous(memory_format=torch.channels_last)
    for i, f in enumerate(video_frames):
        assert torch.equal(ours[i], apply_geometry([f], steps)[0])


def test_no_frames_is_an_error() -> None:
    with pytest.raises(ValueError, match="no frames"):
        apply_geometry([], TIMM_LIKE[0])


@pytest.mark.parametrize("sizes", [(640, 360, 418, 235), (360, 640, 224, 224), (517, 301, 224, 224)])
def test_the_pinned_pillow_has_a_known_pass_order(sizes: tuple[int, int, int, int]) -> None:
    """The fused route is live (not always falling back): Pillow's pass order is found for these sizes."""
    for _ in range(2):  # the first sighting of a size only counts it
        order = pass_order(*sizes, Image.Resampling.BICUBIC)
    assert order in {"hv", "vh"}
