"""`make demo`: train the quick-path model on the face crops of the bundled photos, test it once, and run it on the
bundled video; then say where everything is and what to expect.

Run after `preprocess` and `extract` of the sample's face crops (the Makefile does both, see `configs/demo_faces.yaml`).
Prints results, not library chatter: Lightning's, W&B's and Python's messages go to the run folder's `fit.log`.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VIDEO = ROOT / "data" / "sample" / "videos" / "single_face.mp4"


def main(argv: list[str] | None = None) -> int:
    from fer_zoo.training.cli import run_lightning_cli
    from fer_zoo.video.predict import main as predict_video

    argv = list(sys.argv[1:] if argv is None else argv)
    run_name = time.strftime("demo-%Y%m%d-%H%M%S")
    run_lightning_cli(["fit", "--config", "configs/demo_faces.yaml", "--config", "configs/demo.yaml",
                       "--run_name", run_name, *argv], quiet=True)
    run_dir = Path("runs") / run_name
    res = json.loads((run_dir / "results.json").read_text())
    out = Path("predictions") / run_name
    print(f"\npredict-video on {VIDEO.relative_to(ROOT)} with the model just trained:", flush=True)
    rc = predict_video([str(VIDEO), "--ckpt", str(run_dir), "--out", str(out)])
    m = res["metrics"]
    counts = res["split_sizes"]
    base = res.get("baselines") or {}
    print("\n" + "=" * 100)
    print(f"fer_zoo demo: {'+'.join(res['modalities'])} on the face crops of the bundled photos "
          f"(train/val/test = {counts['train']}/{counts['val']}/{counts['test']} photos, "
          f"{len(res['class_names'])} classes)")
    line = f"  test UAR {m['test/uar']:.3f}   WAR {m['test/war']:.3f}   macro-F1 {m['test/f1']:.3f}"
    if "probe" in base:
        p, maj = base["probe"]["metrics"], base["majority"]["metrics"]
        line += (f"   (same split: linear probe UAR {p['test/uar']:.3f}, majority class UAR "
                 f"{maj['test/uar']:.3f}; chance {1 / len(res['class_names']):.3f})")
    print(line)
    print("  what to expect: a model trained on ~110 labeled photos is a demonstration, not an emotion recogniser "
          "to trust; the same recipe trained on 1,600 photos scored 44.6 +- 3.5 UAR on held-out people's photos "
          "(docs/own-videos.md); for real use, train on your own labeled clips")
    seconds = out / VIDEO.stem / "seconds.csv"
    if rc == 0 and seconds.is_file():
        with open(seconds, newline="") as f:
            rows = list(csv.DictReader(f))
        print(f"  {VIDEO.name}, per person and second: " + "; ".join(
            f"person {r['person']} {float(r['start_time']):.0f}s "
            + (f"{r['top_class']} {float(r['top_prob']):.2f}" if r["top_class"] else "no answer") for r in rows))
    print(f"  run folder:     {run_dir}/  (config.yaml, results.json, checkpoints/, confusion PNGs, fit.log)")
    print(f"  predictions:    {out}/  (predictions.csv per frame, {VIDEO.stem}/seconds.csv, timeline.png)")
    wandb_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    if wandb_runs:
        print(f"  W&B (offline):  upload with: wandb sync {wandb_runs[-1]}")
    print(f"  your video:     python -m fer_zoo predict-video my_video.mp4 --ckpt {run_dir} --out predictions")
    print("=" * 100)
    return 0 if rc in (0, 4) else rc


if __name__ == "__main__":
    sys.exit(main())
