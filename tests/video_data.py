"""Test videos built in code (shared by the frame-decoding and bad-input tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def cover_then_video(path: Path, frames: np.ndarray) -> Path:
    """A file whose FIRST video stream is a 1-frame MJPEG cover (black, 320x180) and whose second is the clip."""
    import av

    with av.open(str(path), "w") as out:
        cover = out.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 320, 180, "yuvj420p"
        clip = out.add_stream("mpeg4", rate=25)
        clip.width, clip.height, clip.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for packet in cover.encode(av.VideoFrame.from_ndarray(np.zeros((180, 320, 3), np.uint8), format="rgb24")):
            out.mux(packet)
        for packet in cover.encode():
            out.mux(packet)
        for f in frames:
            for packet in clip.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in clip.encode():
            out.mux(packet)
    with av.open(str(path)) as c:  # the premise: the cover really is the first video stream
        assert c.streams.video[0].codec_context.name == "mjpeg" and len(c.streams.video) == 2
    return path
