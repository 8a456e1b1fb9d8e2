"""``python -m fer_zoo probe [--out FILE.json] --config FIT_CONFIG [--data.* overrides]``: the baselines alone.

The linear probe and the majority class (:mod:`fer_zoo.training.probe`) on exactly the split ``fit`` would make
from the same arguments, in seconds, without training anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fer_zoo.training.probe import baselines, format_table


def datamodule_from_args(args: list[str]) -> Any:
    """A FeatureDataModule from ``fit`` arguments (config files and overrides), parsed exactly as ``fit`` would."""
    from datamodules.feature_datamodule import FeatureDataModule
    from fer_zoo.training.cli import instantiate_spec, parse_fit_config

    data = parse_fit_config(args).data.as_dict()
    data["source"] = instantiate_spec(data["source"])
    return FeatureDataModule(**data)


def _says_dense(arg: str) -> bool:
    """A config file that sets ``task: dense``."""
    import yaml

    path = Path(arg)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return False
    try:
        return (yaml.safe_load(path.read_text()) or {}).get("task") == "dense"
    except yaml.YAMLError:
        return False


def main(argv: list[str] | None = None) -> int:
    """``python -m fer_zoo probe [--out FILE.json] <fit arguments>``: print (and optionally save) the baselines."""
    from fer_zoo.cli_errors import UsageError

    argv = list(sys.argv[1:] if argv is None else argv)
    out: Path | None = None
    if "--out" in argv:
        i = argv.index("--out")
        if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
            raise UsageError("--out needs a file name (FILE.json)")
        out = Path(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    if "dense" in argv or any(_says_dense(a) for a in argv):
        raise UsageError("the probe command is for the clip task; a per-frame (dense) run reports its per-frame "
                         "baselines in results.json (fer_zoo.dense.baselines)")
    if any(a in ("-h", "--help") for a in argv):
        print("usage: python -m fer_zoo probe [--out FILE.json] --config FIT_CONFIG [--data.* overrides]\n"
              + (__doc__ or "").split("\n\n")[1])
        return 0
    dm = datamodule_from_args(argv)
    res = baselines(dm)
    sizes = "/".join(str(len(dm.split_ids[s])) for s in ("train", "val", "test"))
    print(f"baselines on {dm.source.name} fold {dm.fold or 0} seed {dm.seed}, modalities {'+'.join(dm.stores)} "
          f"(train/val/test {sizes} clips; probe C={res['probe']['C']:g}, {res['probe']['seconds']:.1f} s wall, "
          f"{res['probe']['cpu_seconds']:.1f} s CPU)")
    print(format_table(res))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"modalities": dm.modalities, "fold": dm.fold, "seed": dm.seed,
                                   "class_names": dm.class_names, "split_sizes": sizes, "baselines": res},
                                  indent=2) + "\n")
        print(f"written: {out}")
    return 0
