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


#: Columns of WolfgangLanger_Pexels.mp4 left out on the left of the composite (its face stays in the right half).
COMPOSITE_SHIFT = 240


def two_person_composite(face_videos: Path, out: Path, frames: int = 72) -> Path:
    """Two real people side by side: single_face.mp4 (left, 640 px) and WolfgangLanger_Pexels.mp4 without its
    left :data:`COMPOSITE_SHIFT` columns (right), ``frames`` frames at 30 fps, H.264 (reproducible pixels)."""
    import av

    from fer_zoo.video.face_track import open_video

    def read(name: str) -> list[np.ndarray]:
        with open_video(face_videos / name) as (_, it):
            return [rgb for i, _, rgb in it if i < frames]

    a, b = read("single_face.mp4"), read("WolfgangLanger_Pexels.mp4")
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 640 + 640 - COMPOSITE_SHIFT, 360, "yuv420p"
        s.options = {"crf": "18", "preset": "veryfast", "x264-params": "threads=1:sync-lookahead=0:rc-lookahead=0"}
        for x, y in zip(a, b):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.hstack([x, y[:, COMPOSITE_SHIFT:]])),
                                               format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return out
