"""`make demo`: fit the frame-features + pose model on the bundled sample, test it once, and say where things are.

Run after `python -m fer_zoo extract --config configs/extract.yaml` (the Makefile does both)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from fer_zoo.training.cli import run_lightning_cli

    run_name = time.strftime("demo-%Y%m%d-%H%M%S")
    run_lightning_cli(["fit", "--config", "configs/resnet_pose.yaml", "--config", "configs/demo.yaml",
                       "--run_name", run_name], quiet=True)
    run_dir = Path("runs") / run_name
    res = json.loads((run_dir / "results.json").read_text())
    m = res["metrics"]
    frame = res["stores"].get("resnet", {})
    counts = res["split_sizes"]
    wandb_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    print("\n" + "=" * 100)
    sizes = f"{counts['train']}/{counts['val']}/{counts['test']}"
    print(f"fer_zoo demo: {'+'.join(res['modalities'])} on the bundled sample "
          f"(train/val/test = {sizes} clips, {len(res['class_names'])} classes)")
    print(f"  test UAR {m['test/uar']:.3f}   WAR {m['test/war']:.3f}   macro-F1 {m['test/f1']:.3f}   "
          f"(checkpoint: {res['checkpoint_policy']} = {res['selection']})")
    base = res.get("baselines") or {}
    if "probe" in base:
        p, maj = base["probe"]["metrics"], base["majority"]["metrics"]
        print(f"  baselines, same split: linear probe UAR {p['test/uar']:.3f} WAR {p['test/war']:.3f}; "
              f"majority class UAR {maj['test/uar']:.3f} WAR {maj['test/war']:.3f}")
    print(f"  frame features: {frame.get('extractor')} with weights: {frame.get('weights_source')}")
    print(f"  run folder:     {run_dir}/  (config.yaml, metrics.csv, results.json, checkpoints/)")
    print(f"  plots:          {run_dir / 'confusion_test.png'}, {run_dir / 'confusion_val.png'}")
    if wandb_runs:
        print(f"  W&B (offline):  {wandb_runs[-1]}   ->  upload with: wandb sync {wandb_runs[-1]}")
    print("=" * 100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
