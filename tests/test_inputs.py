"""Live input (issue 26): which argument is a file, a camera or a stream URL, and reading each.

Streams are served on loopback only, by ``tests/stream_server.py`` started here as a subprocess (a local video
remuxed to MPEG-TS over TCP, paced in real time).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from stream_server import closed_port, serve

from datamodules.frames import ClipReadError
from fer_zoo.video.face_track import InputError, open_video
from fer_zoo.video.inputs import (
    InputSpec,
    LiveClock,
    StreamStats,
    describe_error,
    open_input,
    parse_inputs,
    redact,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="v4l2 camera devices are Linux's")


def url_spec(url: str) -> InputSpec:
    [spec] = parse_inputs([url])
    assert spec.kind == "url" and spec.target == url
    return spec


# ---------------------------------------------------------------------------------------------------- parsing


def test_digits_are_a_camera_unless_such_a_file_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       face_videos: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_inputs(["0", "12"]) == [InputSpec("camera", "0", "camera0"), InputSpec("camera", "12", "camera12")]
    Path("0").write_bytes(b"not a video")  # a stray file named 0 here: the file wins, and the error says so
    with pytest.raises(InputError, match=r"^0: not a video file .*names an existing file or folder here; for camera 0 "
                       + (r"give its device, e\.g\. /dev/video0\)$" if sys.platform.startswith("linux") else "")):
        parse_inputs(["0"])
    Path("1").mkdir()  # a folder named 1 holding a video: its video, not camera 1
    (Path("1") / "clip.mp4").write_bytes((face_videos / "single_face.mp4").read_bytes())
    assert parse_inputs(["1"]) == [InputSpec("file", str(Path("1") / "clip.mp4"), "clip")]


def test_urls_are_kept_exactly_as_given() -> None:
    url = "rtsp://admin:s3cret@cam.local:554/live/ch1?token=abc"
    [spec] = parse_inputs([url])
    assert spec == InputSpec("url", url, "cam.local_554_live_ch1")  # not rtsp:/ (pathlib), no password or query
    assert spec.live and spec.shown == "rtsp://admin:***@cam.local:554/live/ch1?token=abc"
    for u in ["rtsps://h/x", "rtmp://h/app/key", "http://h:8080/a.m3u8", "HTTPS://h/v", "udp://@:1234",
              "tcp://127.0.0.1:9000", "srt://h:9000", "rtp://239.0.0.1:5004"]:
        assert parse_inputs([u]) == [InputSpec("url", u, parse_inputs([u])[0].label)]
    assert parse_inputs(["udp://@:1234"])[0].label == "1234"
    with pytest.raises(InputError, match=r"^ftp://h/x: unsupported URL scheme 'ftp'"):
        parse_inputs(["ftp://h/x"])
    assert redact("rtsp://u:p@h/x") == "rtsp://u:***@h/x" and redact("rtsp://h/x") == "rtsp://h/x"


@linux_only
def test_camera_devices_and_duplicates(tmp_path: Path, face_videos: Path) -> None:
    assert parse_inputs(["/dev/video0"]) == [InputSpec("camera", "/dev/video0", "camera0")]
    assert parse_inputs(["0", "/dev/video0"]) == [InputSpec("camera", "0", "camera0")]  # one device, read once
    clip = tmp_path / "camera0.mp4"  # a file whose stem is a camera's label: both kept, labels made unique
    clip.write_bytes((face_videos / "single_face.mp4").read_bytes())
    a, b = "rtsp://h/live?ch=1", "rtsp://h/live?ch=2"
    assert [s.label for s in parse_inputs([str(clip), "0", a, b, a])] == ["camera0", "camera0_2", "h_live",
                                                                           "h_live_2"]


def test_files_and_folders_as_collect_videos(tmp_path: Path, face_videos: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        parse_inputs([str(tmp_path / "missing.mp4")])
    with pytest.raises(InputError, match="no input videos, cameras or stream URLs given"):
        parse_inputs([])
    specs = parse_inputs([str(face_videos / "single_face.mp4"), str(face_videos / "single_face.mp4")])
    assert specs == [InputSpec("file", str(face_videos / "single_face.mp4"), "single_face")]
    assert not specs[0].live


# ---------------------------------------------------------------------------------------------------- timing


def test_live_clock_keeps_times_increasing_and_counts_fixes() -> None:
    stats = StreamStats()
    clock = LiveClock(25.0, stats)
    # PTS from anywhere (1000 s), a repeated PTS, a jump back (clock restarted), a frame without PTS
    pts = [1000.0, 1000.04, 1000.04, 1000.12, 3.0, 3.04, None, 3.12]
    times = [clock.place(p, arrived=i * 0.04) for i, p in enumerate(pts)]
    np.testing.assert_allclose(times, [0.0, 0.04, 0.08, 0.16, 0.20, 0.24, 0.28, 0.32], atol=1e-9)
    assert (stats.retimed, stats.no_pts) == (2, 1)
    assert all(b > a for a, b in zip(times, times[1:]))
    no_rate = LiveClock(None, StreamStats())  # no rate, no PTS: the arrival-time offsets
    np.testing.assert_allclose([no_rate.place(None, 5.0 + a) for a in (0.0, 0.1, 0.35)], [0.0, 0.1, 0.35])


# ---------------------------------------------------------------------------------------------------- reading


def test_file_input_gives_open_video_frames(face_videos: Path) -> None:
    [spec] = parse_inputs([str(face_videos / "single_face.mp4")])
    with open_input(spec) as (info, frames), open_video(spec.target) as (_, ref):
        got = list(frames)
        ref_frames = list(ref)
    assert (info.fps, info.width, info.height, info.stats.frames) == (30.0, 640, 360, 72)
    assert [f.index for f in got] == list(range(72))
    assert [f.time for f in got] == [t for _, t, _ in ref_frames]
    assert np.array_equal(got[40].rgb, ref_frames[40][2])


@pytest.mark.slow  # the stream is real time: the clip's 2.4 s
def test_loopback_stream_is_read_live(face_videos: Path) -> None:
    video = face_videos / "single_face.mp4"
    with open_video(video) as (_, ref):
        ref_frames = list(ref)
    duration = ref_frames[-1][1] - ref_frames[0][1]
    with serve(video) as url:
        started = time.monotonic()
        with open_input(url_spec(url), open_timeout_s=5, read_timeout_s=5) as (info, frames):
            got = list(frames)
    assert (info.width, info.height, info.path, info.stats.frames) == (640, 360, url, 72)
    assert len(got) == len(ref_frames) == 72  # every frame arrived, decoded as the file decodes
    times = [f.time for f in got]
    assert times[0] == 0.0 and all(b > a for a, b in zip(times, times[1:]))
    np.testing.assert_allclose(times, [t - ref_frames[0][1] for _, t, _ in ref_frames], atol=1e-6)
    assert all(np.array_equal(f.rgb, r[2]) for f, r in zip(got, ref_frames))
    # real time: the last frame comes about the clip's duration after the connection, not all at once
    assert got[-1].arrived - started > 0.9 * duration
    assert got[-1].arrived - got[0].arrived > duration - info.stats.first_frame_s - 0.2
    assert info.stats.max_behind_s < 0.5 and (info.stats.retimed, info.stats.no_pts) == (0, 0)


def test_dead_url_is_one_line_quickly() -> None:
    url = f"tcp://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(InputError) as err, open_input(url_spec(url), open_timeout_s=5):
        pass
    assert str(err.value) == f"{url}: connection refused"
    assert time.monotonic() - started < 2.0


def test_silent_and_garbage_sources_are_one_line(face_videos: Path) -> None:
    video = face_videos / "single_face.mp4"
    with serve(video, "--mode", "silent") as url:
        started = time.monotonic()
        with pytest.raises(InputError) as err, open_input(url_spec(url), open_timeout_s=1, read_timeout_s=1):
            pass
        waited = time.monotonic() - started
    assert str(err.value) == f"{url}: no answer within 1 s (timed out)" and 0.9 < waited < 3.0
    with serve(video, "--mode", "garbage") as url, pytest.raises(InputError) as err, \
            open_input(url_spec(url), open_timeout_s=2):
        pass
    assert str(err.value).startswith(f"{url}: not a video stream") and "\n" not in str(err.value)


@linux_only
def test_missing_camera_is_one_line() -> None:
    if Path("/dev/video9").exists():
        pytest.skip("this machine has a /dev/video9")
    for arg in ["9", "/dev/video9"]:
        [spec] = parse_inputs([arg])
        with pytest.raises(InputError) as err, open_input(spec):
            pass
        shown = "camera 9 (/dev/video9)" if arg == "9" else "camera /dev/video9"
        assert str(err.value) == f"{shown}: no such device"


@linux_only
def test_not_a_camera_device_is_one_line() -> None:
    spec = InputSpec("camera", "/dev/null", "null")
    with pytest.raises(InputError) as err, open_input(spec):
        pass
    assert str(err.value) == "camera /dev/null: not a video capture device"


def test_stalled_stream_ends_with_an_error_within_the_read_timeout(face_videos: Path) -> None:
    video = face_videos / "single_face.mp4"
    got = []
    # 45 packets (1.5 s), then the connection stays silent
    with serve(video, "--stall-after", "45") as url, \
            open_input(url_spec(url), open_timeout_s=5, read_timeout_s=1) as (_, frames):
        with pytest.raises(ClipReadError) as err:
            got.extend(frames)
        failed = time.monotonic()
    assert 43 <= len(got) <= 45  # the frames before the stall were yielded (the decoder may hold the last two)
    np.testing.assert_allclose([f.time for f in got], np.arange(len(got)) / 30.0, atol=1e-6)
    assert str(err.value) == f"{url}: stalled: no data for 1 s (read timeout) after {len(got)} frames"
    # one wait of about the read timeout, no hang: the demuxer hands out what it holds when the read is stopped
    waits = np.diff([f.arrived for f in got] + [failed])
    assert 0.9 < waits.max() < 2.0 and np.sum(waits > 0.5) == 1


def test_stream_stalled_while_opening_says_so(face_videos: Path) -> None:
    """FFmpeg's probing, interrupted by the open timeout, ends quietly: the frames it read come, then the error."""
    got = []
    # stalls inside FFmpeg's 1 s probe
    with serve(face_videos / "single_face.mp4", "--stall-after", "10") as url, \
            open_input(url_spec(url), open_timeout_s=1.5, read_timeout_s=5) as (_, frames), \
            pytest.raises(ClipReadError) as err:
        got.extend(frames)
    assert 8 <= len(got) <= 10
    assert str(err.value) == f"{url}: stalled while opening: no data for 1.5 s (open timeout) after {len(got)} frames"


def test_stream_without_keyframe_is_one_line(face_videos: Path) -> None:
    with serve(face_videos / "single_face.mp4", "--drop-keyframes") as url, pytest.raises(InputError) as err, \
            open_input(url_spec(url), open_timeout_s=5, read_timeout_s=1):
        pass
    assert re.fullmatch(re.escape(url) + r": no video frame within 1 s of opening \([0-9]+ video packets came, none "
                        r"a keyframe\)", str(err.value))


def test_describe_error_adds_ffmpeg_detail() -> None:
    import av

    err = av.OSError(5, "Input/output error")
    assert describe_error(err, 1.0, "Failed to resolve hostname x.invalid: Name or service not known\n") == (
        "input/output error (FFmpeg: Failed to resolve hostname x.invalid: Name or service not known)")
