"""Plain records that flow from clip sources to the extraction run and the DataModule."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClipRecord:
    """One clip as a source lists it.

    ``path`` is a video file, a folder of frames (in natural numeric order: ``datamodules.frames.FRAME_ORDER``) or a
    single image (a 1-frame clip).
    ``label`` is the canonical class name of the source's vocabulary (never an integer: label orders differ).
    ``split`` is ``"train"``/``"test"`` for fixed train/test protocols (FERV39K), else ``None``.
    ``test_fold`` is the fold (1..K) whose test set holds this clip in K-fold protocols (DFEW, MAFW), else ``None``.
    ``subject`` names the person (or recording session) shown, when the source knows it; seeded splits then keep all
    clips of one subject on one side (a person never appears in both train and test), else ``None``.
    ``audio`` is a sibling audio file holding the clip's soundtrack (time 0 = the first frame), when the data set
    ships audio apart from the frames (a manifest's ``audio`` column, a source's ``audio_root``); ``None``: the
    soundtrack, if any, is the video file's own audio stream (``datamodules.audio``).
    ``box`` is the face region ``(x, y, width, height)`` in pixels of a single image whose face is only part of it
    (AffectNet's face boxes): every reader crops the image to it (``datamodules.frames.read_frames(box=...)``);
    ``None``: the whole image (or video) is the clip.
    """

    clip_id: str
    path: str
    label: str | None = None
    split: str | None = None
    test_fold: int | None = None
    subject: str | None = None
    audio: str | None = None
    box: tuple[int, int, int, int] | None = None
