"""Per-clip provenance (issue 17): what a no-op extraction rerun costs, before provenance and now, in one run.

Part 1, the plan at DFEW scale. A synthetic DFEW-size tree (``--clips`` 16000 clip folders x ``--frames`` 30 small
files, made once under ``--tree`` and kept for later runs) and a packed store of those clips (one tiny feature row
each, with provenance); warm page cache, steps interleaved, median of ``--repeats``:

- *plan, before provenance*: what a rerun did before clips recorded their source (a copy of that code's
  ``done_clip_ids``: clip ids and statuses read with pandas, then a set difference);
- *fingerprint*: ``clips_provenance`` over every clip (one listing and one stat per frame; shared by every
  modality of an ``extract`` run);
- *plan, stored_clips*: the per-clip plan (``stored_clips`` + ``plan_rerun``), what the rerun did before the no-op
  check compared whole columns, and still does when something changed;
- *plan, now*: fingerprint + ``plan_store_rerun``, what ``extract_modality`` does before it returns with nothing to
  do (no Trainer, Lightning not imported);
- *DataModule check*: ``check_sources`` for one store over every clip (what opening a store for training adds).

The stat per frame is what makes a touched frame seen (its folder's mtime does not change), so "plan, now" cannot
reach "plan, before" at this level: the table prints the ratio.

Part 2, the whole command: ``python -m fer_zoo extract`` run again with nothing to do, wall and CPU time of the
process (imports, source listing, extractor builds, fingerprints, plans, summary), for this checkout and for each
``--checkout LABEL=PATH`` (another checkout of the project, e.g. main, or the commit before provenance:
``git archive 259c5a4 | tar -x -C /tmp/before``), each with its own stores under ``--tree``/stores (the first,
untimed run of each extracts when its store is missing):

- on the bundled sample, ``configs/extract.yaml`` (167 photos) with ``--only resnet pose facemesh`` (the commit
  before provenance has no audio extractor); about a minute to extract per checkout;
- on the synthetic tree (skip with ``--no_tree_cli``): a manifest over its ``--clips`` folders, one modality
  (:func:`tree_config`; the first run stores every clip as failed, a few minutes on 2 cores).

Each timed run must print "0 to extract" for every modality, or the benchmark stops; runs interleave across
checkouts, so load from other processes hits every one alike.

No target: the figures go into the JSON (``benchmarks/results/bench_provenance.json``) and issue 17's notes.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from _common import REPO, machine_info, median, table, write_results  # noqa: E402

NAME = "bench_provenance"
# configs/extract.yaml's modalities that every checkout since before provenance has (its audio came later)
SAMPLE_MODALITIES = ["resnet", "pose", "facemesh"]
THIS = "this checkout"


def make_tree(root: Path, clips: int, frames: int) -> list[Path]:
    """``root/clips/<00000..>/<00001..>.jpg``, 202-byte files (stat cost does not depend on their size)."""
    payload = b"\xff\xd8" + b"x" * 200
    folders = []
    for c in range(clips):
        d = root / "clips" / f"{c:05d}"
        folders.append(d)
        if (d / f"{frames:05d}.jpg").exists():
            continue
        d.mkdir(parents=True, exist_ok=True)
        for i in range(1, frames + 1):
            (d / f"{i:05d}.jpg").write_bytes(payload)
    return folders


def make_store(path: Path, folders: list[Path]) -> None:
    import numpy as np

    from datamodules.feature_store import ClipResult, ShardWriter, pack
    from datamodules.provenance import sources_provenance

    w = ShardWriter(path, {"bench": NAME}, flush_every=4096)
    for d, prov in zip(folders, sources_provenance(folders)):
        w.add(ClipResult(d.name, np.zeros((1, 4), np.float32), np.ones(1, bool), np.zeros(1, np.int64),
                         np.zeros(1)).from_source(prov))
    w.flush()
    pack(path, [d.name for d in folders], {"dim": 4, "source": {"name": "bench"}})


def done_clip_ids_before_provenance(path: Path) -> set[str]:
    """``datamodules.feature_store.done_clip_ids`` as it was before issue 17 (commit 259c5a4), packed store part."""
    import numpy as np
    import pandas as pd

    ok: set[str] = set()
    bad: set[str] = set()
    for f in sorted((path / "shards").glob("shard-*.npz")):
        with np.load(f) as z:
            for cid, status in zip(map(str, z["clip_ids"]), z["status"]):
                (ok if status == "ok" else bad).add(cid)
    if (path / "meta.json").exists():
        idx = pd.read_parquet(path / "index.parquet", columns=["clip_id", "status"])
        ok.update(idx.clip_id[idx.status == "ok"])
        bad.update(idx.clip_id[idx.status != "ok"])
    return ok | bad


def part1(args: argparse.Namespace) -> tuple[list[list[str]], dict[str, list[float]], str]:
    from datamodules.feature_store import FeatureStore, stored_clips
    from datamodules.provenance import check_sources, clips_provenance
    from datamodules.records import ClipRecord
    from fer_zoo.extraction.plan import plan_rerun, plan_store_rerun

    t = time.perf_counter()
    folders = make_tree(args.tree, args.clips, args.frames)
    made = time.perf_counter() - t
    store_dir = args.tree / f"store-{args.clips}"
    if not (store_dir / "meta.json").exists():
        make_store(store_dir, folders)
    clips = [ClipRecord(d.name, str(d), "anger") for d in folders]
    ids = [c.clip_id for c in clips]

    def current() -> dict:
        return dict(zip(ids, clips_provenance(clips)))

    def plan_before() -> None:
        done = done_clip_ids_before_provenance(store_dir)
        assert not [c for c in clips if c.clip_id not in done]

    def fingerprint() -> None:
        current()

    now = current()

    def plan_per_clip() -> None:  # without the fingerprint (timed above), to show the comparison's own cost
        plan = plan_rerun(clips, stored_clips(store_dir), now)
        assert not plan.todo and not plan.gone

    def plan_now() -> None:
        plan = plan_store_rerun(store_dir, clips, current())
        assert not plan.todo and not plan.gone

    def datamodule_check() -> None:
        fresh = FeatureStore(store_dir)  # as a DataModule opens it: provenance read on first use
        assert check_sources({"m": fresh}, clips, args.tree) == []

    steps = {"plan, before provenance": plan_before, "fingerprint": fingerprint,
             "plan, stored_clips (no fingerprint)": plan_per_clip, "plan, now": plan_now,
             "DataModule check": datamodule_check}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for f in steps.values():  # warm-up: page cache, imports
        f()
    for _ in range(args.repeats):
        for k, f in steps.items():  # interleaved: load from other processes hits every step alike
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    base = median(times["plan, before provenance"])
    rows = [[k, f"{median(v):.3f}", " ".join(f"{x:.3f}" for x in v), f"{1e6 * median(v) / args.clips:.1f}",
             f"{median(v) / base:.1f}x"] for k, v in times.items()]
    title = (f"{args.clips} clip folders x {args.frames} frames (tree made/checked in {made:.1f} s), "
             f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; the fingerprint is shared by the "
             f"modalities of a run, the plan is per modality")
    return rows, times, table(["step", "median s", "repeats s", "us/clip", "vs before"], rows, title=title)


def _extract_once(checkout: Path, config: Path, store_root: Path, extra: list[str]) -> tuple[float, float, str]:
    """One ``python -m fer_zoo extract`` with ``checkout``'s code: (wall s, CPU s, stdout)."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "fer_zoo", "extract", "--config", str(config), "--store_root", str(store_root),
           "--trainer", "{enable_progress_bar: false}", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    run = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode not in (0, 3):  # 3: some clips failed (the synthetic tree's frames are not images)
        raise SystemExit(f"{' '.join(cmd)} (in {checkout}) failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, run.stdout


def tree_config(args: argparse.Namespace) -> Path:
    """A manifest over the synthetic tree's clip folders and an extract config of one modality (mobilenet_v2, the
    sample's offline network). Its frames are not images, so every clip is stored as failed, in seconds, and a
    rerun skips them all like finished ones: a real no-op rerun over 16k frame folders, with real stores."""
    folder = args.tree / f"cli-{args.clips}"
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["path,label", *(f"clips/{c:05d},{('anger', 'happiness')[c % 2]}" for c in range(args.clips))]
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    config = folder / "extract.yaml"
    config.write_text("source:\n  class_path: datamodules.sources.ManifestSource\n"
                      f"  init_args: {{csv: {folder / 'manifest.csv'}, root: {args.tree}}}\n"
                      "frame_cap: 64\nnum_workers: 2\nmodalities:\n  resnet: {name: mobilenet_v2}\n")
    return config


def time_no_op(args: argparse.Namespace, checkouts: dict[str, Path], what: str, config: Any, modalities: int,
               extra: list[str]) -> tuple[dict[str, dict[str, list[float]]], str]:
    """Time ``extract`` rerun with nothing to do, per checkout (``config(checkout)``: its config file)."""
    roots = {k: args.tree / "stores" / re.sub(r"\W+", "_", what) / re.sub(r"\W+", "_", k) for k in checkouts}
    for k, path in checkouts.items():  # untimed: extracts where the store is missing, warms the page cache
        _extract_once(path, config(path), roots[k], extra)
    out: dict[str, dict[str, list[float]]] = {k: {"wall_s": [], "cpu_s": []} for k in checkouts}
    for _ in range(args.cli_repeats):
        for k, path in checkouts.items():  # interleaved: load from other processes hits every checkout alike
            wall, cpu, stdout = _extract_once(path, config(path), roots[k], extra)
            todo = re.findall(r"(\d+) to extract", stdout)
            if len(todo) != modalities or any(n != "0" for n in todo):
                raise SystemExit(f"{k}: the rerun was not a no-op ({todo} to extract):\n{stdout[-2000:]}")
            out[k]["wall_s"].append(wall)
            out[k]["cpu_s"].append(cpu)
    base = median(out[THIS]["cpu_s"])
    rows = [[k, f"{median(v['wall_s']):.2f}", " ".join(f"{x:.2f}" for x in v["wall_s"]), f"{median(v['cpu_s']):.2f}",
             " ".join(f"{x:.2f}" for x in v["cpu_s"]), f"{median(v['cpu_s']) / base:.2f}"] for k, v in out.items()]
    title = (f"`python -m fer_zoo extract` again with nothing to do: {what}, modalities: {modalities}; "
             f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return out, table(["code", "wall s (median)", "wall s", "CPU s (median)", "CPU s", "CPU vs this"], rows,
                      title=title)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", type=Path, default=Path(tempfile.gettempdir()) / "fer_zoo_bench_provenance")
    p.add_argument("--clips", type=int, default=int(os.environ.get("FER_ZOO_BENCH_CLIPS", 16000)))
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--checkout", action="append", default=[], metavar="LABEL=PATH",
                   help="another fer_zoo checkout whose `extract` no-op rerun is timed beside this one's (repeatable)")
    p.add_argument("--cli_repeats", type=int, default=3, help="timed no-op `extract` runs per checkout (0: skip)")
    p.add_argument("--no_tree_cli", action="store_true", help="time the whole command on the sample only")
    args = p.parse_args(argv)
    if os.environ.get("FER_ZOO_BENCH_QUICK"):
        args.clips, args.repeats, args.cli_repeats = min(args.clips, 500), 1, min(args.cli_repeats, 1)

    checkouts = {THIS: REPO}
    for spec in args.checkout:
        label, _, path = spec.partition("=")
        if not path or not (Path(path) / "fer_zoo").is_dir():
            raise SystemExit(f"--checkout {spec!r}: expected LABEL=PATH of a fer_zoo checkout")
        checkouts[label] = Path(path).resolve()

    info = machine_info()
    rows, times, text = part1(args)
    print(text)
    cli: dict[str, dict[str, dict[str, list[float]]]] = {}
    if args.cli_repeats > 0:
        scenarios = {"sample": (lambda c: c / "configs" / "extract.yaml", len(SAMPLE_MODALITIES),
                                ["--only", *SAMPLE_MODALITIES])}
        if not args.no_tree_cli:
            tree_cfg = tree_config(args)
            scenarios[f"{args.clips} frame folders"] = (lambda c: tree_cfg, 1, [])
        for what, (config, mods, extra) in scenarios.items():
            cli[what], text = time_no_op(args, checkouts, what, config, mods, extra)
            print()
            print(text)
    write_results(NAME, {"machine": info, "clips": args.clips, "frames": args.frames, "times_s": times,
                         "cli_no_op": cli, "load_after": os.getloadavg()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
