"""``python -m fer_zoo <command>``: fit | validate | test | predict (LightningCLI) and the fer_zoo tools."""

from __future__ import annotations

import importlib
import sys

# Tool commands -> "module:function"; everything else goes to LightningCLI. Imported lazily so `--help` is quick.
COMMANDS = {
    "extract": "fer_zoo.extraction.command:main",
    "fetch-weights": "fer_zoo.extraction.fetch_weights:main",
    "ablate": "fer_zoo.ablation.grid:main",
    "preprocess": "fer_zoo.video.preprocess:main",
    "predict-video": "fer_zoo.video.predict:main",
}
LIGHTNING = ("fit", "validate", "test", "predict")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: python -m fer_zoo {" + ",".join((*LIGHTNING, *COMMANDS)) + "} [--config FILE] ...")
        return 0
    cmd = argv[0]
    if cmd in COMMANDS:
        mod, fn = COMMANDS[cmd].split(":")
        return int(getattr(importlib.import_module(mod), fn)(argv[1:]) or 0)
    if cmd in LIGHTNING:
        from fer_zoo.training.cli import run_lightning_cli

        run_lightning_cli(argv)
        return 0
    print(f"unknown command {cmd!r}; choose from {', '.join((*LIGHTNING, *COMMANDS))}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
