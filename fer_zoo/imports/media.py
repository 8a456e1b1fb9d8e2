"""What an import needs to know about a clip's own media: how many frames it has and at what rate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MediaInfo:
    """``frames``: the clip's frame count; ``fps``: its average frame rate in Hz; ``None`` when not known."""

    frames: int | None = None
    fps: float | None = None


def media_info(path: str | Path) -> MediaInfo:
    """Frame count and rate of the clip's video (PyAV's stream metadata: ``frames``, ``average_rate``) or frame
    folder (its image files; no rate). ``MediaInfo()`` when it is not on disk or cannot be read."""
    from datamodules.frames import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    p = Path(path)
    if p.is_dir():
        return MediaInfo(sum(1 for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
                             and not f.name.startswith(".")))
    if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
        import av

        try:
            with av.open(str(p)) as c:
                stream = c.streams.best("video")
                if stream is None:
                    return MediaInfo()
                return MediaInfo(int(stream.frames) if stream.frames else None,
                                 float(stream.average_rate) if stream.average_rate else None)
        except (av.FFmpegError, OSError):
            return MediaInfo()
    return MediaInfo()
