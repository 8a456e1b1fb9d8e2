"""Reading clips: the one-frame-at-a-time stream gives exactly what ``read_frames`` gives, in bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from datamodules.frames import FrameCountMismatch, FrameStream, read_frames, stream_frames
from datamodules.records import ClipRecord
from extractors import get_extractor


@pytest.mark.parametrize("video", ["single_face.mp4", "face_noface.mov"])  # H.264 640x360, HEVC 960x540
@pytest.mark.parametrize("cap", [None, 16, 10_000])
def test_stream_equals_read_frames(face_videos: Path, video: str, cap: int | None) -> None:
    whole = read_frames(face_videos / video, cap)
    stream = stream_frames(face_videos / video, cap, threads=1)
    assert isinstance(stream, FrameStream)
    frames = np.stack(list(stream))
    np.testing.assert_array_equal(frames, whole.rgb)
    np.testing.assert_array_equal(stream.indices, whole.indices)
    np.testing.assert_array_equal(stream.timestamps, whole.timestamps)
    assert stream.fps == whole.fps
    if cap == 16:
        assert len(frames) == 16 and stream.indices[0] == 0 and stream.indices[-1] == whole.indices[-1]


def test_decoder_threads_do_not_change_pixels(face_videos: Path) -> None:
    one = read_frames(face_videos / "face_noface.mov", 24, threads=1)
    auto = read_frames(face_videos / "face_noface.mov", 24, threads=0)
    np.testing.assert_array_equal(one.rgb, auto.rgb)
    np.testing.assert_array_equal(one.timestamps, auto.timestamps)


def test_stream_holds_one_full_size_frame_not_the_clip(face_videos: Path) -> None:
    """ResNet preprocessing over a stream peaks near its 224x224 output (the resized frames and their stacked copy)
    plus a few decoded frames; over read_frames the whole clip is held at full size."""
    ext = get_extractor("resnet18", weights="none")
    path = face_videos / "face_noface.mov"  # 169 frames of 960x540: 263 MB as one RGB array
    frame_bytes = 960 * 540 * 3
    out_bytes = 169 * 224 * 224 * 3

    def peak(make: object) -> int:
        tracemalloc.start()
        try:
            ext.preprocess(make())
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    streamed = peak(lambda: stream_frames(path, threads=1))
    whole = peak(lambda: read_frames(path, threads=1).rgb)
    assert whole > 169 * frame_bytes
    assert streamed < 2 * out_bytes + 8 * frame_bytes, f"streaming peaked at {streamed / 2**20:.0f} MiB"


@pytest.fixture(scope="module")
def countless_video(tmp_path_factory: pytest.TempPathFactory, face_videos: Path) -> Path:
    """A real clip re-encoded into Matroska, which states no frame count (``stream.frames == 0``)."""
    import av

    src = read_frames(face_videos / "single_face.mp4", 30)
    path = tmp_path_factory.mktemp("mkv") / "no_count.mkv"
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = src.rgb.shape[2], src.rgb.shape[1], "yuv420p"
        for rgb in src.rgb:
            for packet in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0
    return path


def test_a_capped_stream_without_a_frame_count_says_so(countless_video: Path) -> None:
    with pytest.raises(FrameCountMismatch, match="no frame count"):
        list(stream_frames(countless_video, 8, threads=1))
    assert len(list(stream_frames(countless_video, None, threads=1))) == 30  # uncapped needs no count
    assert read_frames(countless_video, 8).indices.tolist() == [0, 4, 8, 12, 17, 21, 25, 29]


def test_extraction_falls_back_to_a_counted_read(countless_video: Path) -> None:
    from fer_zoo.extraction.run import ClipFrames

    ext = get_extractor("resnet18", weights="none")
    item = ClipFrames([ClipRecord("c", str(countless_video), "neutral")], ext, frame_cap=8)[0]
    assert item.result is None, "the clip must not be reported as failed"
    whole = read_frames(countless_video, 8)
    np.testing.assert_array_equal(item.frame_indices, whole.indices)
    np.testing.assert_array_equal(item.pre.numpy(), ext.preprocess(whole.rgb).numpy())


@pytest.fixture(scope="module")
def upright_frames(face_videos: Path) -> np.ndarray:
    return read_frames(face_videos / "single_face.mp4", 12).rgb


def _phone_video(path: Path, upright_rgb: np.ndarray, rotation: int) -> Path:
    """Frames stored sideways with a display rotation that turns them upright, as phones record portrait video."""
    import av

    stored = [np.ascontiguousarray(np.rot90(f, -round(rotation / 90))) for f in upright_rgb]
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = stored[0].shape[1], stored[0].shape[0], "yuv420p"
        s.set_display_rotation(rotation)
        for f in stored:
            for packet in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_display_rotation_is_applied(tmp_path: Path, upright_frames: np.ndarray, rotation: int) -> None:
    from fer_zoo.video.face_track import open_video

    path = _phone_video(tmp_path / f"rot{rotation}.mp4", upright_frames, rotation)
    for frames in (read_frames(path).rgb, np.stack(list(stream_frames(path, threads=1)))):
        assert frames.shape == upright_frames.shape
        err = np.abs(frames.astype(np.int16) - upright_frames).mean()
        assert err < 8, f"not upright: mean abs difference {err:.1f} (codec loss alone is ~3)"
    with open_video(path) as (_, decoded):
        first = next(decoded)[2]
    assert first.shape == upright_frames.shape[1:]


def test_face_mesh_of_a_rotated_video_matches_the_upright_clip(tmp_path: Path, upright_frames: np.ndarray) -> None:
    """Landmarks are normalised to the face box, so a sideways face gives other features; upright, they agree."""
    mesh = get_extractor("facemesh", geometry=False)
    ref, ref_valid = mesh.extract(upright_frames)
    feats, valid = mesh.extract(stream_frames(_phone_video(tmp_path / "portrait.mp4", upright_frames, 90), threads=1))
    both = ref_valid & valid
    assert both.mean() >= 0.9
    err = np.abs(feats[both] - ref[both]).mean()
    assert err < 0.02, f"features differ from the upright clip's by {err:.3f} on average"
