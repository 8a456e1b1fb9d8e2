"""Command-line and config mistakes as one line a user can act on (no traceback, no usage dump), exit status 2.

jsonargparse (under LightningCLI and fer_zoo's own commands) is built with ``exit_on_error=False``; its errors and
the config-value errors raised while building the data module, model or source are turned into :class:`UsageError`
here, and ``python -m fer_zoo`` prints ``python -m fer_zoo <command>: error: <message>`` and exits 2. Set
``FER_ZOO_DEBUG=1`` to get the traceback instead.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


class UsageError(Exception):
    """A command-line or config mistake: printed as one line, exit status 2."""


def split_passthrough(argv: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """``(own, passed_on)``: the arguments before the first ``--`` and those after it (``sys.argv[1:]`` when
    ``argv`` is None). Commands that hand arguments on to ``fit`` (ablate, benchmarks) use it."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        return args, []
    i = args.index("--")
    return args[:i], args[i + 1:]


def config_files(argv: Sequence[str]) -> list[str]:
    """The values of ``--config FILE`` / ``--config=FILE`` in ``argv``, in order."""
    files = []
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def check_config_files(argv: Sequence[str]) -> None:
    """Every ``--config`` file exists and is valid YAML; else :class:`UsageError` naming the file, line and column."""
    import yaml

    for name in config_files(argv):
        path = Path(name)
        if not path.is_file():
            raise UsageError(f"--config {name}: no such file" + (" (it is a folder)" if path.is_dir() else ""))
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
            problem = getattr(err, "problem", None) or str(err)
            context = getattr(err, "context", None)
            raise UsageError(f"{where}: YAML error: {problem}" + (f" ({context})" if context else "")) from None


def _holds_key(data: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _file_with_key(argv: Sequence[str], dotted: str) -> str | None:
    import yaml

    for name in reversed(config_files(argv)):
        try:
            data = yaml.safe_load(Path(name).read_text())
        except (OSError, yaml.YAMLError):
            continue
        if _holds_key(data, dotted) or _holds_key((data or {}).get("fit") if isinstance(data, dict) else None,
                                                  dotted):
            return name
    return None


_UNKNOWN = (
    re.compile(r"unrecognized arguments: --?([\w.\-]+)"),
    re.compile(r"does not accept option '([\w.\-]+)'"),
    re.compile(r"[Nn]o action for key \"?'?([\w.\-]+)"),
)


def from_argument_error(err: BaseException, command: str, argv: Sequence[str], valid_keys: Iterable[str]) -> UsageError:
    """A jsonargparse/argparse error -> one line: an unknown key with the closest valid keys and the config file
    that holds it; anything else (a value of the wrong type, a missing required key) with its whitespace folded."""
    message = str(err)
    for pattern in _UNKNOWN:
        m = pattern.search(message)
        if m:
            key = m.group(1).split("=")[0]
            keys = sorted(set(valid_keys))
            close = difflib.get_close_matches(key, keys, n=2, cutoff=0.8)
            leaf = [k for k in keys if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1] and k != key]
            hints = list(dict.fromkeys([*close, *leaf]))[:3]
            holder = _file_with_key(argv, key)
            where = f"{holder}: " if holder else ""
            did = f"; did you mean {' or '.join(hints)}?" if hints else ""
            return UsageError(f"{where}unknown key '{key}'{did} (every key: python -m fer_zoo {command} --help)")
    one_line = " ".join(message.split())
    one_line = re.sub(r"^Parser key \"([^\"]+)\": ", r"\1: ", one_line)
    return UsageError(one_line)


def parse_args(parser: Any, argv: Sequence[str], command: str) -> Any:
    """``parser.parse_args(argv)`` for a jsonargparse parser built with ``exit_on_error=False``; mistakes (a missing
    or broken config file, an unknown key, a bad value) raise :class:`UsageError`."""
    from jsonargparse import ArgumentError

    check_config_files(argv)
    try:
        return parser.parse_args(list(argv))
    except ArgumentError as err:
        raise from_argument_error(err, command, argv, parser_keys(parser)) from None


def parser_keys(parser: Any) -> list[str]:
    """Dotted keys a jsonargparse parser accepts (its defaults' keys; subclass ``init_args`` are not listed)."""
    try:
        return [k for k in parser.get_defaults().keys() if not k.startswith("__")]  # noqa: SIM118 (a Namespace)
    except Exception:  # a parser whose defaults cannot be resolved still gets an error message, without hints
        return []


_SECTIONS = (("datamodules/sources.py", "data.source"), ("datamodules/feature_datamodule.py", "data"),
             ("fer_zoo/training/", "model"))


def from_config_value_error(err: BaseException) -> UsageError:
    """A ValueError/KeyError raised while building the source, data module or model from the config -> one line that
    starts with the config section it came from (``data.source``, ``data``, ``model``)."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    text = " ".join(str(text).split())
    section = None
    tb = err.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename.replace("\\", "/")
        section = next((sec for part, sec in _SECTIONS if part in name), section)
        tb = tb.tb_next
    if section and not text.startswith(section):
        text = f"{section}: {text}"
    return UsageError(text)
