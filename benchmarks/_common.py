"""Helpers shared by the benchmarks: machine description, tables, PASS/FAIL lines, the results JSON, quiet runs.

Not a benchmark itself (``run_all.py`` runs only ``bench_*.py``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import statistics
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
#: The person in a shared photo's file name (``<person>_<n>[letter].jpg``), as the person-grouped folds use it.
PHOTO_SUBJECT = r"^(.+)_\d+[a-z]*$"


def photo_subject(name: str) -> str:
    """The person of a shared photo's file name (:data:`PHOTO_SUBJECT`; the stem when it does not match)."""
    import re

    stem = Path(name).stem
    m = re.match(PHOTO_SUBJECT, stem)
    return m.group(1) if m else stem


def write_photo_labels(legend: Path, out: Path) -> Path:
    """``preprocess --labels`` CSV (``video,label,subject``) of every photo in the shared ``legend.csv``."""
    import csv

    with open(legend, newline="") as f, open(out, "w", newline="") as o:
        w = csv.writer(o)
        w.writerow(["video", "label", "subject"])
        for row in csv.DictReader(f):
            w.writerow([row["image"], row["emotion"].strip().lower(), photo_subject(row["image"])])
    return out


def evict_from_page_cache(paths: Sequence[Path]) -> None:
    """Drop these files from the page cache (``posix_fadvise DONTNEED``; nothing else is dropped).

    Only clean pages go (sync written files first), and pages still mapped by a live memory map stay, so stores
    opened earlier are garbage-collected first.
    """
    import gc

    gc.collect()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def quiet_libraries() -> None:
    """Benchmarks print tables: drop Python warnings and Lightning's INFO chatter from their output."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def machine_info() -> dict[str, Any]:
    """What the figures depend on: CPU, core count, thread settings, bf16 support, load on the machine."""
    import torch

    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    try:
        from extractors.torchvision_frames import bf16_supported

        bf16 = bf16_supported()
    except Exception:  # noqa: BLE001  (informational only)
        bf16 = None
    return {
        "cpu": model or platform.processor(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "torch_threads_main": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_autocast": bf16,
        "python": platform.python_version(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def print_machine(info: dict[str, Any]) -> None:
    print(f"machine: {info['cpu']} | {info['cpu_count']} cores | torch {info['torch']} "
          f"({info['torch_threads_main']} threads in the main process, capability {info['torch_cpu_capability']}, "
          f"bf16 autocast {'yes' if info['bf16_autocast'] else 'no'})")
    load = info["loadavg_start"]
    print(f"load average at start: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min)")
    if info["cpu_count"] and load[0] > 0.5 * info["cpu_count"]:
        print(f"  NOTE: the machine is busy (1-min load {load[0]:.1f} on {info['cpu_count']} cores): other processes "
              "compete for the CPU, so absolute figures are low and noisy; ratios are measured interleaved "
              "(each repeat runs the compared variants back to back) to keep them comparable.")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> str:
    """A plain aligned text table (first column left-aligned, the rest right-aligned)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    out = [title] if title else []
    out += [line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]]
    return "\n".join(out)


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:,.1f}" if abs(c) >= 100 else f"{c:.2f}"
    return str(c)


def target_line(name: str, value: float, threshold: float, unit: str = "", detail: str = "") -> dict[str, Any]:
    """Print ``PASS``/``FAIL`` for ``value >= threshold`` and return the record for the JSON."""
    ok = bool(value >= threshold)
    extra = f" ({detail})" if detail else ""
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {value:.2f}{unit} (target >= {threshold:g}{unit}){extra}")
    return {"target": name, "value": round(float(value), 4), "threshold": threshold, "pass": ok}


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """``benchmarks/results/<name>.json`` (the folder is created here; it is an output, never committed)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "finished": _dt.datetime.now().isoformat(timespec="seconds"),
               "loadavg_end": [round(x, 2) for x in os.getloadavg()], **payload}
    out = RESULTS_DIR / f"{name}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, out)
    return out


@contextlib.contextmanager
def captured_output(logfile: Path) -> Iterator[None]:
    """Send stdout and stderr (file descriptors 1 and 2, so loader workers and C++ logging too) to ``logfile``.

    Keeps progress bars and library chatter out of the benchmark's table; on an exception the log's tail is
    printed so a failure is never hidden.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(logfile, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        if failed:
            tail = logfile.read_text(errors="replace")[-4000:]
            print(f"--- last output of the failed step ({logfile}) ---\n{tail}\n---", file=sys.stderr)
