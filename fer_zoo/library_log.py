"""Library log records (Lightning's device banners and tips, W&B's notes, Python warnings) into a file, not the
terminal.

``fit`` writes them to ``runs/<run>/fit.log`` (:mod:`fer_zoo.training.cli`), ``extract`` to ``extract.log`` in each
store folder (:mod:`fer_zoo.extraction.run`). fer_zoo's own messages are printed, never logged here, so they stay
on the terminal.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path
from typing import Any

# Libraries whose log lines (device banners, tips, seeds, W&B's offline notes) and Python warnings go to a file
# instead of the terminal.
LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "wandb", "py.warnings")


class LibraryLog:
    """Holds library log records in memory until the run folder exists, then writes them (and later ones) there.

    A context manager: inside it the loggers of :data:`LIBRARY_LOGGERS` (and Python warnings, through
    ``logging.captureWarnings``) lose their console handlers; on exit they get them back. ``to_file(path)``
    appends every record so far, and the later ones, to ``path`` (its folder is created)."""

    def __init__(self) -> None:
        self.memory = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1)
        self.memory.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        self.path: Path | None = None
        self._saved: list[tuple[logging.Logger, list[logging.Handler], bool]] = []

    def __enter__(self) -> LibraryLog:
        logging.captureWarnings(True)
        os.environ.setdefault("WANDB_SILENT", "true")
        for name in LIBRARY_LOGGERS:
            lg = logging.getLogger(name)
            self._saved.append((lg, list(lg.handlers), lg.propagate))
            for h in list(lg.handlers):
                lg.removeHandler(h)
            lg.addHandler(self.memory)
            lg.propagate = False
        return self

    def to_file(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
        handler.setFormatter(self.memory.formatter)
        self.memory.setTarget(handler)
        self.memory.flushLevel = logging.DEBUG  # from now on every record goes straight to the file
        self.memory.flush()
        self.path = path

    def __exit__(self, *exc: Any) -> None:
        self.memory.flush()
        target = self.memory.target
        for lg, handlers, propagate in self._saved:
            lg.removeHandler(self.memory)
            for h in handlers:
                lg.addHandler(h)
            lg.propagate = propagate
        logging.captureWarnings(False)
        if target is not None:
            target.close()
