"""Imports inside ``fer_zoo.extraction`` point one way: ``run`` -> ``lightning_parts`` (lazily), both -> ``clip_item``;
``lightning_parts`` never imports ``run`` (they imported each other)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fer_zoo" / "extraction"


def imported_modules(name: str) -> set[str]:
    """Every module a file of ``fer_zoo.extraction`` imports, at the top or inside functions."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_run_and_lightning_parts_do_not_import_each_other() -> None:
    assert "fer_zoo.extraction.lightning_parts" in imported_modules("run")
    assert "fer_zoo.extraction.run" not in imported_modules("lightning_parts")
    for name in ("run", "lightning_parts"):
        assert "fer_zoo.extraction.clip_item" in imported_modules(name)
    assert not {m for m in imported_modules("clip_item") if m.startswith("fer_zoo")}


def test_clip_item_is_still_importable_from_run() -> None:
    from fer_zoo.extraction.clip_item import ClipItem
    from fer_zoo.extraction.run import ClipItem as FromRun

    assert FromRun is ClipItem
