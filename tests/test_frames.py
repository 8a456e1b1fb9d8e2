"""Reading clips: the one-frame-at-a-time stream gives exactly what ``read_frames`` gives, in bounded memory."""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from datamodules.frames import FrameCountMismatch, FrameStream, read_frames, stream_frames
from datamodules.records import ClipRecord
from extractors import get_extractor

sys.path.insert(0, str(Path(__file__).parent))
from video_data import cover_then_video  # noqa: E402


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


# ------------------------------------------------------------------------- issue 10: inputs that read wrong silently


def _gray_frames(folder: Path, names: list[str], values: list[int]) -> Path:
    """Frame files whose pixels all equal ``value``: which file a frame came from is read back from its pixels."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for name, v in zip(names, values):
        assert cv2.imwrite(str(folder / name), np.full((24, 32, 3), v, np.uint8))
    return folder


def _frame_values(frames: np.ndarray) -> list[int]:
    return [int(round(float(f.mean()))) for f in frames]


def test_unpadded_frame_names_read_in_numeric_order(tmp_path: Path) -> None:
    """1.jpg ... 16.jpg (some public DFEW/FERV39K dumps): name order would give 1, 10, 11, ..., 16, 2, 3, ..."""
    names = [f"{i}.jpg" for i in range(1, 17)]
    folder = _gray_frames(tmp_path / "clip", names, [10 * i for i in range(1, 17)])
    assert _frame_values(read_frames(folder).rgb) == [10 * i for i in range(1, 17)]
    capped = read_frames(folder, 4)  # the cap picks by time position, so it must see time order too
    assert capped.indices.tolist() == [0, 5, 10, 15]
    assert _frame_values(capped.rgb) == [10, 60, 110, 160]


def test_mixed_padded_and_unpadded_names_sort_by_number(tmp_path: Path) -> None:
    names = ["frame_10.png", "frame_002.png", "frame_1.png", "frame_0003.png", "frame_00011.png"]
    folder = _gray_frames(tmp_path / "clip", names, [100, 20, 10, 30, 110])
    assert _frame_values(read_frames(folder).rgb) == [10, 20, 30, 100, 110]
    from datamodules.frames import list_frame_files

    assert [f.name for f in list_frame_files(folder)] == ["frame_1.png", "frame_002.png", "frame_0003.png",
                                                         "frame_10.png", "frame_00011.png"]


@pytest.mark.parametrize("names", [
    [f"{i:05d}.jpg" for i in (3, 1, 30, 2, 10)],  # DFEW: the fast path
    ["frame_0010.png", "frame_0002.png", "frame_0001.png"],  # text around the digits: fast path too
    ["a1b2.jpg", "a2b1.jpg", "a1b1.jpg"],  # two digit runs
    ["img\u06635.jpg", "img\u06637.jpg", "img\u06631.jpg"],  # a constant non-ASCII digit inside the run
    ["1.jpg", "10.jpg", "2.jpg", "9.jpg"],  # unpadded: shapes differ, the key decides
    ["x9.png", "x10.png", "x08.png"],
    ["s1.jpg", "S2.jpg", "s3.jpg"],  # case: text compares case-insensitively
    ["001.jpg", "001.JPG", "002.jpg"],  # equal keys keep listing order, as the key sort does
    ["b.jpg"], [],
])
def test_natural_sorted_equals_sorting_by_the_natural_key(names: list[str]) -> None:
    """The fast path (names alike but for their digits: plain string order) gives the key's order, or is not taken."""
    from datamodules.frames import natural_key, natural_sorted

    assert natural_sorted(list(names)) == sorted(names, key=natural_key)


def test_frame_names_take_image_files_only_whatever_the_case(tmp_path: Path) -> None:
    from datamodules.frames import frame_names

    folder = tmp_path / "clip"
    folder.mkdir()
    for name in ("0002.jpg", "0001.JPG", "0003.jpeg", "x.tar.TIFF", ".0004.jpg", "._0001.jpg", "notes.txt", "x.",
                 "jpg", ".jpg", "a.mp4"):
        (folder / name).write_bytes(b"x")
    assert frame_names(folder) == ["0001.JPG", "0002.jpg", "0003.jpeg", "x.tar.TIFF"]


def test_two_files_with_one_frame_number_are_refused(tmp_path: Path) -> None:
    from datamodules.frames import ClipReadError

    folder = _gray_frames(tmp_path / "clip", ["1.jpg", "01.jpg", "2.jpg"], [10, 10, 20])
    with pytest.raises(ClipReadError, match="same number"):
        read_frames(folder)


def test_hidden_and_appledouble_files_are_ignored_in_frame_folders(tmp_path: Path) -> None:
    """A zip made on a Mac: ``._00001.jpg`` AppleDouble files (not images) and ``.DS_Store`` beside the frames."""
    folder = _gray_frames(tmp_path / "clip", ["00001.jpg", "00002.jpg", "00003.jpg"], [40, 80, 120])
    for name in ("._00001.jpg", "._00002.jpg", ".DS_Store"):
        (folder / name).write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    frames = read_frames(folder)
    assert _frame_values(frames.rgb) == [40, 80, 120] and frames.indices.tolist() == [0, 1, 2]


@pytest.mark.parametrize("suffix", [".tif", ".tiff", ".jfif", ".webp", ".png", ".jpg"])
def test_every_listed_image_type_reads(tmp_path: Path, upright_frames: np.ndarray, suffix: str) -> None:
    import cv2

    from datamodules.frames import IMAGE_SUFFIXES

    assert suffix in IMAGE_SUFFIXES
    path = tmp_path / f"photo{suffix}"
    ok, buf = cv2.imencode(".jpg" if suffix == ".jfif" else suffix, np.ascontiguousarray(upright_frames[0][:, :, ::-1]))
    assert ok
    path.write_bytes(buf.tobytes())
    rgb = read_frames(path).rgb
    assert rgb.shape == (1, *upright_frames.shape[1:])
    assert np.abs(rgb[0].astype(np.int16) - upright_frames[0]).mean() < 3  # lossless or JPEG


def _truncated(src: Path, dst: Path) -> Path:
    """The first half of a file: an interrupted download (the MP4's moov atom is at the front, so it still opens)."""
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def test_a_truncated_video_is_refused_with_the_reason(tmp_path: Path, face_videos: Path) -> None:
    """Before: 472 frames, the second half uninitialised memory (mean abs diff ~60 vs the real frames), stored ok."""
    from datamodules.frames import ClipReadError
    from fer_zoo.extraction.run import ClipFrames
    from fer_zoo.video.face_track import open_video

    half = _truncated(face_videos / "WolfgangLanger_Pexels.mp4", tmp_path / "half.mp4")
    for cap in (None, 8):
        with pytest.raises(ClipReadError, match=r"truncated.*228 of 472 stated.*9\.55 s of a declared 19\.6"):
            read_frames(half, cap)
        with pytest.raises(ClipReadError, match="truncated"):
            list(stream_frames(half, cap, threads=1))
    with pytest.raises(ClipReadError, match="truncated"), open_video(half) as (_, frames):
        list(frames)
    item = ClipFrames([ClipRecord("half", str(half), "neutral")], get_extractor("resnet18", weights="none"), 8)[0]
    assert item.result is not None and item.result.status == "failed" and "truncated" in item.result.reason


def test_a_garbled_stream_raises_instead_of_being_concealed(tmp_path: Path, face_videos: Path) -> None:
    """Bytes garbled inside the H.264 data: the decoder's error concealment would paint guessed pixels."""
    from datamodules.frames import ClipReadError

    data = bytearray((face_videos / "single_face.mp4").read_bytes())
    rng = np.random.default_rng(1)
    for off in range(60_000, 180_000, 30_000):
        data[off:off + 16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
    path = tmp_path / "garbled.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(ClipReadError, match="cannot decode video after"):
        read_frames(path)


def _pyav_count(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


@pytest.mark.parametrize("video", ["single_face.mp4", "WolfgangLanger_Pexels.mp4", "face_noface.mov",
                                   "noface_face.mov", "no_face.mp4"])
def test_every_shared_video_still_reads_fully(face_videos: Path, video: str) -> None:
    """The truncation check must not reject good files. no_face.mp4 states 98 frames and decodes 95 (its last
    frames are cut by an edit list): before, read_frames returned 98 frames, 3 of them never written."""
    n = _pyav_count(face_videos / video)
    whole = read_frames(face_videos / video)
    assert len(whole.rgb) == len(whole.indices) == len(whole.timestamps) == n
    assert whole.indices.tolist() == list(range(n))
    assert sum(1 for _ in stream_frames(face_videos / video, threads=1)) == n


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])  # MP4 states frame counts (1 and 12), Matroska none
def test_the_real_stream_is_read_not_the_cover(tmp_path: Path, upright_frames: np.ndarray, suffix: str) -> None:
    from fer_zoo.video.face_track import open_video, probe_video

    path = cover_then_video(tmp_path / f"cover{suffix}", upright_frames)
    for rgb in (read_frames(path).rgb, np.stack(list(stream_frames(path, threads=1))), read_frames(path, 4).rgb):
        assert rgb.shape[1:] == upright_frames.shape[1:]
        assert np.abs(rgb[0].astype(np.int16) - upright_frames[0]).mean() < 8
    assert len(read_frames(path)) == len(upright_frames)
    probe_video(path)
    with open_video(path) as (info, frames):
        assert (info.width, info.height) == (upright_frames.shape[2], upright_frames.shape[1])
        assert sum(1 for _ in frames) == len(upright_frames)
