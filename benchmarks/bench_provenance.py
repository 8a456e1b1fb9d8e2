"""Per-clip provenance at DFEW scale: what a no-op extraction rerun and the DataModule's source check cost.

A synthetic DFEW-size tree (``--clips`` 16000 clip folders x ``--frames`` 30 small files, made once under
``--tree``, kept for later runs) and a packed store of those clips (one tiny feature row each, with provenance) are
measured, warm page cache, median of ``--repeats``:

- *fingerprint*: ``sources_provenance`` over every clip (listing + one stat per frame);
- *plan, before issue 17*: ``done_clip_ids`` and a set difference, what a rerun did before clips recorded sources;
- *plan, now*: ``stored_clips`` + fingerprints + ``plan_rerun`` (what ``extract_modality`` does before it decides
  that nothing is to be done and returns without a Trainer);
- *DataModule check*: ``check_sources`` for one store over every clip (what opening a store for training adds).

No target: the figures go into the JSON and the notes of issue 17. The whole CLI rerun (imports, extractor builds,
Trainer) is compared in those notes by running ``python -m fer_zoo extract`` before and after the change.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from _common import machine_info, median, table, write_results  # noqa: E402

NAME = "bench_provenance"


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", type=Path, default=Path(tempfile.gettempdir()) / "fer_zoo_bench_provenance")
    p.add_argument("--clips", type=int, default=int(os.environ.get("FER_ZOO_BENCH_CLIPS", 16000)))
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if os.environ.get("FER_ZOO_BENCH_QUICK"):
        args.clips, args.repeats = min(args.clips, 500), 1

    from datamodules.feature_store import FeatureStore, done_clip_ids, stored_clips
    from datamodules.provenance import check_sources, sources_provenance
    from datamodules.records import ClipRecord
    from fer_zoo.extraction.plan import plan_rerun

    info = machine_info()
    t = time.perf_counter()
    folders = make_tree(args.tree, args.clips, args.frames)
    made = time.perf_counter() - t
    store_dir = args.tree / f"store-{args.clips}"
    if not (store_dir / "meta.json").exists():
        make_store(store_dir, folders)
    clips = [ClipRecord(d.name, str(d), "anger") for d in folders]
    store = FeatureStore(store_dir)

    def fingerprint() -> None:
        sources_provenance(c.path for c in clips)

    def plan_before() -> None:
        done = done_clip_ids(store_dir)
        todo = [c for c in clips if c.clip_id not in done]
        assert not todo

    def plan_now() -> None:
        current = dict(zip([c.clip_id for c in clips], sources_provenance(c.path for c in clips)))
        plan = plan_rerun(clips, stored_clips(store_dir), current)
        assert not plan.todo and not plan.gone

    def datamodule_check() -> None:
        fresh = FeatureStore(store_dir)  # as a DataModule opens it: provenance read on first use
        assert check_sources({"m": fresh}, clips, args.tree) == []

    steps = {"fingerprint": fingerprint, "plan, before issue 17": plan_before, "plan, now": plan_now,
             "DataModule check": datamodule_check}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for f in steps.values():  # warm-up: page cache, imports
        f()
    for _ in range(args.repeats):
        for k, f in steps.items():  # interleaved: load from other processes hits every step alike
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    rows = [[k, f"{median(v):.2f}", " ".join(f"{x:.2f}" for x in v), f"{1e6 * median(v) / args.clips:.0f}"]
            for k, v in times.items()]
    print(table(["step", "median s", "repeats s", "us/clip"], rows,
                title=f"{args.clips} clip folders x {args.frames} frames (tree made/checked in {made:.1f} s), "
                      f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"))
    del store
    write_results(NAME, {"machine": info, "clips": args.clips, "frames": args.frames, "times_s": times,
                         "load_after": os.getloadavg()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
