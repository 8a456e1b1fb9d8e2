"""``python -m fer_zoo preprocess INPUT... --out DIR``: raw videos and photos -> face-crop frame folders (DFEW layout).

Every video (mp4, mov, avi, webm, mkv, ...) and every photo (jpg, png, bmp, webp, tif; a folder is searched
recursively for both) becomes one clip folder; a photo's folder holds one crop (a 1-frame clip)::

    DIR/Clip/clip_224x224/<clip_id>/00001.jpg 00002.jpg ...   face crops, numbered densely in frame order
    DIR/Clip/clip_224x224/<clip_id>/boxes.csv                 one row per decoded frame (see below)
    DIR/preprocess.json                                       the settings (a rerun with others is refused)
    DIR/clips.csv                                             clip_id, video, status, frame counts, reason
    DIR/manifest.csv                                          path,label,subject: the training list (below)

``DIR/manifest.csv`` lists every clip folder with face crops for ``ManifestSource(csv=DIR/manifest.csv)``; its
labels come from ``--labels`` (a CSV ``video,label[,subject]``) or are left empty for you to fill in, and a rerun
keeps labels and rows you added (see :mod:`fer_zoo.video.manifest`). The tree is also read by
``DFEWSource(root=DIR)`` (whose default ``frames_subdir`` is ``Clip/clip_224x224``) once ``DIR/EmoLabel_DataSplit``
holds DFEW-style label files, and by ``read_frames``. With ``--size`` other than 224 the folder is
``Clip/clip_<S>x<S>``: pass that as DFEWSource's ``frames_subdir``. ``<clip_id>`` is the video's stem (a numeric
stem is zero-padded to 5 digits as DFEW's ids are; two videos with one stem get ``_<ext>`` / ``_2`` suffixes).

Faces: MediaPipe face detection on every frame, one face tracked through the clip, square crops around its box
snapped to a grid (``--snap``: a face re-detected a pixel or two away keeps the very same crop), with a margin and
black padding past the frame edge; the detection, tracking and crop rules are in :mod:`fer_zoo.video.face_track`.
A photo goes through the same detector, tracker and crop function (its most confident face), so photos cropped
here and the video windows ``predict-video`` crops are the same kind of input: train on photos cropped here.
A photo without a face is reported ("no face found in <photo>") and left out of the manifest; the others go on.

Frames without the tracked face are NOT written (nothing is invented): they appear in ``boxes.csv`` with
``face_found=0`` and a ``reason``. Images are numbered 00001.jpg, 00002.jpg, ... over the written frames only, so
image k is generally not source frame k-1: ``boxes.csv`` maps them (its ``image`` column names the file written for
each source ``frame``; ``timestamp`` is in seconds). ``boxes.csv`` columns: frame, timestamp, x0, y0, x1, y1
(detection box in pixels of the decoded frame, may extend past the edges), confidence, face_found, image, reason.
``--frame_cap N`` writes at most N face frames per clip, chosen like ``read_frames``' cap (uniformly spaced over
the source frames; tracking still sees every frame).

A clip folder is written under a temporary name and renamed when complete, so a rerun skips finished clips
(``--overwrite`` redoes them). Exit status: 0 all videos done; 2 bad arguments (a path that does not exist, a file
that is not a video, a folder without videos, settings that differ from DIR's); 3 at least one video could not be
decoded (corrupt or truncated; reported, the others go on); 4 none failed but at least one video had no face at
all (reported as "no face found"; its folder holds only boxes.csv).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from datamodules.frames import ClipReadError, cap_indices
from fer_zoo.video.face_track import (
    SNAP,
    FaceDetector,
    InputError,
    TrackConfig,
    clip_ids,
    collect_videos,
    is_image,
    recorded_settings,
    track_video,
    write_boxes_csv,
)
from fer_zoo.video.manifest import match_labels, print_summary, read_labels, write_manifest

EXIT_OK, EXIT_USAGE, EXIT_FAILED, EXIT_NO_FACE = 0, 2, 3, 4


def default_frames_subdir(size: int) -> str:
    """DFEWSource's default ``frames_subdir`` for 224 crops (read from the dataclass, so they cannot drift)."""
    from datamodules.sources import DFEWSource

    default = next(f.default for f in dataclasses.fields(DFEWSource) if f.name == "frames_subdir")
    return str(default) if size == 224 else str(Path(str(default)).parent / f"clip_{size}x{size}")


@dataclass
class ClipOutcome:
    clip_id: str
    video: str
    status: str  # ok | no_face | failed | skipped
    frames: int = 0
    face_frames: int = 0
    written: int = 0
    seconds: float = 0.0
    reason: str = ""


def preprocess_video(video: Path, clip_dir: Path, cfg: TrackConfig, frame_cap: int | None = None,
                     detector: FaceDetector | None = None) -> ClipOutcome:
    """Track faces in ``video`` and write its clip folder atomically (a temporary folder renamed at the end)."""
    t0 = time.perf_counter()
    clip_id = clip_dir.name
    try:
        res = track_video(video, cfg, detector=detector)
    except ClipReadError as err:
        return ClipOutcome(clip_id, str(video), "failed", reason=err.reason, seconds=time.perf_counter() - t0)
    chosen = set(cap_indices(res.n_frames, frame_cap).tolist())
    faces = [r for r in res.records if r.face_found and r.frame in chosen]
    width = max(5, len(str(len(faces))))
    tmp = clip_dir.with_name(f".{clip_id}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for k, rec in enumerate(faces, start=1):
        rec.image = f"{k:0{width}d}.jpg"
        (tmp / rec.image).write_bytes(rec.jpeg)  # type: ignore[arg-type]
    write_boxes_csv(tmp / "boxes.csv", res.records)
    if clip_dir.exists():
        shutil.rmtree(clip_dir)
    os.replace(tmp, clip_dir)
    status = "ok" if res.face_frames else "no_face"
    return ClipOutcome(clip_id, str(video), status, res.n_frames, res.face_frames, len(faces),
                       time.perf_counter() - t0, "" if status == "ok" else f"no face found in {video}")


def _check_settings(out: Path, settings: dict) -> None:
    path = out / "preprocess.json"
    if path.exists():
        have = recorded_settings(json.loads(path.read_text()))
        diff = {k: (have.get(k), v) for k, v in settings.items() if have.get(k) != v}
        if diff:
            what = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise InputError(f"{out} was preprocessed with other settings ({what}); mixing them in one tree would "
                             "give clips cropped differently. Use another --out.")
    else:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def _write_index(out: Path, outcomes: list[ClipOutcome]) -> None:
    """Merge this run's outcomes into ``DIR/clips.csv`` (one row per clip id, the latest run wins)."""
    path = out / "clips.csv"
    fields = [f.name for f in dataclasses.fields(ClipOutcome)]
    rows: dict[str, dict] = {}
    if path.exists():
        with open(path, newline="") as f:
            rows = {r["clip_id"]: r for r in csv.DictReader(f)}
    for o in outcomes:
        if o.status != "skipped":
            rows[o.clip_id] = {k: (round(v, 2) if isinstance(v, float) else v)
                               for k, v in dataclasses.asdict(o).items()}
    tmp = path.with_name(".clips.csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for cid in sorted(rows):
            w.writerow(rows[cid])
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_zoo preprocess", description=__doc__.split("\n\n")[0],
                                epilog="Exit status: 0 ok, 2 bad arguments, 3 some video failed to decode, "
                                       "4 some video had no face at all.")
    p.add_argument("inputs", nargs="+", help="video files, photos, and/or folders of them (searched recursively; "
                                             "each photo is a 1-frame clip)")
    p.add_argument("--out", required=True, help="output root (a DFEW-style tree)")
    p.add_argument("--margin", type=float, default=0.25,
                   help="fraction of the face box size added on each side of the square crop (default 0.25)")
    p.add_argument("--size", type=int, default=224, help="crop side in pixels (default 224)")
    p.add_argument("--min_confidence", type=float, default=0.5, help="face detection threshold (default 0.5)")
    p.add_argument("--snap", type=float, default=SNAP,
                   help=f"snap the face box to a grid of this fraction of its size before cropping, so a face whose "
                        f"detection moves by a pixel or two keeps the very same crop (default {SNAP}; 0: crop at the "
                        "detected box, as trees made before this option)")
    p.add_argument("--detector", choices=["short", "full"], default="short",
                   help="MediaPipe model: short range (faces within ~2 m, fast; default) or full range (~5 m)")
    p.add_argument("--min_hits", type=int, default=5,
                   help="consecutive detections needed to start tracking a face (rejects flickering false alarms)")
    p.add_argument("--max_lost", type=int, default=10,
                   help="frames the tracked face may be missing before another face may be picked")
    p.add_argument("--frame_cap", type=int, default=None,
                   help="write at most N face frames per clip, uniformly spaced (default: all)")
    p.add_argument("--frames_subdir", default=None,
                   help="clip folder root inside --out (default: Clip/clip_224x224, DFEWSource's default)")
    p.add_argument("--overwrite", action="store_true", help="redo clips whose folder already exists")
    p.add_argument("--labels", default=None,
                   help="CSV with header video,label[,subject] (video: file name, stem or path): written into "
                        "DIR/manifest.csv, the training list for ManifestSource. Without it the manifest's label "
                        "column is left empty for you to fill in")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = TrackConfig(margin=args.margin, size=args.size, min_confidence=args.min_confidence, snap=args.snap,
                          detector=args.detector, min_hits=args.min_hits, max_lost=args.max_lost)
        if args.frame_cap is not None and args.frame_cap < 1:
            raise InputError(f"--frame_cap must be >= 1, got {args.frame_cap}")
        videos = collect_videos(args.inputs, photos=True)
        out = Path(args.out)
        subdir = args.frames_subdir or default_frames_subdir(cfg.size)
        ids = clip_ids(videos)
        label_rows = read_labels(args.labels) if args.labels else []
        labels, unmatched = match_labels(videos, ids, label_rows, args.labels) if args.labels else ({}, [])
        _check_settings(out, {**cfg.to_dict(), "frame_cap": args.frame_cap, "frames_subdir": subdir})
    except (InputError, ValueError) as err:
        print(f"preprocess: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    frames_root = out / subdir
    frames_root.mkdir(parents=True, exist_ok=True)
    n_photos = sum(is_image(v) for v in videos)
    print(f"preprocess: {len(videos) - n_photos} video(s), {n_photos} photo(s) -> {frames_root}/<clip_id>/ "
          f"(crop {cfg.size}px, margin {cfg.margin}, "
          f"detector {cfg.detector}, min_confidence {cfg.min_confidence})")
    from tqdm import tqdm

    outcomes: list[ClipOutcome] = []
    detector = FaceDetector(cfg)
    try:
        bar = tqdm(videos, unit="clip", desc="preprocess", dynamic_ncols=True)
        for video in bar:
            clip_dir = frames_root / ids[video]
            bar.set_postfix_str(video.name)
            if clip_dir.is_dir() and not args.overwrite:
                outcomes.append(ClipOutcome(ids[video], str(video), "skipped", reason="already done"))
                continue
            o = preprocess_video(video, clip_dir, cfg, args.frame_cap, detector=detector)
            outcomes.append(o)
            if o.status == "failed":
                bar.write(f"FAILED {video}: {o.reason}")
            elif o.status == "no_face":
                bar.write(f"no face found in {video} ({o.frames} frames); {clip_dir} holds only boxes.csv")
    finally:
        detector.close()
    _write_index(out, outcomes)
    status = _report(outcomes, frames_root)
    with open(out / "clips.csv", newline="") as f:
        index = list(csv.DictReader(f))
    try:
        summary = write_manifest(out, subdir, index, labels)
    except InputError as err:
        print(f"preprocess: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print_summary(summary, bool(args.labels), unmatched)
    _exit_note(status)
    return status


def _report(outcomes: list[ClipOutcome], frames_root: Path) -> int:
    by = {s: [o for o in outcomes if o.status == s] for s in ("ok", "no_face", "failed", "skipped")}
    frames = sum(o.frames for o in outcomes)
    faces = sum(o.face_frames for o in outcomes)
    secs = sum(o.seconds for o in outcomes)
    print(f"\npreprocess summary: {len(by['ok'])} ok, {len(by['no_face'])} no face, {len(by['failed'])} failed, "
          f"{len(by['skipped'])} skipped (already done) -> {frames_root}")
    if frames:
        print(f"  {frames} frames, {faces} with the tracked face ({faces / frames:.1%}), "
              f"{sum(o.written for o in outcomes)} images written, {frames / max(secs, 1e-9):.0f} frames/s")
    for o in by["no_face"]:
        print(f"  NO FACE {o.clip_id}: {o.reason}")
    for o in by["failed"]:
        print(f"  FAILED  {o.clip_id}: {o.video}: {o.reason}")
    return EXIT_FAILED if by["failed"] else EXIT_NO_FACE if by["no_face"] else EXIT_OK


def _exit_note(status: int) -> None:
    if status == EXIT_FAILED:
        print(f"some videos failed (listed above); exit status {EXIT_FAILED}", file=sys.stderr)
    elif status == EXIT_NO_FACE:
        print(f"some videos have no face (listed above); exit status {EXIT_NO_FACE}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
