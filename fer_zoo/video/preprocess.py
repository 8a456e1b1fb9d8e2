"""``python -m fer_zoo preprocess INPUT... --out DIR``: raw videos and photos -> face-crop frame folders (DFEW layout).

Every person tracked in a video (mp4, mov, avi, webm, mkv, ...) and every photo (jpg, png, bmp, webp, tif; a folder
is searched recursively for both) becomes one clip folder; a photo's folder holds one crop (a 1-frame clip)::

    DIR/Clip/clip_224x224/<clip_id>/00001.jpg 00002.jpg ...   face crops, numbered densely in frame order
    DIR/Clip/clip_224x224/<clip_id>/boxes.csv                 one row per decoded frame (see below)
    DIR/preprocess.json                                       the settings (a rerun with others is refused)
    DIR/clips.csv                                             clip_id, video, status, frame counts, reason
    DIR/manifest.csv                                          path,label,subject: the training list (below)
    DIR/native_stderr.log                                     MediaPipe's C++ log (kept off the terminal)

``DIR/manifest.csv`` lists every clip folder with face crops for ``ManifestSource(csv=DIR/manifest.csv)``; its
labels come from ``--labels`` (a CSV ``video,label[,subject]``) or are left empty for you to fill in, and a rerun
keeps labels and rows you added (see :mod:`fer_zoo.video.manifest`). The tree is also read by
``DFEWSource(root=DIR, label_order=...)`` (whose default ``frames_subdir`` is ``Clip/clip_224x224``) once
``DIR/EmoLabel_DataSplit`` holds DFEW-style label files (integers: ``label_order="dfew"`` for DFEW's 1-7, or your
class names listed in the order of your integers, 0-based; see ``datamodules.label_orders``), and by
``read_frames``. With ``--size`` other than 224 the folder is
``Clip/clip_<S>x<S>``: pass that as DFEWSource's ``frames_subdir``. ``<clip_id>`` is the video's stem (a numeric
stem is zero-padded to 5 digits as DFEW's ids are; two videos with one stem get ``_<ext>`` / ``_2`` suffixes).

People: every face is tracked with a person id (1, 2, ... in order of appearance; a face that leaves and comes back
within 2 s near where it left keeps its id): ``--faces all`` (default), ``largest`` (one face at a time, the
largest), ``N`` (at most N at once, the largest). A video with one person gives the clip ``<clip_id>`` as before;
with several, one clip per person, ``<clip_id>_p1``, ``<clip_id>_p2``, ... (frames numbered as the video's frames in
each one's ``boxes.csv``; its ``person`` column and the ``person`` column of ``clips.csv`` and ``manifest.csv`` name
the person). A ``--labels`` row names a video, so its label (and subject) go to every person clip of that video.
``--faces legacy`` is the single-face rule of trees made before ``--faces`` existed (such a tree is only extended
with it). ``--detect_every K`` runs the detector on every K-th frame only (every frame while a face is new or lost)
and interpolates the boxes between (``interpolated`` column): about K times fewer detections.

Faces: MediaPipe face detection, square crops around each tracked box snapped to a grid (``--snap``: a face
re-detected a pixel or two away keeps the very same crop), with a margin and black padding past the frame edge; the
detection, tracking and crop rules are in :mod:`fer_zoo.video.face_track` and :mod:`fer_zoo.video.tracking`.
A photo goes through the same detector and crop function (its most confident face: one clip), so photos cropped
here and the video windows ``predict-video`` crops are the same kind of input: train on photos cropped here.
A photo without a face is reported ("no face found in <photo>") and left out of the manifest; the others go on.

Frames without the tracked face are NOT written (nothing is invented): they appear in ``boxes.csv`` with
``face_found=0`` and a ``reason``. Images are numbered 00001.jpg, 00002.jpg, ... over the written frames only, so
image k is generally not source frame k-1: ``boxes.csv`` maps them (its ``image`` column names the file written for
each source ``frame``; ``timestamp`` is in seconds). ``boxes.csv`` columns: frame, timestamp, x0, y0, x1, y1
(detection box in pixels of the decoded frame, may extend past the edges), confidence, face_found, image, reason,
person, interpolated.
``--frame_cap N`` writes at most N face frames per clip, chosen like ``read_frames``' cap (uniformly spaced over
the source frames; tracking still sees every frame).

A clip folder is written under a temporary name and renamed when complete (a video's person clips in reverse
order, ``_p1`` last), so a rerun skips finished videos (``--overwrite`` redoes them, replacing all their clips).
Exit status: 0 all videos done; 2 bad arguments (a path that does not exist, a file
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
import re
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from datamodules.frames import ClipReadError, cap_indices
from fer_zoo.native_stderr import native_stderr_to
from fer_zoo.progress import Progress
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
NATIVE_LOG = "native_stderr.log"  # in --out: MediaPipe's C++ log (native stderr), appended by every run


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
    person: int | str = ""  # the person id of a clip of one person of a video ("" for no face or a failed video)


def person_clip_id(clip_id: str, person: int) -> str:
    """The clip id of one person of a video with several people: ``<clip_id>_p<person>``."""
    return f"{clip_id}_p{person}"


def video_clip_dirs(frames_root: Path, clip_id: str) -> list[Path]:
    """The clip folders a video may have written: ``<clip_id>`` and ``<clip_id>_p<N>``."""
    pattern = re.compile(re.escape(clip_id) + r"_p\d+")
    found = [frames_root / clip_id] if (frames_root / clip_id).is_dir() else []
    if frames_root.is_dir():
        found += sorted(d for d in frames_root.iterdir() if d.is_dir() and pattern.fullmatch(d.name))
    return found


def video_done(frames_root: Path, clip_id: str, taken: dict[str, str]) -> bool:
    """Whether a video's clips are all written: ``<clip_id>`` or its ``<clip_id>_p1`` (renamed last) exists;
    ``taken``: clip ids of other videos (a ``<clip_id>_p1`` among them is not this video's)."""
    p1 = person_clip_id(clip_id, 1)
    return (frames_root / clip_id).is_dir() or ((frames_root / p1).is_dir() and p1 not in taken)


def preprocess_video(video: Path, clip_dir: Path, cfg: TrackConfig, frame_cap: int | None = None,
                     detector: FaceDetector | None = None,
                     taken: dict[str, str] | None = None) -> list[ClipOutcome]:
    """Track faces in ``video`` and write one clip folder per person, each atomically (a temporary folder renamed
    at the end): ``clip_dir`` itself for a video with one person (or none: ``boxes.csv`` only), else
    ``<clip_dir>_p<person>`` per person. Folders an earlier run wrote for this video are replaced.

    ``taken``: clip ids that belong to other videos (id -> video); a person clip id among them fails this video
    (one line naming both) instead of overwriting the other's clip (``clip_dir`` itself is replaced, as always).
    Returns one outcome per clip written, or one ``failed`` outcome (a video that cannot be decoded, a clash of ids)."""
    t0 = time.perf_counter()
    clip_id = clip_dir.name
    try:
        res = track_video(video, cfg, detector=detector)
    except ClipReadError as err:
        return [ClipOutcome(clip_id, str(video), "failed", reason=err.reason, seconds=time.perf_counter() - t0)]
    if len(res.people) > 1:
        clips = [(clip_dir.with_name(person_clip_id(clip_id, p.person)), p.person, p.records) for p in res.people]
    else:
        clips = [(clip_dir, res.people[0].person if res.people else "", res.records)]
    clash = [(d.name, taken[d.name]) for d, _, _ in clips if taken and d.name in taken and d != clip_dir]
    if clash:
        name, other = clash[0]
        return [ClipOutcome(clip_id, str(video), "failed", res.n_frames, seconds=time.perf_counter() - t0,
                            reason=f"{len(res.people)} people found, but the clip id {name} of one of them is the "
                                   f"clip of {other}: rename one of the two videos")]
    chosen = set(cap_indices(res.n_frames, frame_cap).tolist())
    staged: list[tuple[Path, Path, ClipOutcome]] = []
    for folder, person, records in clips:
        if len(clips) == 1:  # one person: the cap spread over the video's frames, as before people were tracked
            faces = [r for r in records if r.face_found and r.frame in chosen]
        else:  # several: over each person's own face frames (one on screen briefly kept none of the video-wide picks)
            found = [r for r in records if r.face_found]
            faces = [found[i] for i in cap_indices(len(found), frame_cap)]
        width = max(5, len(str(len(faces))))
        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for k, rec in enumerate(faces, start=1):
            rec.image = f"{k:0{width}d}.jpg"
            (tmp / rec.image).write_bytes(rec.jpeg)  # type: ignore[arg-type]
        write_boxes_csv(tmp / "boxes.csv", records)
        n_face = sum(r.face_found for r in records)
        status = "ok" if n_face else "no_face"
        staged.append((tmp, folder, ClipOutcome(folder.name, str(video), status, res.n_frames, n_face, len(faces),
                                                0.0, "" if status == "ok" else f"no face found in {video}", person)))
    for old in video_clip_dirs(clip_dir.parent, clip_id):  # what an earlier run wrote for this video
        if old == clip_dir or not (taken and old.name in taken):
            shutil.rmtree(old)
    for tmp, folder, _ in reversed(staged):  # <clip_id>_p1 last: it marks the video done
        os.replace(tmp, folder)
    seconds = time.perf_counter() - t0
    return [dataclasses.replace(o, seconds=seconds / len(staged)) for _, _, o in staged]


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


def _read_index(out: Path) -> list[dict[str, str]]:
    path = out / "clips.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _same_file(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


class _OtherVideos(Mapping[str, str]):
    """Clip id -> video, for the clip ids that belong to videos other than ``video`` (``owners``: every known clip
    id's video). Looked up one id at a time, resolving each path once (``cache``): building the whole mapping for
    every video made preprocessing a folder quadratic (2,045 photos: ~4 million path resolutions)."""

    def __init__(self, owners: dict[str, str], video: Path, cache: dict[str, Path]) -> None:
        self.owners, self.cache = owners, cache
        self.video = self._resolve(str(video))

    def _resolve(self, v: str) -> Path:
        if v not in self.cache:
            self.cache[v] = Path(v).resolve()
        return self.cache[v]

    def __getitem__(self, cid: str) -> str:
        v = self.owners[cid]
        if self._resolve(v) == self.video:
            raise KeyError(cid)
        return v

    def __iter__(self) -> Iterator[str]:
        return (cid for cid, v in self.owners.items() if self._resolve(v) != self.video)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _write_index(out: Path, outcomes: list[ClipOutcome]) -> None:
    """Merge this run's outcomes into ``DIR/clips.csv`` (one row per clip id, the latest run wins; the rows of a
    video redone in this run are replaced by its new ones, so a video now split into people leaves no stale row)."""
    path = out / "clips.csv"
    fields = [f.name for f in dataclasses.fields(ClipOutcome)]
    redone = {str(Path(o.video).resolve()) for o in outcomes if o.status != "skipped"}
    rows = {r["clip_id"]: r for r in _read_index(out) if str(Path(r["video"]).resolve()) not in redone}
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
                   help="frames a tracked face may be missing inside its track (default 10); a longer loss ends "
                        "the track (the face is re-identified when it comes back near where it left within 2 s)")
    p.add_argument("--faces", default="all",
                   help="which faces of a video become clips: all (default; one clip per person), largest (one "
                        "face at a time, the largest when acquired), N (at most N at once, the largest), or legacy "
                        "(the single-face rule of trees made before --faces existed)")
    p.add_argument("--detect_every", type=int, default=1,
                   help="run the face detector on every K-th frame only (every frame while a face is new or lost) "
                        "and interpolate the boxes between; default 1 (every frame)")
    p.add_argument("--frame_cap", type=int, default=None,
                   help="write at most N face frames per clip, uniformly spaced (default: all)")
    p.add_argument("--frames_subdir", default=None,
                   help="clip folder root inside --out (default: Clip/clip_224x224, DFEWSource's default)")
    p.add_argument("--overwrite", action="store_true", help="redo videos whose clip folders already exist")
    p.add_argument("--labels", default=None,
                   help="CSV with header video,label[,subject] (video: file name, stem or path): written into "
                        "DIR/manifest.csv, the training list for ManifestSource; a video's label (and subject) go "
                        "to every person clip of it. Without it the manifest's label column is left empty for you "
                        "to fill in")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = TrackConfig(margin=args.margin, size=args.size, min_confidence=args.min_confidence, snap=args.snap,
                          detector=args.detector, min_hits=args.min_hits, max_lost=args.max_lost, faces=args.faces,
                          detect_every=args.detect_every)
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
          f"(crop {cfg.size}px, margin {cfg.margin}, detector {cfg.detector}, min_confidence {cfg.min_confidence}, "
          f"faces {cfg.faces}" + (f", detection every {cfg.detect_every} frames" if cfg.detect_every > 1 else "") + ")")
    outcomes: list[ClipOutcome] = []
    owners = {r["clip_id"]: r["video"] for r in _read_index(out)}
    known = {**owners, **{ids[w]: str(w) for w in videos}}  # every clip id's video; this run's ids win
    resolved: dict[str, Path] = {}
    unit = "photo" if n_photos == len(videos) else "video" if not n_photos else "file"
    # MediaPipe's C++ log (TensorFlow Lite's delegate line, feedback-manager warnings) goes to DIR/native_stderr.log;
    # progress and fer_zoo's messages still reach the terminal (fer_zoo.native_stderr).
    with native_stderr_to(out / NATIVE_LOG), Progress("preprocess", total=len(videos), unit=unit) as bar:
        detector = FaceDetector(cfg)
        try:
            for video in videos:
                clip_dir = frames_root / ids[video]
                if bar.tty:  # the file being worked on, on the bar (a plain line would name it after the fact)
                    bar.set_postfix(video.name)
                taken = _OtherVideos(known, video, resolved)
                if video_done(frames_root, ids[video], taken) and not args.overwrite:
                    outcomes.append(ClipOutcome(ids[video], str(video), "skipped", reason="already done"))
                    bar.update()
                    continue
                done = preprocess_video(video, clip_dir, cfg, args.frame_cap, detector=detector, taken=taken)
                outcomes.extend(done)
                for cid, v in ((o.clip_id, o.video) for o in done if o.status != "failed"):
                    owners[cid] = v
                    known[cid] = v
                if done[0].status == "failed":
                    bar.write(f"FAILED {video}: {done[0].reason}")
                elif done[0].status == "no_face":
                    bar.write(f"no face found in {video} ({done[0].frames} frames); {clip_dir} holds only boxes.csv")
                elif len(done) > 1:
                    bar.write(f"{video}: {len(done)} people -> {', '.join(o.clip_id for o in done)}")
                bar.update()
        finally:
            detector.close()
    _write_index(out, outcomes)
    status = _report(outcomes, frames_root)
    index = _read_index(out)
    by_video = {str(v.resolve()): ids[v] for v in videos}
    clip_labels = {r["clip_id"]: labels[by_video[str(Path(r["video"]).resolve())]] for r in index
                   if by_video.get(str(Path(r["video"]).resolve())) in labels}  # every person clip of a video
    clip_labels.update({cid: row for cid, row in labels.items() if cid not in clip_labels})
    try:
        summary = write_manifest(out, subdir, index, clip_labels)
    except InputError as err:
        print(f"preprocess: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print_summary(summary, bool(args.labels), unmatched)
    print(f"MediaPipe's C++ log (native stderr): {out / NATIVE_LOG}")
    _exit_note(status)
    return status


def _report(outcomes: list[ClipOutcome], frames_root: Path) -> int:
    by = {s: [o for o in outcomes if o.status == s] for s in ("ok", "no_face", "failed", "skipped")}
    per_video = {o.video: o.frames for o in outcomes if o.status != "skipped"}  # a video's clips share its frames
    frames = sum(per_video.values())
    faces = sum(o.face_frames for o in outcomes)
    people = sum(1 for o in by["ok"] if o.person != "")
    secs = sum(o.seconds for o in outcomes)
    print(f"\npreprocess summary: {len(by['ok'])} ok, {len(by['no_face'])} no face, {len(by['failed'])} failed, "
          f"{len(by['skipped'])} skipped (already done) -> {frames_root}")
    if frames:
        print(f"  {frames} frames of {len(per_video)} videos/photos, {people} people tracked, {faces} frames with "
              f"a tracked face (summed over people), {sum(o.written for o in outcomes)} images written, "
              f"{frames / max(secs, 1e-9):.0f} frames/s")
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
