"""``python -m fer_zoo predict-video INPUT... --ckpt RUN``: emotions of every person, frame by frame, in videos,
cameras and streams.

INPUT: video files, folders of videos (searched recursively), a camera (``0``, ``/dev/video0``) or a stream URL
(``rtsp://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``tcp://``, ``srt://``). Each goes through one streaming pass
(:mod:`fer_zoo.video.pipeline`): decode, detect and track every face (``--faces``), crop each as ``preprocess``
does, run exactly the extractors the run was trained with, score windows of ``--window`` frames every ``--stride``
frames per person, and give every frame of every person the mean of the probabilities of the windows covering it.
Memory does not grow with the video's length.

Written to ``--out`` (default ``predictions/``):

- ``predictions.csv``: one tidy table for all inputs of the call, one row per ``--per`` unit:
  ``frame`` (default; ``video, person, frame, time, valid, windows, <class probabilities>, top_class, top_prob``),
  ``second`` (the mean over the person's frames in each second of video) or ``window`` (each window's own output).
  See :mod:`fer_zoo.perframe.outputs` for every column.
- per input, ``<out>/<video>/``: ``predictions.csv`` (that input's rows), ``seconds.csv`` (per person and second,
  always), ``boxes.csv`` (per person and frame: the tracked face box, or why there is none), ``predictions.json``
  (the run, checkpoint, extractors, crop settings, windows, the people found, seconds of compute per stage, status)
  and ``timeline.png`` (per person: class probabilities per second and the top class).
- ``summary.json``: one entry per input with its status.

Live inputs (cameras, streams) print one line per person and second as soon as it is final, with its latency: how
long after the stream showed the second's last frame the line comes (the stream's own clock, anchored at the frame
that arrived earliest for its time, so a backlog of frames waiting to be decoded counts too), and append to the
CSVs as they go; Ctrl-C stops and keeps everything written.

Crops and models: the crop settings default to those the run's training crops were made with (its tree's
``preprocess.json`` or the stores' ``face_crops`` record); where the model learned from other pixels (whole photos,
other crop settings) a ``WARNING: crop mismatch`` says so and ``--crop_mismatch error`` refuses. MediaPipe's C++
log goes to ``<out>/native_stderr.log``.

Exit status: 0 every input has predictions; 2 nothing could start (a path that does not exist, a file that is not
a video, a camera that does not exist, a stream that cannot be opened, a bad checkpoint, an extractor that cannot
be built here); 3 at least one input failed part way (recorded in ``summary.json``, the others go on); 4 none
failed but some input had no face (``"status": "no_face"``) or no window the model could score.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.frames import ClipReadError
from fer_zoo.native_stderr import native_stderr_to
from fer_zoo.perframe.outputs import PER, OutputLayout, SecondBinner, TidyCsv
from fer_zoo.video.face_track import CSV_COLUMNS, FaceDetector, InputError
from fer_zoo.video.pipeline import Scorer, VideoPipeline, VideoStats
from fer_zoo.video.run_info import (
    PredictError,
    RunInfo,
    build_extractors,
    load_model,
    resolve_run,
)

EXIT_OK, EXIT_USAGE, EXIT_FAILED, EXIT_NO_FACE = 0, 2, 3, 4
NATIVE_LOG = "native_stderr.log"  # in --out: MediaPipe's C++ log and tracebacks of inputs that failed
CROP_NOTE = ("features computed on the tracked face crops (square, margin, resized), the same crops `preprocess` "
             "writes; the model learned from the features of its training clips")
BOX_COLUMNS = ["video", "person", *CSV_COLUMNS[:-2], "interpolated", "reason"]
PLOT_FRAMES = 6000  # up to this many person-frames the timeline is drawn frame by frame, beyond it per second


@dataclass
class VideoResult:
    label: str
    source: str
    out_dir: Path
    status: str  # ok | no_face | no_valid_frames | failed
    message: str = ""
    seconds: float = 0.0
    people: int = 0
    frames: int = 0
    rows: int = 0


@dataclass
class TableSink:
    """Rows of one input -> its tables (and the run-wide one), per-second rows, the live printout."""

    label: str
    out_dir: Path
    layout: OutputLayout
    per: str
    run_table: TidyCsv
    live: bool = False
    tables: dict[str, TidyCsv] = field(default_factory=dict)
    binners: dict[int, SecondBinner] = field(default_factory=dict)
    seconds: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    points: dict[int, list[dict[str, Any]]] | None = field(default_factory=dict)  # per-frame plot points, if few
    clock: float | None = None  # min(arrival - frame time): when the stream showed time 0, on the monotonic clock
    latencies: list[float] = field(default_factory=list)
    answered: int = 0

    NAMES = {"main": "predictions.csv", "second": "seconds.csv", "boxes": "boxes.csv"}

    def __post_init__(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # A file's rows are not trusted until the whole file decoded (a truncated video is only known at its end):
        # they go to <name>.part and are renamed, and added to the run's table, by finish(ok=True). A live input's
        # rows are final as they come.
        suffix = "" if self.live else ".part"
        headers = {"main": self.layout.header(self.per), "second": self.layout.header("second"), "boxes": BOX_COLUMNS}
        for key, name in self.NAMES.items():
            self.tables[key] = TidyCsv(self.out_dir / (name + suffix), headers[key])

    def _emit(self, per: str, rows: list[dict[str, Any]]) -> None:
        if per == self.per:
            self.tables["main"].write(rows)
            if self.live:
                self.run_table.write(rows)
        if per == "second":
            self.tables["second"].write(rows)

    def finish(self, ok: bool) -> None:
        """Close the tables. A file input's ``.part`` tables become the real ones and its rows join the run's table
        when ``ok``; otherwise they are kept as ``*.partial.csv`` (the rows before the failure, never trusted as a
        result) and left out of the run's table."""
        for t in self.tables.values():
            t.close()
        if self.live:
            return
        for name in self.NAMES.values():
            part = self.out_dir / (name + ".part")
            if ok:
                part.replace(self.out_dir / name)
            else:
                part.replace(self.out_dir / name.replace(".csv", ".partial.csv"))
        if ok:
            with open(self.out_dir / self.NAMES["main"], newline="") as f:
                import csv

                reader = csv.DictReader(f)
                batch: list[dict[str, Any]] = []
                for row in reader:
                    batch.append(row)
                    if len(batch) >= 10_000:
                        self.run_table.write(batch)
                        batch = []
                self.run_table.write(batch)

    def decisions(self, rows: list[dict[str, Any]]) -> None:
        self.tables["boxes"].write({"video": self.label, **r} for r in rows)

    def frames(self, scorer: str, person: int, rows: list[dict[str, Any]]) -> None:
        out = []
        binner = self.binners.setdefault(person, SecondBinner(self.layout.width))
        done = []
        for r in rows:
            vec = r["vec"] if r["windows"] else None
            self.answered += int(vec is not None)
            out.append({"video": self.label, "person": person, "frame": r["frame"], "time": r["time"],
                        "valid": int(r["valid"]), "windows": r["windows"], **self.layout.cells(vec)})
            done.extend(binner.add(r["time"], r["valid"], vec))
            lead = r["arrived"] - r["time"]
            self.clock = lead if self.clock is None else min(self.clock, lead)
            if self.points is not None:  # short videos plot frame by frame; long ones per second (flat memory)
                pts = self.points.setdefault(person, [])
                if pts and not pts[-1].get("ended"):  # a frame spans to the next frame of the same segment
                    pts[-1]["t1"] = r["time"] if r["time"] > pts[-1]["t0"] else pts[-1]["t1"]
                pts.append({"t0": r["time"], "t1": r["time"], "valid": r["valid"], "mean": vec})
                if sum(len(v) for v in self.points.values()) > PLOT_FRAMES:
                    self.points = None
        self._emit("frame", out)
        self._seconds(person, done)

    def windows(self, scorer: str, person: int, rows: list[dict[str, Any]]) -> None:
        self._emit("window", [{"video": self.label, "person": person,
                               **{k: v for k, v in r.items() if k != "vec"}, **self.layout.cells(r["vec"])}
                              for r in rows])

    def person_ended(self, person: int) -> None:
        """A segment of the person ended; the person may come back (re-identified). Their current second stays open
        until a frame of a later second (of any segment) or the end of the video, so (video, person, second) stays
        one row; the timeline does not draw across the gap."""
        if self.points is not None and self.points.get(person):
            self.points[person][-1]["ended"] = True

    def finish_people(self) -> None:
        """End of the video: every person's last second."""
        for person, binner in self.binners.items():
            self._seconds(person, binner.flush())

    def plot_points(self) -> dict[int, list[dict[str, Any]]]:
        """What the timeline draws: every frame for short videos, else every second."""
        if self.points is not None:
            for pts in self.points.values():  # a segment's last frame spans a typical frame spacing
                spans = [q["t1"] - q["t0"] for q in pts if q["t1"] > q["t0"]]
                step = float(np.median(spans)) if spans else 0.0
                for q in pts:
                    if q["t1"] <= q["t0"]:
                        q["t1"] = q["t0"] + step
            return self.points
        return {p: [{"t0": r["second"], "t1": r["second"] + 1, "valid": r["valid_frames"] > 0, "mean": r["mean"]}
                    for r in rows] for p, rows in self.seconds.items()}

    def _seconds(self, person: int, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        self.seconds.setdefault(person, []).extend(rows)
        table = [{"video": self.label, "person": person, **{k: v for k, v in r.items() if k != "mean"},
                  **self.layout.cells(r["mean"])} for r in rows]
        self._emit("second", table)
        if self.live:
            now = time.monotonic()
            for r in table:
                lat = now - ((self.clock or now) + float(r["end_time"]))  # behind the stream's own clock
                self.latencies.append(lat)
                what = (f"{r['top_class']} {r['top_prob']:.2f}" if r.get("top_class") else "no answer")
                print(f"[{self.label}] {_clock(r['start_time'])} person {person}: {what} ({r['valid_frames']}/"
                      f"{r['frames']} frames with the face; latency {lat:.2f} s)", flush=True)


def _clock(t: float) -> str:
    t = max(0.0, float(t))
    return f"{int(t // 60):02d}:{t % 60:05.2f}"


# ---------------------------------------------------------------------------------------------------- one input


def predict_input(spec: Any, out_dir: Path, pipeline: VideoPipeline, scorer: Scorer, per: str, run_table: TidyCsv,
                  log: Any = print, timeouts: tuple[float, float] | None = None) -> VideoResult:
    """One input through the pipeline; its files written; failures recorded, never raised (but Ctrl-C)."""
    from fer_zoo.progress import Progress
    from fer_zoo.video.inputs import open_input

    t0 = time.perf_counter()
    sink = TableSink(spec.label, out_dir, scorer.layout, per, run_table, live=spec.live)
    stats: VideoStats | None = None
    message = ""
    try:
        with open_input(spec, *(timeouts or ())) as (info, frames):
            total = _frame_count(spec) if not spec.live else None
            with Progress(spec.label, total=total, unit="frame") as bar:
                stats = pipeline.process(frames, sink, live=spec.live, soundtrack=_soundtrack(spec, pipeline, log),
                                         progress=bar.update, fps=info.fps)
            sink.finish_people()
    except ClipReadError as err:  # a file that broke part way (live inputs end early instead, with stats)
        message = f"cannot read {spec.target}: {err.reason}"
    except BaseException:
        sink.finish(ok=False)
        raise
    try:
        res = _result(spec, out_dir, stats, sink, message, t0)
        if stats is not None:  # the files that say what the rows are, before the rows join the run's table
            _write_json(res, stats, sink, pipeline, scorer, per)
            from fer_zoo.video.timeline import plot_people

            plot_people(sink.plot_points(), scorer.layout, stats.duration, out_dir / "timeline.png",
                        title=spec.label, subtitle=f"model: {scorer.run.run_dir.name} ({scorer.run.ckpt.name}); "
                        f"{res.message}")
    except BaseException:
        sink.finish(ok=False)
        raise
    sink.finish(ok=stats is not None)
    res.rows = sink.tables["main"].rows
    return res


def _result(spec: Any, out_dir: Path, stats: VideoStats | None, sink: TableSink, message: str,
            t0: float) -> VideoResult:
    """Status and message of one input from what the pipeline returned (None: the file broke part way)."""
    status = "failed"
    if stats is None:
        message += f"; rows before the failure: {out_dir / 'predictions.partial.csv'} (not in the run's table)"
    elif stats.ended_early and not stats.frames:
        message = f"{spec.target}: {stats.ended_early}"
    elif not stats.people:
        status, message = "no_face", f"no face found in {spec.target}"
    elif not sink.answered:
        status, message = "no_valid_frames", (f"faces found in {spec.target}, but no window has a frame the "
                                              "extractors could use: no prediction")
    else:
        status = "ok"
        message = (f"{len(stats.people)} {'person' if len(stats.people) == 1 else 'people'}, "
                   f"{stats.frames} frames ({stats.duration:.1f} s), {sink.answered} person-frames answered")
    if stats is not None and stats.ended_early:
        status = "stopped" if stats.ended_early.startswith("stopped") else "failed"
        message = f"{message}; the input ended early: {stats.ended_early}"
    return VideoResult(spec.label, spec.target, out_dir, status, message, time.perf_counter() - t0,
                       len(stats.people) if stats else 0, stats.frames if stats else 0, sink.tables["main"].rows)


def _frame_count(spec: Any) -> int | None:
    """The container's frame count (for the progress bar's ETA), or None when it does not say."""
    import av

    try:
        with av.open(spec.target) as c:
            n = int(c.streams.video[0].frames or 0)
            return n or None
    except Exception:  # noqa: BLE001 (a progress bar without ETA is fine)
        return None


def _soundtrack(spec: Any, pipeline: VideoPipeline, log: Any) -> Any:
    """The soundtrack for audio modalities (files only; read once, ~3.8 MB per minute), else None."""
    audio = [ext for ext in pipeline.extractors.values() if ext.kind == "audio"]
    if not audio:
        return None
    if spec.live:
        log(f"  {spec.label}: audio modalities are not read from live inputs; their frames are invalid")
        return None
    from datamodules.audio import AudioReadError

    try:
        return audio[0].read_soundtrack(spec.target)
    except AudioReadError as err:
        log(f"  {spec.label}: WARNING: {err}; audio frames invalid")
        return None


def _write_json(res: VideoResult, stats: VideoStats, sink: TableSink, pipeline: VideoPipeline, scorer: Scorer,
                per: str) -> None:
    run = scorer.run
    minutes = stats.duration / 60.0
    doc = {
        "status": res.status, "message": res.message, "input": res.source, "video": res.label,
        "frames": stats.frames, "fps": stats.fps, "duration_s": stats.duration,
        "people": {str(p): v for p, v in sorted(stats.people.items())},
        "run_dir": str(run.run_dir), "checkpoint": str(run.ckpt), "class_names": list(scorer.layout.classes),
        "task": run.task, "columns": scorer.layout.columns,
        "per": per, "num_frames": run.num_frames, "window": pipeline.window, "stride": pipeline.stride,
        "per_frame": "each frame of a person: the mean of the class probabilities of the windows covering it "
                     "(windows without a valid frame give none); seconds: the mean over the person's frames with "
                     "an answer whose time falls in the second",
        "sampling": "per window: store frame_cap, then TSN eval (middle frame of each of num_frames segments)",
        "short_clips": run.short_clips,
        "modalities": {m.key: {"extractor": m.extractor, "config": m.config, "frame_cap": m.frame_cap,
                               "weights_source": m.meta.get("weights_source"), "meta_from": m.meta_from}
                       for m in run.modalities},
        "face_crops": {**pipeline.track.to_dict(), "settings_from": run.track_from, "note": CROP_NOTE,
                       "training_inputs": run.training_crops, "mismatch": run.crop_mismatch},
        "compute_seconds": {k: round(v, 3) for k, v in sorted(stats.times.seconds.items())},
        "compute_seconds_per_video_minute": ({k: round(v / minutes, 2) for k, v in sorted(stats.times.seconds.items())}
                                             if minutes > 0 else None),
        "wall_seconds": round(res.seconds, 2),
    }
    if sink.latencies:
        lat = sorted(sink.latencies)
        doc["live_latency_s"] = {"median": statistics.median(lat), "p95": lat[min(len(lat) - 1,
                                 math.ceil(0.95 * len(lat)) - 1)], "max": lat[-1], "seconds": len(lat)}
    (res.out_dir / "predictions.json").write_text(json.dumps(doc, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------------- CLI


def _faces(text: str) -> str:
    if text in ("all", "largest") or (text.isdigit() and int(text) >= 1):
        return text
    raise argparse.ArgumentTypeError(f"--faces must be all, largest or a number >= 1, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_zoo predict-video", description=__doc__.split("\n\n")[0],
                                epilog="Exit status: 0 ok, 2 cannot start (bad input, checkpoint, extractor), "
                                       "3 some input failed part way, 4 some input had no face.")
    from fer_zoo.video.inputs import INPUTS_HELP, add_input_arguments

    p.add_argument("inputs", nargs="+", help=INPUTS_HELP)
    p.add_argument("--ckpt", required=True, help="a run folder runs/<name>/ or one of its checkpoints")
    p.add_argument("--out", default="predictions", help="output folder (default: ./predictions)")
    p.add_argument("--per", choices=PER, default="frame",
                   help="rows of predictions.csv: one per frame (default), per second, or per window")
    p.add_argument("--faces", type=_faces, default=None,
                   help="whose faces: all (default), largest (one person), or a number N (at most N at once)")
    p.add_argument("--detect_every", type=int, default=None,
                   help="run the face detector every K frames, boxes in between interpolated (default 1: every "
                        "frame)")
    p.add_argument("--window", type=int, default=None, help="frames per window (default: the run's num_frames)")
    p.add_argument("--stride", type=int, default=None, help="frames between window starts (default: window // 2)")
    p.add_argument("--batch_frames", type=int, default=32, help="face crops per extractor call")
    add_input_arguments(p)
    crop = p.add_argument_group("face crops (default: the training tree's preprocess.json, else preprocess defaults)")
    crop.add_argument("--margin", type=float, default=None)
    crop.add_argument("--size", type=int, default=None)
    crop.add_argument("--min_confidence", type=float, default=None)
    crop.add_argument("--detector", choices=["short", "full"], default=None)
    crop.add_argument("--snap", type=float, default=None, help="face box grid (see preprocess --snap)")
    crop.add_argument("--crop_mismatch", choices=["warn", "error"], default="warn",
                      help="when the model was trained on inputs other than these face crops (whole photos, other "
                           "crop settings): warn and go on (default), or refuse (exit 2)")
    return p


@dataclass
class Prepared:
    run: RunInfo
    scorer: Scorer
    extractors: dict[str, Any]
    window: int
    stride: int


def prepare(args: argparse.Namespace) -> Prepared:
    """Everything that must work before any input is read; raises InputError/PredictError/ValueError (exit 2)."""
    overrides = {"margin": args.margin, "size": args.size, "min_confidence": args.min_confidence,
                 "detector": args.detector, "snap": args.snap, "faces": args.faces,
                 "detect_every": args.detect_every}
    run = resolve_run(args.ckpt, overrides)
    for key in ("window", "stride", "batch_frames", "detect_every"):
        if getattr(args, key) is not None and getattr(args, key) < 1:
            raise InputError(f"--{key} must be >= 1, got {getattr(args, key)}")
    window = args.window if args.window is not None else run.num_frames
    stride = args.stride if args.stride is not None else max(1, window // 2)
    if stride > window:  # frames between two windows would get no answer at all
        raise InputError(f"--stride {stride} is longer than --window {window}: the frames between windows would get "
                         "no answer; use a stride <= the window")
    if run.task == "dense" and window > run.num_frames:
        raise InputError(f"--window {window}: this per-frame model takes windows of at most {run.num_frames} frames "
                         "(its training window)")
    if run.crop_mismatch and args.crop_mismatch == "error":
        raise PredictError("the model was not trained on the face crops it would be given here (--crop_mismatch "
                           "error):\n  " + "\n  ".join(run.crop_mismatch))
    model = load_model(run)
    extractors = build_extractors(run, model)
    return Prepared(run, Scorer("model", run, model), extractors, window, stride)


def main(argv: list[str] | None = None) -> int:
    from fer_zoo.video.inputs import parse_inputs

    args = build_parser().parse_args(argv)
    try:
        specs = parse_inputs(args.inputs)
        prep = prepare(args)
    except (InputError, PredictError, ValueError) as err:
        print(f"predict-video: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    run = prep.run
    print(f"predict-video: {len(specs)} input(s), checkpoint {run.ckpt}\n  modalities: "
          + ", ".join(f"{m.key}={m.extractor}" for m in run.modalities)
          + f"; crops: {run.track.size}px margin {run.track.margin} ({run.track_from}); faces: {run.track.faces}; "
          f"window {prep.window} frames, stride {prep.stride}; rows per {args.per}")
    for why in run.crop_mismatch:
        print(f"WARNING: crop mismatch: {why}", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[VideoResult] = []
    layout = prep.scorer.layout
    run_table = TidyCsv(out / "predictions.csv", layout.header(args.per))
    try:
        with native_stderr_to(out / NATIVE_LOG):
            detector = FaceDetector(run.track)
            pipeline = VideoPipeline([prep.scorer], prep.extractors, run.track, prep.window, prep.stride,
                                     detector=detector, batch_frames=args.batch_frames)
            try:
                for spec in specs:
                    res = _predict_or_record(spec, out / spec.label, pipeline, prep.scorer, args.per, run_table,
                                             (args.open_timeout, args.read_timeout))
                    results.append(res)
                    print(f"  {spec.label} -> {res.status}: {res.message} ({res.seconds:.1f}s)"
                          + (f" -> {res.out_dir}" if res.status != "failed" else ""), flush=True)
            finally:
                detector.close()
    except InputError as err:  # a camera or stream that cannot be opened: nothing could start for it
        print(f"predict-video: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        run_table.close()
    print(f"  all rows: {out / 'predictions.csv'} ({run_table.rows} rows, one per {args.per})")
    return _summary(results, out)


def _predict_or_record(spec: Any, out_dir: Path, pipeline: VideoPipeline, scorer: Scorer, per: str,
                       run_table: TidyCsv, timeouts: tuple[float, float] | None = None) -> VideoResult:
    """:func:`predict_input`, with any failure of this one input recorded (status "failed", the reason) so the batch
    goes on, as ``extract`` and ``preprocess`` do. A live input that cannot be opened stops the call (exit 2)."""
    t0 = time.perf_counter()
    try:
        return predict_input(spec, out_dir, pipeline, scorer, per, run_table, timeouts=timeouts)
    except InputError:
        raise
    except ClipReadError as err:
        return VideoResult(spec.label, spec.target, out_dir, "failed", f"cannot read {spec.target}: {err.reason}",
                           seconds=time.perf_counter() - t0)
    except Exception as err:  # noqa: BLE001  (one input's failure must not cost the others their predictions)
        import os
        import traceback

        os.write(2, f"{spec.target}:\n{traceback.format_exc()}".encode())  # fd 2 is the native log here
        return VideoResult(spec.label, spec.target, out_dir, "failed", f"error while predicting {spec.target}: "
                           f"{type(err).__name__}: {err} (traceback in {NATIVE_LOG})",
                           seconds=time.perf_counter() - t0)


def _summary(results: list[VideoResult], out: Path) -> int:
    summary = [{"video": r.label, "input": r.source, "status": r.status, "message": r.message,
                "out_dir": str(r.out_dir) if r.out_dir.is_dir() else None, "people": r.people, "frames": r.frames,
                "seconds": round(r.seconds, 2)} for r in results]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    failed = [r for r in results if r.status == "failed"]
    empty = [r for r in results if r.status in ("no_face", "no_valid_frames")]
    for r in failed:
        print(f"FAILED {r.source}: {r.message}", file=sys.stderr)
    for r in empty:
        print(f"{r.message}", file=sys.stderr)
    if failed:
        return EXIT_FAILED
    return EXIT_NO_FACE if empty else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
