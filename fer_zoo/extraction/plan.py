"""What a (re)run extracts: every clip not yet done from its source as it is now; the rest is kept.

Per clip, from the store's finished results (:func:`datamodules.feature_store.stored_clips`) and the clip's current
provenance (:func:`datamodules.provenance.sources_provenance`):

- ``new``: no result yet;
- ``changed``: results exist, none made from the source as it is now (a modified file, a frame folder with a touched,
  added or removed frame, or a path that now resolves to another file: the same relative paths under another root);
- ``retry``: only failed results from this very source, and ``retry_failed`` is set;
- kept, reported as *gone*: the source no longer exists but an earlier result is ok (its features stay, so an
  unmounted disk costs no data; the summary lists them and the feature DataModule reports them as changed);
- kept, *unknown*: results packed before provenance was recorded (nothing to compare with);
- kept (skipped): a result from the source as it is now (ok, or failed and not retried).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from datamodules.feature_store import StoredClip, packed_as_now, stored_clips
from datamodules.provenance import Provenance, how_changed
from datamodules.records import ClipRecord

REASONS = ("new", "changed", "retry")


@dataclass
class RerunPlan:
    """``todo``: the clips to extract, in source order; ``why``: clip id -> one of :data:`REASONS`; ``changes``:
    clip id -> how a changed source differs (``modified``, ``other file: <old path>``); ``gone``: clip id -> the
    stored path of a source that no longer exists (features kept); ``unknown``: clips kept with no provenance."""

    todo: list[ClipRecord] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)
    changes: dict[str, str] = field(default_factory=dict)
    gone: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(self.why.values())
        return {r: c[r] for r in REASONS if c[r]}

    def note(self) -> str:
        """`` (new 3, changed 2)`` for the log line; empty when nothing is extracted."""
        counts = self.counts()
        return f" ({', '.join(f'{r} {n}' for r, n in counts.items())})" if counts else ""


def plan_rerun(clips: list[ClipRecord], stored: dict[str, list[StoredClip]], current: dict[str, Provenance],
               retry_failed: bool = False) -> RerunPlan:
    """Decide per clip (see the module docstring); ``current`` holds every clip's provenance now."""
    plan = RerunPlan()
    for clip in clips:
        cid, now = clip.clip_id, current[clip.clip_id]
        results = stored.get(cid)
        why = None
        if not results:
            why = "new"
        else:
            same = [r for r in results if r.provenance == now]
            if same:
                if retry_failed and all(r.status != "ok" for r in same):
                    why = "retry"
            elif not any(r.provenance.known for r in results):  # packed before provenance was recorded
                plan.unknown.append(cid)
                if retry_failed and all(r.status != "ok" for r in results):
                    why = "retry"
            elif now.missing and any(r.status == "ok" for r in results):
                plan.gone[cid] = next(r.provenance.path for r in reversed(results) if r.status == "ok")
            else:
                why = "changed"
                last = next(r.provenance for r in reversed(results) if r.provenance.known)
                change = how_changed(last, now)
                plan.changes[cid] = f"{change}: was {last.path}" if change == "other file" else change
        if why is not None:
            plan.todo.append(clip)
            plan.why[cid] = why
    return plan


def plan_store_rerun(path: Path, clips: list[ClipRecord], current: dict[str, Provenance],
                     retry_failed: bool = False) -> RerunPlan:
    """:func:`plan_rerun` over the store at ``path`` (which may not exist yet). A packed store whose clips are
    ``clips``, in order, each made from its source as it is now, is told apart by whole-column comparisons first
    (:func:`datamodules.feature_store.packed_as_now`): the no-op rerun, with an empty plan and no object per clip."""
    if not path.exists():
        return plan_rerun(clips, {}, current, retry_failed)
    if packed_as_now(path, [c.clip_id for c in clips], [current[c.clip_id] for c in clips], ok_only=retry_failed):
        return RerunPlan()
    return plan_rerun(clips, stored_clips(path), current, retry_failed)
