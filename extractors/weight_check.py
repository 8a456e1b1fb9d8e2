"""Reading a weights file, and checking that it fits the network it is loaded into, for every frame encoder.

Two failures must never pass as pretrained features:

- a file that does not fit (another architecture, keys under a wrapper's prefix, a tensor of another shape): a
  non-strict load keeps the random initialisation of every tensor it cannot place, and the store would record the
  file as its weights. :func:`match_state_dict` compares the file with the network's own ``state_dict()`` (every
  expected tensor present, with its shape; nothing left over); :meth:`Match.error` is one line naming the file and
  the first missing, unexpected and mis-shaped keys.
- a file cut short (an interrupted copy or download) or otherwise unreadable: :func:`read_state_dict` and
  :func:`check_complete` raise :class:`WeightsFileError` naming the file and saying so, instead of the reading
  library's traceback.

A state dict whose every key carries one wrapper prefix (:data:`KNOWN_PREFIXES`: ``module.`` from DDP,
``model.`` from a Lightning module holding the network as ``self.model``, ``_orig_mod.`` from ``torch.compile``,
``backbone.``/``encoder.``) is accepted only when stripping that one prefix makes every key and shape match the
network exactly; :meth:`Match.note` says so for the store's ``weights_source``.

Formats: safetensors (read with the ``safetensors`` library, which refuses a file its header does not cover
exactly), torch's zip checkpoints and legacy pickles (``torch.load(weights_only=True)``: tensors and plain
containers only). Nothing here imports ``fer_zoo``.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

#: Prefixes a training wrapper puts before every key (stripped only when the result then fits exactly).
KNOWN_PREFIXES = ("module.", "model.", "_orig_mod.", "backbone.", "encoder.")
#: Containers a checkpoint may hold its state dict in (Lightning: ``state_dict``; others ``model``/``net``).
CONTAINER_KEYS = ("state_dict", "model", "net")
#: BatchNorm's step counter: a file may lack it (torch's BatchNorm fills it in); it never changes a feature.
OPTIONAL_SUFFIX = "num_batches_tracked"
SHOW = 3  # keys shown per kind of mismatch

_ZIP_MAGIC = b"PK\x03\x04"


class WeightsFileError(ValueError):
    """A weights file is incomplete, unreadable, or does not fit the network: the message names the file."""


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _raw(path: Path) -> Any:
    """The file's top-level object (a dict of tensors, or a checkpoint holding one). Raises WeightsFileError."""
    size = path.stat().st_size
    if size == 0:
        raise WeightsFileError(f"{path}: empty weights file (0 bytes): copy or download it again")
    with open(path, "rb") as f:
        head = f.read(9)
    if path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{"):  # 8-byte header length, then JSON
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise WeightsFileError(f"{path}: incomplete or corrupt safetensors file ({size} bytes; safetensors: "
                                   f"{_one_line(err)}): copy or download it again") from err
    if head.startswith(_ZIP_MAGIC) and not zipfile.is_zipfile(path):
        # torch's checkpoints are zip archives, whose directory is written last: a file cut short has none
        raise WeightsFileError(f"{path}: incomplete torch checkpoint ({size} bytes; the zip archive ends before its "
                               "central directory, so the file was cut short): copy or download it again")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsFileError(f"{path}: not a plain checkpoint of tensors: torch.load(weights_only=True) refuses it "
                               f"({_one_line(err)})") from err
    except (EOFError, RuntimeError, OSError, ValueError) as err:
        cut = isinstance(err, EOFError) or "EOF" in str(err)
        what = "incomplete torch checkpoint (it ends early)" if cut else "unreadable torch checkpoint"
        raise WeightsFileError(f"{path}: {what} ({size} bytes; {type(err).__name__}: {_one_line(err)}): copy or "
                               "download it again") from err


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a state dict, or one held under ``state_dict``/``model``/``net``.

    Keys are returned as stored (no prefix is stripped here: see :func:`match_state_dict`). Raises
    ``FileNotFoundError`` (no such file) and :class:`WeightsFileError` (empty, cut short, corrupt, not tensors),
    each naming the file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"weights file {p} does not exist")
    obj = _raw(p)
    for key in CONTAINER_KEYS:
        if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()) \
                and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items()):
        kind = f"a dict with keys {sorted(map(str, obj))[:5]}" if isinstance(obj, dict) else type(obj).__name__
        raise WeightsFileError(f"{p}: not a state dict of tensors ({kind})")
    return dict(obj)


def check_complete(path: str | Path) -> None:
    """Cheap completeness check without reading the tensors: a safetensors header must cover the file exactly, a
    torch zip checkpoint must have its central directory. Other formats pass (only a full read can tell).

    Raises ``FileNotFoundError`` or :class:`WeightsFileError` naming the file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"weights file {p} does not exist")
    with open(p, "rb") as f:
        head = f.read(9)
    if p.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{"):
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(p), framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise WeightsFileError(f"{p}: incomplete or corrupt safetensors file ({p.stat().st_size} bytes; "
                                   f"safetensors: {_one_line(err)}): copy or download it again") from err
    elif not head:
        raise WeightsFileError(f"{p}: empty weights file (0 bytes): copy or download it again")
    elif head.startswith(_ZIP_MAGIC) and not zipfile.is_zipfile(p):
        raise WeightsFileError(f"{p}: incomplete torch checkpoint ({p.stat().st_size} bytes; the zip archive ends "
                               "before its central directory, so the file was cut short): copy or download it again")


@dataclass(frozen=True)
class KeyDiff:
    """How a state dict differs from a network's: keys the network needs that the file lacks, keys the network has
    no place for, and ``(key, file shape, network shape)`` of tensors whose shapes differ."""

    expected: int
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """One line, e.g. ``40 of 40 expected tensors missing (first: stem.0.weight, ...), 40 unexpected (...)``."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} of {self.expected} expected tensors missing "
                         f"(first: {', '.join(self.missing[:SHOW])})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected (first: {', '.join(self.unexpected[:SHOW])})")
        if self.mismatched:
            shown = ", ".join(f"{k} is {list(a)} in the file, {list(b)} in the network"
                              for k, a, b in self.mismatched[:SHOW])
            parts.append(f"{len(self.mismatched)} of another shape ({shown})")
        return ", ".join(parts) or "every tensor matches"


def diff_state_dict(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor],
                    ignore: tuple[str, ...] = ()) -> KeyDiff:
    """Compare ``found`` (a file's tensors) with ``expected`` (the network's ``state_dict()``), leaving out keys
    that start with any of ``ignore`` (e.g. a classifier the extractor drops) on both sides."""
    exp = {k: tuple(v.shape) for k, v in expected.items() if not k.startswith(ignore)}
    got = {k: tuple(v.shape) for k, v in found.items() if not k.startswith(ignore)}
    missing = tuple(k for k in exp if k not in got and not k.endswith(OPTIONAL_SUFFIX))
    unexpected = tuple(sorted((k for k in got if k not in exp), key=lambda k: k.endswith(OPTIONAL_SUFFIX)))
    mismatched = tuple((k, got[k], exp[k]) for k in exp if k in got and got[k] != exp[k])
    return KeyDiff(sum(not k.endswith(OPTIONAL_SUFFIX) for k in exp), missing, unexpected, mismatched)


@dataclass(frozen=True)
class Match:
    """A file's tensors as the network names them: ``prefix`` is the wrapper prefix stripped from every key (or
    ``None``), ``diff`` what still differs (empty: an exact fit, safe to load strictly)."""

    state_dict: dict[str, torch.Tensor]
    prefix: str | None
    diff: KeyDiff

    @property
    def exact(self) -> bool:
        return not self.diff

    def note(self) -> str:
        """For ``weights_source``: empty for a plain file, else which prefix was stripped (a fitting file only)."""
        if self.prefix is None:
            return ""
        return (f"; every key carried the prefix {self.prefix!r} (as Lightning/DDP checkpoints write them), "
                f"stripped: all {self.diff.expected} tensors then matched the network exactly")

    def error(self, file: str | Path, what: str, cause: BaseException | None = None) -> WeightsFileError:
        """One line: the file, what it was loaded into, the first differing keys, and (``cause``) why the library's
        own conversion route failed too."""
        text = f"{file}: does not fit {what}: {self.diff.describe()}"
        if self.prefix is not None:
            text += f" (compared after stripping the prefix {self.prefix!r} that every key carries)"
        if cause is not None:
            text += f"; its conversion route failed too ({type(cause).__name__}: {_one_line(cause)})"
        return WeightsFileError(text)


def match_state_dict(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor],
                     ignore: tuple[str, ...] = ()) -> Match:
    """``found`` as is when it fits ``expected`` exactly; else, when every key starts with one of
    :data:`KNOWN_PREFIXES`, with that prefix stripped (its :class:`Match` says whether that fits); else as is,
    with what differs."""
    diff = diff_state_dict(expected, found, ignore)
    if not diff:
        return Match(dict(found), None, diff)
    for prefix in KNOWN_PREFIXES:
        if found and all(k.startswith(prefix) for k in found):
            stripped = {k[len(prefix):]: v for k, v in found.items()}
            return Match(stripped, prefix, diff_state_dict(expected, stripped, ignore))
    return Match(dict(found), None, diff)


def load_matched(net: torch.nn.Module, match: Match, file: str | Path, what: str,
                 ignore: tuple[str, ...] = ()) -> None:
    """Load an exact :class:`Match` into ``net`` (keys under ``ignore`` left out); torch's own report must agree
    that nothing but BatchNorm step counters was left unset. Raises :class:`WeightsFileError` otherwise."""
    if not match.exact:
        raise match.error(file, what)
    sd = {k: v for k, v in match.state_dict.items() if not k.startswith(ignore)}
    result = net.load_state_dict(sd, strict=False)
    left = [k for k in result.missing_keys if not k.startswith(ignore) and not k.endswith(OPTIONAL_SUFFIX)]
    if left or result.unexpected_keys:
        raise WeightsFileError(f"{file}: does not fit {what}: torch left {left[:SHOW]} unset and found no place for "
                               f"{list(result.unexpected_keys)[:SHOW]}")
