"""Write a small LOCAL openpifpaf checkpoint (COCO-17 keypoints) for offline tests.

Why: openpifpaf's pretrained checkpoints download from GitHub at run time, which cannot work on an
offline machine, yet the OpenPifPaf backend must be exercised end to end. This script builds a network
with openpifpaf's own code (``openpifpaf.network.Factory`` with the ``shufflenetv2k16`` base network,
which needs no pretrained backbone download, plus the ``cocokp`` data module's CIF/CAF heads) and saves
it exactly the way openpifpaf's trainer does (``torch.save({"model", "epoch", "meta"})``), so
``openpifpaf.Predictor(checkpoint=PATH)`` loads it.

WARNING: the weights are RANDOMLY INITIALISED (seeded), NOT trained. The checkpoint is only for testing
plumbing, shapes and determinism; its keypoints are meaningless. For real poses, download a pretrained
checkpoint (e.g. shufflenetv2k16 from https://github.com/openpifpaf/openpifpaf/releases) on a machine
with internet and pass its local path instead.

Usage: python scripts/make_openpifpaf_checkpoint.py OUT.pkl [--basenet shufflenetv2k16] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def make_checkpoint(out: Path, basenet: str = "shufflenetv2k16", seed: int = 0) -> Path:
    """Build a random-init openpifpaf COCO keypoint network and save it in trainer checkpoint format."""
    import openpifpaf  # lazy: heavy import (torch, torchvision, matplotlib, plugins)
    import torch

    torch.manual_seed(seed)
    head_metas = openpifpaf.datasets.factory("cocokp").head_metas  # COCO-17 CIF + CAF heads
    # Instance kwargs (Configurable) so no class-level openpifpaf config is changed.
    net_cpu, epoch = openpifpaf.network.Factory(base_name=basenet, checkpoint=None).factory(head_metas=head_metas)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Same dict layout as openpifpaf.network.Trainer.write_model (whole module pickled).
    torch.save(
        {
            "model": net_cpu,
            "epoch": epoch,
            "meta": {"version": openpifpaf.__version__, "note": f"RANDOM INIT {basenet}, seed {seed}; test only"},
        },
        out,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output checkpoint path, e.g. openpifpaf_test.pkl")
    parser.add_argument("--basenet", default="shufflenetv2k16", help="openpifpaf base network (no pretrained download)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for the random weights")
    args = parser.parse_args()
    path = make_checkpoint(args.out, args.basenet, args.seed)
    print(
        f"wrote RANDOM-INIT (untrained, test-only) openpifpaf checkpoint: {path} ({path.stat().st_size / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
