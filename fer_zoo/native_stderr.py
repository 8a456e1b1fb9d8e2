"""Keep native libraries' console chatter (MediaPipe's C++ log, TensorFlow Lite's "Created delegate" lines) out of
the terminal, in a log file, while fer_zoo's own Python output (progress bars, messages, errors) still shows.

Native code writes to file descriptor 2 directly, so redirecting ``sys.stderr`` does not reach it; the descriptor
itself is pointed at the log file, and Python's ``sys.stderr`` at a duplicate of the terminal for the duration.
Extraction workers do the same for their whole life (``fer_zoo.extraction.run._worker_init``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def native_stderr_to(log_path: str | Path) -> Iterator[Path]:
    """Within the block, file descriptor 2 appends to ``log_path`` (created with its folder); ``sys.stderr`` (a
    new text stream on the old descriptor 2) still reaches the terminal. Restored on exit, also on errors."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    python_stderr = sys.stderr
    terminal = os.fdopen(os.dup(saved), "w", buffering=1, encoding=getattr(python_stderr, "encoding", None) or "utf-8",
                         errors="backslashreplace")
    sys.stderr = terminal
    try:
        yield log_path
    finally:
        with contextlib.suppress(Exception):
            terminal.flush()
        sys.stderr = python_stderr
        terminal.close()
        os.dup2(saved, 2)
        os.close(saved)
