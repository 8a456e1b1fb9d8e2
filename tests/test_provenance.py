"""Per-clip provenance (issue 17): a store never serves features of a file that has changed.

Fingerprints and rerun plans on small files made here; reruns through the real extraction run (a small ResNet-18 at
64 px, random weights: fast, and deterministic per file, which is all a provenance test needs) and, for the issue's
two-manifest case, through ``python -m fer_zoo extract`` as a user runs it; the DataModule's checks on those stores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datamodules.feature_datamodule import FeatureDataModule
from datamodules.feature_store import ClipResult, FeatureStore, ShardWriter, StoredClip, pack, store_path
from datamodules.provenance import MISSING, UNKNOWN, Provenance, ProvenanceError, source_provenance
from datamodules.records import ClipRecord
from datamodules.sources import ManifestSource
from fer_zoo.extraction.plan import plan_rerun

REPO = Path(__file__).resolve().parents[1]
PHOTOS = sorted((REPO / "data" / "sample" / "images").glob("*/*.jpg"))
SPEC = {"name": "resnet18", "config": {"weights": "none", "image_size": 64}}
MOBILENET = {"name": "mobilenet_v2", "config": {"image_size": 112}}  # offline ImageNet weights: same numbers every run


def _photo(i: int) -> Path:
    return PHOTOS[(i * 7) % len(PHOTOS)]


def _touch(path: Path, seconds_later: float = 5.0) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + int(seconds_later * 1e9)))


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -------------------------------------------------------------------------------------------------- fingerprints


def test_fingerprint_of_a_file_follows_size_and_mtime(tmp_path: Path) -> None:
    f = tmp_path / "a.jpg"
    shutil.copy(_photo(0), f)
    first = source_provenance(f)
    assert first == source_provenance(str(f)) and first.path == str(f.resolve())
    assert first.fingerprint == f"file:{f.stat().st_size}:{f.stat().st_mtime_ns}"
    _touch(f)
    assert source_provenance(f).fingerprint != first.fingerprint
    link = tmp_path / "link.jpg"
    link.symlink_to(f)
    assert source_provenance(link) == source_provenance(f)  # the resolved file, not the link
    f.unlink()
    assert source_provenance(f) == Provenance(str(f), MISSING)
    assert source_provenance(link).missing  # dangling


def test_fingerprint_of_a_frame_folder_covers_every_frame_and_only_frames(tmp_path: Path) -> None:
    d = tmp_path / "clip"
    d.mkdir()
    for i in range(5):
        shutil.copy(_photo(0), d / f"{i:03d}.jpg")
    first = source_provenance(d)
    assert first.fingerprint.startswith("frames:5:")
    (d / "notes.txt").write_text("not a frame")  # the reader skips it, so the fingerprint does too
    assert source_provenance(d) == first
    _touch(d / "003.jpg")
    touched = source_provenance(d)
    assert touched.fingerprint.startswith("frames:5:") and touched != first
    shutil.copy(_photo(0), d / "005.jpg")
    added = source_provenance(d)
    assert added.fingerprint.startswith("frames:6:")
    st = (d / "004.jpg").stat()
    (d / "004.jpg").rename(d / "006.jpg")  # renamed, same size and mtime: the frame order changed
    os.utime(d / "006.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))
    renamed = source_provenance(d)
    assert renamed.fingerprint.startswith("frames:6:") and renamed != added
    (d / "006.jpg").unlink()
    assert source_provenance(d).fingerprint.startswith("frames:5:")


# ------------------------------------------------------------------------------------------------- rerun plans


def test_plan_says_why_each_clip_is_extracted() -> None:
    clips = [ClipRecord(c, f"/data/{c}.mp4", "anger") for c in "abcdefgh"]
    p = {c: Provenance(f"/data/{c}.mp4", "file:10:1") for c in "abcdefgh"}
    now = {**p, "b": Provenance("/data/b.mp4", "file:10:2"), "c": Provenance("/other/c.mp4", "file:10:1"),
           "e": Provenance("/data/e.mp4", MISSING)}
    stored = {
        "a": [StoredClip("ok", p["a"])],  # unchanged: kept
        "b": [StoredClip("ok", p["b"])],  # modified
        "c": [StoredClip("ok", p["c"])],  # same name, another file (the two manifests)
        # "d": never extracted
        "e": [StoredClip("ok", p["e"])],  # deleted: kept and reported
        "f": [StoredClip("failed", p["f"])],  # failed, unchanged: skipped unless retry_failed
        "g": [StoredClip("ok", Provenance("", UNKNOWN))],  # packed before provenance was recorded
        "h": [StoredClip("ok", Provenance("/data/h.mp4", "file:9:0")), StoredClip("ok", p["h"])],  # resumed
    }
    plan = plan_rerun(clips, stored, now)
    assert [c.clip_id for c in plan.todo] == ["b", "c", "d"]
    assert plan.why == {"b": "changed", "c": "changed", "d": "new"}
    assert plan.changes == {"b": "modified", "c": "other file: was /data/c.mp4"}
    assert plan.gone == {"e": "/data/e.mp4"} and plan.unknown == ["g"]
    assert plan.note() == " (new 1, changed 2)"
    retry = plan_rerun(clips, stored, now, retry_failed=True)
    assert retry.why["f"] == "retry" and "a" not in retry.why


def test_pack_keeps_the_result_made_from_the_current_source(tmp_path: Path) -> None:
    path = tmp_path / "store"
    old, new = Provenance("/x.jpg", "file:1:1"), Provenance("/x.jpg", "file:1:2")
    meta = {"dim": 2}

    def write(value: float, prov: Provenance, status: str = "ok") -> None:
        w = ShardWriter(path, {"r": 1})
        if status == "ok":
            w.add(ClipResult("x", np.full((1, 2), value), np.ones(1, bool), np.zeros(1, np.int64), np.zeros(1))
                  .from_source(prov))
        else:
            w.add(ClipResult.failed("x", "corrupt").from_source(prov))
        w.flush()

    write(1.0, old)
    pack(path, ["x"], meta, {"x": old})
    write(2.0, new)  # re-extracted after the file changed: replaces the packed result
    pack(path, ["x"], meta, {"x": new})
    store = FeatureStore(path)
    assert store.clip("x")[0][0, 0] == 2.0
    assert store.provenance().iloc[0].tolist() == ["x", "/x.jpg", "file:1:2"]
    write(3.0, new, status="failed")  # the changed file fails: its old features must not stay
    newer = Provenance("/x.jpg", "file:1:3")
    write(0.0, newer, status="failed")
    pack(path, ["x"], meta, {"x": newer})
    assert FeatureStore(path).status("x") == ("failed", "corrupt")


# ------------------------------------------------------------------------------------- reruns of the real run


def _extract(clips: list[ClipRecord], root: Path, source_name: str = "manifest"):  # noqa: ANN202
    from fer_zoo.extraction.run import ExtractorSpec, extract_modality

    class Source:
        name = source_name

    logged: list[str] = []
    summary = extract_modality(Source(), clips, root, "mn", ExtractorSpec(**SPEC), num_workers=0,
                               trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False},
                               log=logged.append)
    return summary, "\n".join(logged)


@pytest.fixture()
def frame_folders(tmp_path: Path) -> list[ClipRecord]:
    clips = []
    for c in range(3):
        d = tmp_path / "frames" / f"clip{c}"
        d.mkdir(parents=True)
        for i in range(4):
            shutil.copy(_photo(c), d / f"{i:03d}.jpg")
        clips.append(ClipRecord(f"clip{c}", str(d), "anger"))
    return clips


@pytest.mark.slow
def test_touching_one_frame_re_extracts_that_clip_only(tmp_path: Path, frame_folders: list[ClipRecord]) -> None:
    first, _ = _extract(frame_folders, tmp_path / "store")
    assert first.ok == 3 and first.extracted == {"new": 3}
    before = FeatureStore(first.path)
    feats = {c.clip_id: np.array(before.clip(c.clip_id)[0]) for c in frame_folders}
    unchanged = _digest(first.path)
    again, log = _extract(frame_folders, tmp_path / "store")  # nothing changed: a no-op that touches nothing
    assert again.skipped == 3 and again.extracted == {} and "0 to extract, 3 already done" in log
    assert _digest(first.path) == unchanged
    _touch(Path(frame_folders[1].path) / "002.jpg")
    third, log = _extract(frame_folders, tmp_path / "store")
    assert "1 to extract, 2 already done (changed 1)" in log, log
    assert third.extracted == {"changed": 1} and third.changed == {"clip1": "modified"}
    after = FeatureStore(third.path)
    assert after.provenance().set_index("clip_id").loc["clip1", "source_fingerprint"] == \
        source_provenance(frame_folders[1].path).fingerprint
    for cid in ("clip0", "clip2"):  # kept as they were (not extracted again)
        assert np.array_equal(after.clip(cid)[0], feats[cid])


@pytest.mark.slow
def test_a_deleted_source_is_reported_and_its_features_kept(tmp_path: Path, frame_folders: list[ClipRecord],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    first, _ = _extract(frame_folders, tmp_path / "store")
    kept = np.array(FeatureStore(first.path).clip("clip2")[0])
    shutil.rmtree(frame_folders[2].path)
    again, log = _extract(frame_folders, tmp_path / "store")
    assert "0 to extract, 3 already done" in log
    assert again.gone == {"clip2": str(Path(frame_folders[2].path).resolve())} and again.ok == 3
    assert np.array_equal(FeatureStore(first.path).clip("clip2")[0], kept)
    # Training on it says so (one line, with the count and the refresh command); strict refuses.
    source = _FixedSource(frame_folders)
    with caplog.at_level(logging.WARNING):
        FeatureDataModule(source, str(tmp_path / "store"), ["mn"], num_frames=2, val_fraction=0.0,
                          test_fraction=0.34, num_workers=0, allow_random_weights=True)
    lines = [r.getMessage() for r in caplog.records if "sources changed" in r.getMessage()]
    assert len(lines) == 1 and "1 of 3 clips' sources changed" in lines[0] and "gone 1" in lines[0]
    assert "python -m fer_zoo extract" in lines[0]
    with pytest.raises(ProvenanceError, match="strict_provenance"):
        FeatureDataModule(source, str(tmp_path / "store"), ["mn"], num_frames=2, val_fraction=0.0,
                          test_fraction=0.34, num_workers=0, strict_provenance=True,
                          allow_random_weights=True)


class _FixedSource:
    """A manifest-like source over given clip records (one class; seeded splits)."""

    name = "manifest"
    folds: list[int] = []

    def __init__(self, records: list[ClipRecord]) -> None:
        from datamodules.labels import LabelVocabulary

        self.records = records
        self.vocabulary = LabelVocabulary("one", ("anger",))

    def clips(self) -> list[ClipRecord]:
        return list(self.records)


# ----------------------------------------------------------------------------------- the DataModule's checks


def _fake_store(root: Path, modality: str, clips: dict[str, Provenance | None], dim: int = 3) -> Path:
    path = store_path(root, modality, f"fake{modality}", "abcd1234")
    w = ShardWriter(path, {"m": modality})
    for cid in clips:
        w.add(ClipResult(cid, np.ones((2, dim), np.float32), np.ones(2, bool), np.arange(2), np.arange(2) / 25)
              .from_source(clips[cid]))
    w.flush()
    pack(path, list(clips), {"dim": dim, "source": {"name": "manifest"}})
    return path


def _photo_clips(tmp_path: Path, n: int) -> list[ClipRecord]:
    out = []
    for i in range(n):
        f = tmp_path / "clips" / f"p{i}.jpg"
        f.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(_photo(i), f)
        out.append(ClipRecord(f"p{i}", str(f), "anger"))
    return out


def _dm(root: Path, clips: list[ClipRecord], **kw: object) -> FeatureDataModule:
    return FeatureDataModule(_FixedSource(clips), str(root), ["face", "pose"], num_frames=2, val_fraction=0.0,
                             test_fraction=0.34, num_workers=0, **kw)


def test_stores_built_from_different_sources_for_a_clip_are_refused(tmp_path: Path) -> None:
    clips = _photo_clips(tmp_path, 3)
    now = {c.clip_id: source_provenance(c.path) for c in clips}
    _fake_store(tmp_path / "s", "face", now)
    other = {**now, "p1": Provenance(now["p1"].path, "file:1:1")}  # pose extracted from p1 in another state
    pose = _fake_store(tmp_path / "s", "pose", other)
    with pytest.raises(ProvenanceError) as err:
        _dm(tmp_path / "s", clips)
    msg = str(err.value)
    assert "'p1'" in msg and "face" in msg and str(pose) in msg and "file:1:1" in msg and "1 clips in all" in msg


def test_stores_that_reached_the_same_files_through_other_paths_pair_with_one_line(tmp_path: Path) -> None:
    """A tree moved between two extractions (mv keeps size and mtime): the same files, so the clips pair, and one
    line says what was assumed; strict_provenance refuses. A changed file stays an error (test above)."""
    clips = _photo_clips(tmp_path, 3)
    before = {c.clip_id: source_provenance(c.path) for c in clips}
    _fake_store(tmp_path / "s", "face", before)
    (tmp_path / "clips").rename(tmp_path / "moved")
    clips = [ClipRecord(c.clip_id, str(tmp_path / "moved" / Path(c.path).name), c.label) for c in clips]
    after = {c.clip_id: source_provenance(c.path) for c in clips}
    assert all(after[k].path != before[k].path and after[k].fingerprint == before[k].fingerprint for k in after)
    _fake_store(tmp_path / "s", "pose", after)
    dm = _dm(tmp_path / "s", clips)
    (line,) = [w for w in dm.provenance_warnings if "different paths" in w]
    assert line.startswith("3 clips were extracted through different paths") and str(tmp_path / "moved") in line
    assert len(dm.split_ids["train"]) + len(dm.split_ids["test"]) == 3  # nothing dropped
    with pytest.raises(ProvenanceError, match="strict_provenance refuses it"):
        _dm(tmp_path / "s", clips, strict_provenance=True)


def test_another_file_of_equal_size_and_mtime_is_still_another_source(tmp_path: Path) -> None:
    """Same size and mtime but another name (images of one size unpacked from one archive): not a moved tree."""
    clips = _photo_clips(tmp_path, 3)
    now = {c.clip_id: source_provenance(c.path) for c in clips}
    _fake_store(tmp_path / "s", "face", now)
    twin = tmp_path / "clips" / "twin.jpg"
    shutil.copy2(clips[1].path, twin)  # copy2 keeps the mtime: an equal fingerprint under another name
    assert source_provenance(twin).fingerprint == now["p1"].fingerprint
    _fake_store(tmp_path / "s", "pose", {**now, "p1": source_provenance(twin)})
    with pytest.raises(ProvenanceError, match="'p1' was extracted from different sources"):
        _dm(tmp_path / "s", clips)


def test_matching_fresh_stores_pass_silently(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clips = _photo_clips(tmp_path, 3)
    now = {c.clip_id: source_provenance(c.path) for c in clips}
    for m in ("face", "pose"):
        _fake_store(tmp_path / "s", m, now)
    with caplog.at_level(logging.WARNING):
        dm = _dm(tmp_path / "s", clips, strict_provenance=True)
    assert dm.provenance_warnings == [] and not caplog.records


def test_stores_packed_before_provenance_open_with_one_line(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    clips = _photo_clips(tmp_path, 3)
    for m in ("face", "pose"):
        path = _fake_store(tmp_path / "s", m, {c.clip_id: None for c in clips})
        # what such a store looks like: no provenance key in meta.json, no provenance columns in the index
        meta = json.loads((path / "meta.json").read_text())
        del meta["provenance"]
        (path / "meta.json").write_text(json.dumps(meta))
        idx = pd.read_parquet(path / "index.parquet").drop(columns=["source_path", "source_fingerprint"])
        idx.to_parquet(path / "index.parquet", index=False)
    with caplog.at_level(logging.WARNING):
        dm = _dm(tmp_path / "s", clips)
    assert len(dm.provenance_warnings) == 2 and all("unknown" in w for w in dm.provenance_warnings)
    assert dm.dataset("train")[0]["features"]["face"].shape == (2, 3)
    with pytest.raises(ProvenanceError, match="packed before"):
        _dm(tmp_path / "s", clips, strict_provenance=True)


# ---------------------------------------------------------------------------- the two manifests (CLI)


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "fer_zoo", "extract", "--config", str(config), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)


def _manifest_dataset(folder: Path, photos: list[Path], store_root: Path) -> Path:
    """``clips/x.jpg`` (train) and ``clips/y.jpg`` (test): the same relative paths in every such folder."""
    (folder / "clips").mkdir(parents=True)
    for name, photo in zip(("x", "y"), photos):
        shutil.copy(photo, folder / "clips" / f"{name}.jpg")
    (folder / "manifest.csv").write_text("path,label,split\nclips/x.jpg,anger,train\nclips/y.jpg,happiness,test\n")
    cfg = {"source": {"class_path": "datamodules.sources.ManifestSource",
                      "init_args": {"csv": str(folder / "manifest.csv")}},
           "store_root": str(store_root), "num_workers": 0, "modalities": {"mn": MOBILENET}}
    (folder / "extract.yaml").write_text(json.dumps(cfg))
    return folder / "extract.yaml"


@pytest.mark.slow
def test_two_manifests_with_the_same_relative_paths_re_extract(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "features"
    first = _manifest_dataset(tmp_path / "one", [_photo(0), _photo(1)], store)
    second = _manifest_dataset(tmp_path / "two", [_photo(2), _photo(3)], store)
    run1 = _cli(first)
    assert run1.returncode == 0, run1.stdout + run1.stderr
    # Training on the second manifest with the first one's store: reported, and refused when strict.
    source = ManifestSource(tmp_path / "two" / "manifest.csv")
    kw = {"num_frames": 2, "val_fraction": 0.0, "num_workers": 0, "allow_random_weights": True}
    with caplog.at_level(logging.WARNING):
        dm = FeatureDataModule(source, str(store), ["mn"], **kw)
    assert len(dm.provenance_warnings) == 1 and "2 of 2 clips' sources changed" in dm.provenance_warnings[0]
    assert "other file 2" in dm.provenance_warnings[0]
    with pytest.raises(ProvenanceError):
        FeatureDataModule(source, str(store), ["mn"], strict_provenance=True, **kw)

    run2 = _cli(second)
    assert run2.returncode == 0, run2.stdout + run2.stderr
    assert "2 to extract, 0 already done (changed 2)" in run2.stdout, run2.stdout
    assert "SOURCE CHANGED [mn] clips/x: other file: was " + str((tmp_path / "one/clips/x.jpg").resolve()) \
        in run2.stdout, run2.stdout
    # Run again with nothing changed: everything skipped, and Lightning (most of a no-op's time) never imported.
    code = ("import sys; from fer_zoo.extraction.command import main; rc = main(['--config', sys.argv[1]]); "
            "print('lightning imported:', 'lightning' in sys.modules); sys.exit(rc)")
    run3 = subprocess.run([sys.executable, "-c", code, str(second)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "WANDB_MODE": "offline"}, timeout=600)
    assert run3.returncode == 0, run3.stdout + run3.stderr
    assert "0 to extract, 2 already done" in run3.stdout and "lightning imported: False" in run3.stdout, run3.stdout
    caplog.clear()
    assert FeatureDataModule(source, str(store), ["mn"], strict_provenance=True, **kw).provenance_warnings == []
    # The store now holds exactly what a fresh extraction of the second manifest holds.
    from fer_zoo.extraction.run import ExtractorSpec, extract_modality

    fresh = extract_modality(source, source.clips(), tmp_path / "fresh", "mn", ExtractorSpec(**MOBILENET),
                             num_workers=0, trainer_kwargs={"enable_progress_bar": False}, log=lambda *a: None)
    a = next((store / "mn").glob("*/meta.json")).parent
    for name in ("features.npy", "valid.npy", "index.parquet"):
        assert (a / name).read_bytes() == (fresh.path / name).read_bytes(), name


def test_a_store_packed_from_the_sources_as_they_are_is_a_no_op_by_whole_columns(tmp_path: Path) -> None:
    """``packed_as_now`` (the rerun's no-op check) says yes only for exactly these clips, in order, each from its
    source as it is now; every other case goes to the per-clip plan, which gives the same answer clip by clip."""
    from datamodules.feature_store import packed_as_now, stored_clips
    from fer_zoo.extraction.plan import plan_store_rerun

    clips = _photo_clips(tmp_path, 3)
    ids = [c.clip_id for c in clips]
    now = {c.clip_id: source_provenance(c.path) for c in clips}
    path = _fake_store(tmp_path / "s", "face", now)
    prov = [now[i] for i in ids]
    assert packed_as_now(path, ids, prov) and packed_as_now(path, ids, prov, ok_only=True)
    assert plan_store_rerun(path, clips, now) == plan_rerun(clips, stored_clips(path), now)
    assert not packed_as_now(path, ids[::-1], prov[::-1])  # another order: the pack would differ
    assert not packed_as_now(path, ids[:2], prov[:2])  # a clip fewer (or more) in the source
    _touch(Path(clips[1].path))
    touched = {**now, "p1": source_provenance(clips[1].path)}
    assert not packed_as_now(path, ids, [touched[i] for i in ids])
    plan = plan_store_rerun(path, clips, touched)
    assert [c.clip_id for c in plan.todo] == ["p1"] and plan.why == {"p1": "changed"}
    moved = {**now, "p2": Provenance("/elsewhere/p2.jpg", now["p2"].fingerprint)}  # same stat, another file
    assert not packed_as_now(path, ids, [moved[i] for i in ids])
    # Unpacked shards (a killed run): not a no-op, they must be packed.
    w = ShardWriter(path, {"m": "face"})
    w.add(ClipResult.failed("p0", "corrupt").from_source(now["p0"]))
    w.flush()
    assert not packed_as_now(path, ids, prov)
    # A failed clip: kept unless retry_failed, which must see it.
    failed = _fake_store(tmp_path / "f", "face", now)
    idx = pd.read_parquet(failed / "index.parquet")
    idx.loc[0, "status"] = "failed"
    idx.to_parquet(failed / "index.parquet", index=False)
    assert packed_as_now(failed, ids, prov) and not packed_as_now(failed, ids, prov, ok_only=True)
    assert [c.clip_id for c in plan_store_rerun(failed, clips, now, retry_failed=True).todo] == ["p0"]
    # A store packed before provenance was recorded: no columns to compare, so the per-clip plan decides.
    old = _fake_store(tmp_path / "o", "face", now)
    pd.read_parquet(old / "index.parquet").drop(columns=["source_path", "source_fingerprint"]).to_parquet(
        old / "index.parquet", index=False)
    assert not packed_as_now(old, ids, prov) and plan_store_rerun(old, clips, now).unknown == ids


def test_clips_without_provenance_in_a_newer_store_are_counted(tmp_path: Path) -> None:
    """An older store to which a rerun added clips: the old clips' provenance stays unknown, and training says so."""
    clips = _photo_clips(tmp_path, 3)
    now = {c.clip_id: source_provenance(c.path) for c in clips}
    _fake_store(tmp_path / "s", "face", {**now, "p0": None})
    _fake_store(tmp_path / "s", "pose", now)
    dm = _dm(tmp_path / "s", clips)
    assert len(dm.provenance_warnings) == 1 and "1 of 3 clips were packed before" in dm.provenance_warnings[0]
    named = dm.provenance_warnings[0].split(" (face)")[0]  # the store with the unknown clip, not the last one opened
    assert f"{tmp_path / 's' / 'face'}" in named and "pose" not in named
    with pytest.raises(ProvenanceError, match="strict_provenance"):
        _dm(tmp_path / "s", clips, strict_provenance=True)
