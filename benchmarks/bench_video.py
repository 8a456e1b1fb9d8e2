#!/usr/bin/env python
"""predict-video on long videos: seconds of compute per minute of video per stage, peak memory at 1 and 30 minutes,
live latency, and whether the answers moved, against the previous code in the same run (issue 26).

Videos: the shared real ``WolfgangLanger_Pexels.mp4`` (one talking face, 640x360) looped and re-encoded at 25 fps
(H.264) to ``--minutes`` lengths (default 1 and 30), built once into ``--root``. Model: a run of the quick path
(``--run``, default the newest ``runs/demo-*``; ``make demo`` trains one), so its extractors are the demo's.

- **Speed**: each video through ``python -m fer_zoo predict-video`` in its own process (one at a time, nothing else
  of ours running); seconds of compute per minute of video for each stage (decode, detect, track+crop, each
  extractor, model; stages overlap on 2 cores, so they may sum to more than the wall time) from its
  ``predictions.json``, and the wall time per minute of video. Faster than real time means wall < 60 s per minute.
- **Previous code**: the same 1-minute video through the predict-video of ``--base`` (default ``87b7d65``, this
  round's starting point) checked out with ``git worktree`` into a temporary folder: its wall time and peak memory.
  Not at 30 minutes: it held every frame's crop and features (0.35 MB per frame measured, ~16 GB at 30 min).
- **Memory**: peak resident set size of each process (``getrusage`` of the child).
- **Live**: the 1-minute video served on loopback as a real-time MPEG-TS stream (``tests/stream_server.py``) and
  read by predict-video: median / 95th percentile / max latency from the arrival of a second's last frame to its
  printed line.
- **Answers**: per-window probabilities of the new code (``--per window``) against the previous code's windows on
  the shared videos (the same windows, crops and extractors: they must agree to float rounding), and the per-frame
  top class with ``--detect_every 3`` against detection on every frame.

``--quick`` (or ``FER_ZOO_BENCH_QUICK=1``): 0.5 and 2 minutes, no live part.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _common import REPO, machine_info, print_machine, table, target_line, write_results  # noqa: E402

VIDEOS = Path(os.environ.get("FER_ZOO_SHARED_DATA", REPO.parent / "shared" / "data")) / "face-videos"
SOURCE = VIDEOS / "WolfgangLanger_Pexels.mp4"
BASE = "87b7d65"


def build_video(minutes: float, out: Path, fps: int = 25) -> Path:
    """``SOURCE`` looped to ``minutes`` of video at ``fps`` (H.264, ultrafast), written once."""
    import av
    import numpy as np

    if out.is_file():
        return out
    from fer_zoo.video.face_track import open_video

    with open_video(SOURCE) as (_, it):
        frames = [rgb for _, _, rgb in it]
    n = int(round(minutes * 60 * fps))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.options = {"crf": "23", "preset": "ultrafast"}
        for i in range(n):
            k = i % (2 * len(frames) - 2)  # forwards then backwards: no jump cut at the loop
            rgb = frames[k] if k < len(frames) else frames[2 * len(frames) - 2 - k]
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    tmp.rename(out)
    return out


def run_predict(cwd: Path, args: list[str], log: Path) -> dict[str, Any]:
    """``python -m fer_zoo predict-video <args>`` in ``cwd`` (its own code): wall seconds, peak RSS (MiB), exit."""
    env = {**os.environ, "PYTHONPATH": str(cwd), "WANDB_MODE": "offline"}
    t0 = time.perf_counter()
    with open(log, "ab") as f:
        proc = subprocess.Popen([sys.executable, "-m", "fer_zoo", "predict-video", *args], cwd=cwd, env=env,
                                stdout=f, stderr=f)
        _, status, usage = os.wait4(proc.pid, 0)
    return {"wall_s": time.perf_counter() - t0, "rss_mib": usage.ru_maxrss / 1024.0,
            "exit": os.waitstatus_to_exitcode(status)}


def worktree(commit: str, where: Path) -> Path:
    subprocess.run(["git", "worktree", "add", "--detach", str(where), commit], cwd=REPO, check=True,
                   capture_output=True)
    return where


def windows_of(path: Path, classes: list[str]) -> dict[tuple[int, int], list[float]]:
    with open(path, newline="") as f:
        return {(int(r["start_frame"]), int(r["end_frame"])): [float(r[c]) for c in classes]
                for r in csv.DictReader(f) if r[classes[0]] != ""}


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", default=os.environ.get("FER_ZOO_BENCH_QUICK") == "1")
    p.add_argument("--minutes", type=float, nargs="+", default=[1.0, 30.0])
    p.add_argument("--run", type=Path, default=None, help="the run to predict with (default: newest runs/demo-*)")
    p.add_argument("--base", default=BASE, help="the previous code: a commit of this repository")
    p.add_argument("--root", type=Path, default=REPO / "features" / "bench-video")
    p.add_argument("--no-live", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.minutes, args.no_live = [0.5, 2.0], True
    if not SOURCE.is_file():
        print(f"SKIP: {SOURCE} is absent (the shared face videos)")
        return 0
    runs = sorted((REPO / "runs").glob("demo-*"), key=lambda d: d.stat().st_mtime)
    run = (args.run or (runs[-1] if runs else None))
    if run is None:
        print("SKIP: no run to predict with (run `make demo` first, or pass --run)")
        return 0
    run = run.resolve()
    info = machine_info()
    print_machine(info)
    args.root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_video-"))
    log = work / "log.txt"
    print(f"run: {run}; log of the predict-video calls: {log}", flush=True)
    videos = {m: build_video(m, args.root / f"talking_{m:g}min.mp4") for m in args.minutes}
    result: dict[str, Any] = {"machine": info, "run": str(run), "base": args.base, "videos": {}}
    rows, targets = [], []
    for m, video in videos.items():
        out = work / f"new_{m:g}"
        r = run_predict(REPO, [str(video), "--ckpt", str(run), "--out", str(out)], log)
        doc = json.loads((out / video.stem / "predictions.json").read_text())
        per_min = doc["compute_seconds_per_video_minute"]
        r.update({"stages_s_per_min": per_min, "wall_s_per_min": r["wall_s"] / m, "frames": doc["frames"]})
        result["videos"][f"new_{m:g}min"] = r
        rows.append([f"new, {m:g} min", doc["frames"], f"{r['wall_s_per_min']:.1f}", f"{r['rss_mib']:.0f}",
                     ", ".join(f"{k} {v:.1f}" for k, v in sorted(per_min.items()))])
        print(f"  new code, {m:g} min: {r['wall_s_per_min']:.1f} s per video minute, peak RSS {r['rss_mib']:.0f} MiB",
              flush=True)
    small = min(videos)
    with tempfile.TemporaryDirectory(prefix="bench_video-base-") as tmp:
        base_tree = worktree(args.base, Path(tmp) / "base")
        try:
            out = work / "old"
            r = run_predict(base_tree, [str(videos[small]), "--ckpt", str(run), "--out", str(out)], log)
            r["wall_s_per_min"] = r["wall_s"] / small
            result["videos"][f"old_{small:g}min"] = r
            rows.append([f"previous ({args.base}), {small:g} min", "", f"{r['wall_s_per_min']:.1f}",
                         f"{r['rss_mib']:.0f}", "(not recorded per stage by that code)"])
            # Answers: the same windows on the shared videos, old and new
            diffs, agree = [], []
            for name in ("single_face.mp4", "WolfgangLanger_Pexels.mp4"):
                old_out, new_out = work / "ans_old", work / "ans_new"
                run_predict(base_tree, [str(VIDEOS / name), "--ckpt", str(run), "--out", str(old_out)], log)
                run_predict(REPO, [str(VIDEOS / name), "--ckpt", str(run), "--out", str(new_out), "--per",
                                   "window"], log)
                classes = json.loads((new_out / Path(name).stem / "predictions.json").read_text())["class_names"]
                a = windows_of(old_out / Path(name).stem / "predictions.csv", classes)
                b = windows_of(new_out / Path(name).stem / "predictions.csv", classes)
                common = sorted(set(a) & set(b))
                diffs.append(max(float(np.max(np.abs(np.array(a[w]) - np.array(b[w])))) for w in common))
                agree.append(np.mean([np.argmax(a[w]) == np.argmax(b[w]) for w in common]))
                print(f"  {name}: {len(common)} windows in both (old {len(a)}, new {len(b)}); max |p_old - p_new| "
                      f"{diffs[-1]:.2e}; same top class {100 * agree[-1]:.1f} %", flush=True)
            result["answers_vs_previous"] = {"max_abs_prob_diff": max(diffs), "top_class_agreement": min(agree)}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=REPO, capture_output=True)
    # detect_every 3 against every frame, per frame
    ref, k3 = work / "k1", work / "k3"
    run_predict(REPO, [str(SOURCE), "--ckpt", str(run), "--out", str(ref)], log)
    r3 = run_predict(REPO, [str(SOURCE), "--ckpt", str(run), "--out", str(k3), "--detect_every", "3"], log)
    with open(ref / "predictions.csv") as f1, open(k3 / "predictions.csv") as f2:
        t1 = {(r["person"], r["frame"]): r["top_class"] for r in csv.DictReader(f1)}
        t3 = {(r["person"], r["frame"]): r["top_class"] for r in csv.DictReader(f2)}
    both = [k for k in t1 if k in t3 and t1[k] and t3[k]]
    same = float(np.mean([t1[k] == t3[k] for k in both])) if both else float("nan")
    result["detect_every_3"] = {"frames_compared": len(both), "top_class_agreement": same, "wall_s": r3["wall_s"]}
    print(f"  --detect_every 3 vs 1 on {SOURCE.name}: same per-frame top class on {100 * same:.1f} % of "
          f"{len(both)} frames", flush=True)
    if not args.no_live:
        video = videos[small]
        server = subprocess.Popen([sys.executable, str(REPO / "tests" / "stream_server.py"), str(video)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline() if server.stdout else ""
            url = f"tcp://127.0.0.1:{int(line.split()[1])}"
            out = work / "live"
            r = run_predict(REPO, [url, "--ckpt", str(run), "--out", str(out)], log)
            docs = list(out.glob("*/predictions.json"))
            lat = json.loads(docs[0].read_text()).get("live_latency_s") if docs else None
            result["live"] = {**r, "latency_s": lat}
            if lat:
                print(f"  live ({small:g} min stream on loopback): latency median {lat['median']:.2f} s, p95 "
                      f"{lat['p95']:.2f} s, max {lat['max']:.2f} s over {lat['seconds']} seconds", flush=True)
        finally:
            server.kill()
            server.wait(timeout=10)
    print(table(["what", "frames", "wall s / video min", "peak RSS MiB", "compute s / video min by stage"], rows,
                title="predict-video, seconds per minute of 25 fps video (2 CPU cores)"))
    new = [v for k, v in result["videos"].items() if k.startswith("new_")]
    targets.append(target_line("faster than real time (wall s per video minute, longest video)",
                               60.0 - new[-1]["wall_s_per_min"], 0.0, " s below 60"))
    if len(new) > 1:
        targets.append(target_line(f"flat memory: peak RSS at {max(videos):g} min minus at {min(videos):g} min",
                                   100.0 - (new[-1]["rss_mib"] - new[0]["rss_mib"]), 0.0, " MiB below 100"))
    result["targets"] = targets
    write_results("bench_video", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
