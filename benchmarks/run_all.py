#!/usr/bin/env python
"""Run every ``benchmarks/bench_*.py`` in turn, each in its own process, printing its output as it comes.

``make bench`` calls this. Benchmarks are found by glob, so a new ``bench_<name>.py`` joins without edits here.
Each benchmark prints its table and PASS/FAIL target lines and writes ``benchmarks/results/<name>.json``; a FAIL
line is a measured figure below its target, not an error. This script exits non-zero only when a benchmark
itself breaks (non-zero exit status), and ends with one line per benchmark: status, wall time, targets met.

Usage: ``python benchmarks/run_all.py [-k SUBSTRING ...] [-- ARGS passed to every benchmark]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"


def discover(patterns: list[str] | None) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    if patterns:
        found = [p for p in found if any(k in p.stem for k in patterns)]
    return found


def targets_of(stem: str, since: float) -> tuple[int, int] | None:
    """(met, total) from the newest ``results/<stem>*.json`` written during this run (quick runs may use a suffix)."""
    fresh = [p for p in RESULTS.glob(f"{stem}*.json") if p.stat().st_mtime >= since]
    if not fresh:
        return None
    try:
        data = json.loads(max(fresh, key=lambda p: p.stat().st_mtime).read_text())
    except (OSError, ValueError):
        return None
    targets = data.get("targets") or []
    if not isinstance(targets, list):
        return None
    return sum(bool(t.get("pass")) for t in targets if isinstance(t, dict)), len(targets)


def main(argv: list[str] | None = None) -> int:
    from fer_zoo.cli_errors import split_passthrough

    argv, extra = split_passthrough(argv)
    p = argparse.ArgumentParser(description="Run every benchmarks/bench_*.py in turn.")
    p.add_argument("-k", action="append", dest="patterns", help="only benchmarks whose name contains this")
    p.add_argument("--list", action="store_true", help="list the benchmarks found and exit")
    args = p.parse_args(argv)
    benches = discover(args.patterns)
    if args.list or not benches:
        print("\n".join(str(b.relative_to(REPO)) for b in benches) or "no benchmarks/bench_*.py found")
        return 0 if benches else 1
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(REPO), env.get("PYTHONPATH", "")) if x)
    summary = []
    print(f"running {len(benches)} benchmark(s): {', '.join(b.stem for b in benches)}", flush=True)
    for bench in benches:
        print(f"\n{'=' * 100}\n>>> {bench.relative_to(REPO)} {' '.join(extra)}\n{'=' * 100}", flush=True)
        start_wall, t0 = time.time(), time.perf_counter()
        try:
            rc = subprocess.run([sys.executable, str(bench), *extra], cwd=REPO, env=env).returncode
        except KeyboardInterrupt:
            print(f"\ninterrupted during {bench.name}", flush=True)
            return 130
        summary.append((bench.stem, rc, time.perf_counter() - t0, targets_of(bench.stem, start_wall)))
    print(f"\n{'=' * 100}\nbenchmark summary (results in {RESULTS.relative_to(REPO)}/)")
    width = max(len(s[0]) for s in summary)
    for stem, rc, secs, tg in summary:
        status = "ok" if rc == 0 else f"ERROR (exit status {rc})"
        met = f"targets met {tg[0]}/{tg[1]}" if tg and tg[1] else "no targets"
        print(f"  {stem:<{width}}  {status:<22} {secs:7.0f} s   {met}")
    broken = [s for s in summary if s[1] != 0]
    if broken:
        print(f"{len(broken)} benchmark(s) broke: {', '.join(s[0] for s in broken)}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
