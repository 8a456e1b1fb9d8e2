"""Serve a local video file as a live stream on loopback, for the live-input tests (``tests/test_inputs.py``).

Run as a script by the tests (a subprocess they start and stop)::

    python tests/stream_server.py VIDEO [--mode video|silent|garbage] [--stall-after N]

It binds ``127.0.0.1`` (never another interface) on a free port, prints ``ready <port>`` once the socket listens,
accepts ONE client and then, by ``--mode``:

- ``video``: the file's video packets remuxed (not re-encoded) to MPEG-TS, each sent when its decoding time comes
  (paced in real time from the first packet), so the client reads it as it would a camera or an RTSP feed. With
  ``--stall-after N`` it sends N packets and then nothing, holding the connection open (a stalled stream); with
  ``--drop-keyframes`` it leaves out every keyframe (a stream with nothing decodable).
- ``silent``: accepts and sends nothing, holding the connection open (a source that never answers).
- ``garbage``: sends bytes that are no media format, then closes (not a video).

It exits when the stream is sent (after closing the connection), or when killed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HOLD_S = 600.0  # how long a stalled or silent connection is held open (the test kills the server long before)


def serve_video(conn: socket.socket, video: str, stall_after: int | None, drop_keyframes: bool = False) -> None:
    """Remux ``video``'s video stream to MPEG-TS on ``conn``, paced by each packet's decoding time (seconds of its
    stream's time base) from the first one."""
    import av

    sink = conn.makefile("wb", buffering=0)
    with av.open(video) as src:
        stream = src.streams.video[0]
        # flush_packets: hand every muxed packet to the socket at once (no 32 KiB I/O buffer delaying it).
        with av.open(sink, "w", format="mpegts", container_options={"flush_packets": "1"}) as out:
            ost = out.add_stream_from_template(stream)
            start = time.monotonic()
            first: float | None = None
            sent = 0
            for packet in src.demux(stream):
                if packet.dts is None:  # the demuxer's final flush packet: nothing to send
                    continue
                t = float(packet.dts * packet.time_base)
                first = t if first is None else first
                delay = start + (t - first) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if stall_after is not None and sent >= stall_after:
                    time.sleep(HOLD_S)  # stalled: the connection stays open, nothing more comes
                    return
                if drop_keyframes and packet.is_keyframe:
                    continue
                packet.stream = ost
                out.mux(packet)
                sent += 1


@contextlib.contextmanager
def serve(video: Path | str, *flags: str) -> Iterator[str]:
    """For the tests: start this script on loopback serving ``video``; yield its ``tcp://127.0.0.1:PORT`` URL; kill
    it afterwards."""
    import subprocess

    proc = subprocess.Popen([sys.executable, __file__, str(video), *flags], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("ready "), f"stream server did not start (said {line!r})"
        yield f"tcp://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def closed_port() -> int:
    """For the tests: a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", help="the local video file to serve")
    ap.add_argument("--mode", choices=["video", "silent", "garbage"], default="video")
    ap.add_argument("--stall-after", type=int, default=None, help="send this many packets, then nothing")
    ap.add_argument("--drop-keyframes", action="store_true", help="leave out every keyframe packet")
    args = ap.parse_args(argv)
    if not os.path.isfile(args.video):
        print(f"{args.video}: no such file", file=sys.stderr)
        return 2
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))  # loopback only, a free port chosen by the system
        srv.listen(1)
        print(f"ready {srv.getsockname()[1]}", flush=True)
        conn, _ = srv.accept()
        with conn:
            if args.mode == "silent":
                time.sleep(HOLD_S)
            elif args.mode == "garbage":
                conn.sendall(b"this is not a video stream\n" * 2000)
            else:
                try:
                    serve_video(conn, args.video, args.stall_after, args.drop_keyframes)
                except (BrokenPipeError, ConnectionResetError):
                    return 0  # the client went away: nothing left to serve
    return 0


if __name__ == "__main__":
    sys.exit(main())
