#!/usr/bin/env python
"""The quick path (``make demo``) measured: which modality set, and what its model does on real video (issue 26).

Part 1, which modalities: on the shared labeled photos (``../shared/data/faces-static``, 2,045 photos), cut to face
crops by ``preprocess`` exactly as video frames are, over 5 person-grouped folds (``ManifestSource(n_folds=5)``),
the start of the model for each candidate set (its linear probe, or for several modalities the stacked per-modality
probes: what ``fit`` tests unless a trained epoch beats it by a standard error) and the joint linear probe, beside
the majority class; test UAR/WAR, mean +- std over folds and pooled. The best set is what ``configs/demo_faces.yaml``
trains on.

Part 2, the demo model on real video: ``predict-video`` with a run trained by ``make demo`` (``--run``, default the
newest ``runs/demo-*``) on the shared face videos: frames answered, distinct top classes, how often the per-frame top
class changes, the top classes by share of frames, and seconds of compute per minute of video.

Stores (crops and features) are built on first use in ``--root`` (default ``features/faces-static-crops*``; about 4
minutes to crop and 10-15 to extract on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _common import REPO, machine_info, print_machine, table, write_photo_labels, write_results  # noqa: E402

SHARED = Path(os.environ.get("FER_ZOO_SHARED_DATA", REPO.parent / "shared" / "data"))
PHOTOS = SHARED / "faces-static"
VIDEOS = SHARED / "face-videos"
SETS = [["fer2013"], ["facemesh"], ["resnet"], ["fer2013", "facemesh"], ["resnet", "facemesh"],
        ["resnet", "fer2013", "facemesh"]]
EXTRACT = {"resnet": {"name": "resnet18", "config": {"weights": "IMAGENET1K_V1"}, "fallback": {"name": "mobilenet_v2"}},
           "facemesh": {"name": "facemesh", "config": {"refine_landmarks": False, "geometry": True}},
           "fer2013": {"name": "fer2013", "config": {"output": "both"}}}


def _run(args: list[str], log: Path, ok: tuple[int, ...]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    with open(log, "ab") as f:
        rc = subprocess.run([sys.executable, "-m", "fer_zoo", *args], cwd=REPO, env=env, stdout=f, stderr=f).returncode
    if rc not in ok:
        raise SystemExit(f"`fer_zoo {args[0]}` failed (exit {rc}); see {log}")


def ensure_stores(crops: Path, stores: Path, log: Path) -> Path:
    """Face crops of every shared photo (labels and persons from legend.csv) and the candidate stores over them."""
    import yaml

    manifest = crops / "manifest.csv"
    if not manifest.is_file():
        crops.mkdir(parents=True, exist_ok=True)
        labels = crops.parent / f"{crops.name}-labels.csv"
        write_photo_labels(PHOTOS / "legend.csv", labels)
        print("cropping the shared photos (preprocess) ...", flush=True)
        _run(["preprocess", str(PHOTOS / "images"), "--out", str(crops), "--labels", str(labels)], log, (0, 4))
    missing = [m for m in EXTRACT if not list((stores / m).glob("*/meta.json"))]
    if missing:
        cfg = {"source": {"class_path": "datamodules.sources.ManifestSource",
                          "init_args": {"csv": str(manifest), "vocabulary": "faces8", "n_folds": 5}},
               "store_root": str(stores), "frame_cap": 64, "num_workers": 2, "decoder_threads": 1,
               "modalities": {m: EXTRACT[m] for m in missing}}
        path = stores.parent / f"{stores.name}-extract.yaml"
        path.write_text(yaml.safe_dump(cfg))
        print(f"extracting {', '.join(missing)} ...", flush=True)
        _run(["extract", "--config", str(path)], log, (0, 3))
    return manifest


def part1(manifest: Path, stores: Path, sets: list[list[str]]) -> list[dict[str, Any]]:
    import numpy as np
    from _common import captured_output

    from fer_zoo.training.probe import baselines, clip_statistics, init_probe_for, scores
    from fer_zoo.training.probe_command import datamodule_from_args

    rows = []
    for mods in sets:
        cells = []
        for fold in range(1, 6):
            args = ["--config", "configs/demo.yaml", "--data.source.class_path", "datamodules.sources.ManifestSource",
                    "--data.source.init_args.csv", str(manifest), "--data.source.init_args.vocabulary", "faces8",
                    "--data.source.init_args.n_folds", "5", "--data.store_root", str(stores),
                    f"--data.modalities={json.dumps(mods)}", f"--data.fold={fold}"]
            with captured_output(Path(tempfile.gettempdir()) / "bench_quick_path.log"):
                dm = datamodule_from_args(args)
                dm.setup("fit")
                base = baselines(dm)
                test = dm.split_ids["test"]
                y = np.array([dm.labels[c] for c in test])
                pred = init_probe_for(dm).probe.predict(clip_statistics(dm.stores, test))
            cells.append({"start": scores(pred, y, dm.num_classes), "probe": base["probe"]["metrics"],
                          "majority": base["majority"]["metrics"], "pred": pred, "y": y})
        pooled = scores(np.concatenate([c["pred"] for c in cells]), np.concatenate([c["y"] for c in cells]),
                        len(dm.class_names))
        row = {"modalities": "+".join(mods), "folds": len(cells)}
        for k in ("start", "probe", "majority"):
            for metric in ("uar", "war"):
                v = [c[k][f"test/{metric}"] for c in cells]
                row[f"{k}_{metric}"] = (float(np.mean(v)), float(np.std(v, ddof=1)))
        row["start_uar_pooled"] = pooled["test/uar"]
        rows.append(row)
        print(f"  {row['modalities']:<26} start UAR {100 * row['start_uar'][0]:5.1f} +- {100 * row['start_uar'][1]:.1f}"
              f" (pooled {100 * row['start_uar_pooled']:.1f}), joint probe {100 * row['probe_uar'][0]:5.1f}, "
              f"majority {100 * row['majority_uar'][0]:5.1f}", flush=True)
    return rows


def part2(run: Path, out: Path) -> list[dict[str, Any]]:
    """predict-video with the demo run on each shared video; per video the per-frame behaviour."""
    import numpy as np

    from fer_zoo.video.predict import main as predict

    videos = [VIDEOS / n for n in ("single_face.mp4", "WolfgangLanger_Pexels.mp4", "face_noface.mov",
                                   "noface_face.mov")]
    predict([*map(str, videos), "--ckpt", str(run), "--out", str(out)])
    rows = []
    for v in videos:
        doc_path = out / v.stem / "predictions.json"
        if not doc_path.is_file():
            continue
        doc = json.loads(doc_path.read_text())
        with open(out / v.stem / "predictions.csv", newline="") as f:
            frames = [r for r in csv.DictReader(f) if r["person"] == "1" and r["top_class"]]
        top = [r["top_class"] for r in frames]
        changes = sum(a != b for a, b in zip(top, top[1:]))
        share = {c: top.count(c) / len(top) for c in sorted(set(top), key=top.count, reverse=True)} if top else {}
        per_min = doc.get("compute_seconds_per_video_minute") or {}
        rows.append({"video": v.name, "frames": doc["frames"], "answered": len(top), "classes": len(share),
                     "changes": changes, "share": share, "compute_s_per_min": round(sum(per_min.values()), 1),
                     "wall_s": doc.get("wall_seconds"), "duration_s": doc.get("duration_s"),
                     "mean_top_prob": float(np.mean([float(r["top_prob"]) for r in frames])) if frames else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=REPO / "features")
    p.add_argument("--sets", nargs="+", default=None, help="modality sets as a+b (default: the six candidates)")
    p.add_argument("--run", type=Path, default=None, help="the demo run for part 2 (default: newest runs/demo-*)")
    p.add_argument("--skip", choices=["1", "2"], default=None, help="skip part 1 or 2")
    args = p.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.chdir(REPO)
    info = machine_info()
    print_machine(info)
    result: dict[str, Any] = {"machine": info}
    if args.skip != "1":
        if not PHOTOS.is_dir():
            print(f"SKIP part 1: {PHOTOS} is absent")
        else:
            crops, stores = args.root / "faces-static-crops", args.root / "faces-static-crops-store"
            manifest = ensure_stores(crops, stores, args.root / "bench_quick_path-build.log")
            sets = [s.split("+") for s in args.sets] if args.sets else SETS
            print("part 1: the model's start (stacked probes) on the shared photos' face crops, 5 person-grouped "
                  "folds", flush=True)
            rows = part1(manifest, stores, sets)
            def pm(x: tuple[float, float]) -> str:
                return f"{100 * x[0]:.1f} ± {100 * x[1]:.1f}"

            print(table(["modalities", "start UAR", "start UAR pooled", "start WAR", "joint probe UAR", "majority UAR"],
                        [[r["modalities"], pm(r["start_uar"]), f"{100 * r['start_uar_pooled']:.1f}",
                          pm(r["start_war"]), pm(r["probe_uar"]), f"{100 * r['majority_uar'][0]:.1f}"] for r in rows],
                        title="test UAR/WAR %, mean ± std over 5 person-grouped folds (faces-static face crops)"))
            best = max(rows, key=lambda r: r["start_uar"][0])
            print(f"best set by mean start UAR: {best['modalities']}")
            result["part1"] = rows
    if args.skip != "2":
        runs = sorted((REPO / "runs").glob("demo-*"), key=lambda d: d.stat().st_mtime)
        run = args.run or (runs[-1] if runs else None)
        if run is None or not VIDEOS.is_dir():
            print("SKIP part 2: no demo run (make demo) or no shared videos")
        else:
            with tempfile.TemporaryDirectory(prefix="bench_quick_path-") as tmp:
                rows2 = part2(run, Path(tmp))
            print(table(["video", "frames", "answered", "top classes", "top-class changes", "shares",
                         "mean top prob", "compute s / video min"],
                        [[r["video"], r["frames"], r["answered"], r["classes"], r["changes"],
                          ", ".join(f"{c} {100 * s:.0f}%" for c, s in list(r["share"].items())[:3]),
                          f"{r['mean_top_prob']:.2f}" if r["mean_top_prob"] is not None else "",
                          r["compute_s_per_min"]] for r in rows2],
                        title=f"the demo model {run.name} on the shared videos (person 1, per frame)"))
            result["part2"] = {"run": str(run), "videos": rows2}
    write_results("bench_quick_path", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
