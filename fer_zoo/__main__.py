"""``python -m fer_zoo <command>``: the LightningCLI commands (fit, validate, test, predict) and fer_zoo's tools."""

from __future__ import annotations

import importlib
import os
import sys

# Tool commands -> ("module:function", one line of help); imported lazily so `--help` is quick.
COMMANDS = {
    "extract": ("fer_zoo.extraction.command:main", "run the configured extractors over a clip source into stores"),
    "import-features": ("fer_zoo.imports.command:main", "turn OpenFace / py-feat CSVs or .npy files into a store"),
    "fetch-weights": ("fer_zoo.extraction.fetch_weights:main", "download the pretrained weights a config needs"),
    "ablate": ("fer_zoo.ablation.grid:main", "a grid of modality sets x folds x seeds, with a summary table and chart"),
    "probe": ("fer_zoo.training.probe_command:main", "linear-probe and majority baselines on a fit config's split"),
    "preprocess": ("fer_zoo.video.preprocess:main", "track every face in raw videos, write DFEW-layout face crops"),
    "predict-video": ("fer_zoo.video.predict:main", "emotions of every person, per frame, in videos, cameras, streams"),
    "finetune-frames": ("fer_zoo.finetune.command:main", "fine-tune a frame encoder on labeled photos -> encoder file"),
}
LIGHTNING = {
    "fit": "train the temporal transformer on cached features, then test the selected checkpoint",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split (fold)",
    "predict": "write class probabilities for the test split",
}


def usage() -> str:
    width = max(map(len, (*LIGHTNING, *COMMANDS)))
    lines = ["usage: python -m fer_zoo <command> [--config FILE] [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in LIGHTNING.items()]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "python -m fer_zoo <command> --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0
    cmd = argv[0]
    from fer_zoo.progress import line_buffered_stdout

    line_buffered_stdout()  # piped or under nohup, each message arrives when printed, not at the end
    if cmd not in COMMANDS and cmd not in LIGHTNING:
        print(f"python -m fer_zoo: error: unknown command {cmd!r}\n\n{usage()}", file=sys.stderr)
        return 2
    from fer_zoo.cli_errors import UsageError

    try:
        if cmd in COMMANDS:
            mod, fn = COMMANDS[cmd][0].split(":")
            return int(getattr(importlib.import_module(mod), fn)(argv[1:]) or 0)
        from fer_zoo.training.cli import run_lightning_cli

        run_lightning_cli(argv, quiet=True)
        return 0
    except UsageError as err:
        if os.environ.get("FER_ZOO_DEBUG"):
            raise
        print(f"python -m fer_zoo {cmd}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
