"""import-features (issue 28, items 3-5): rows laid on the clip's frames, one identity per clip, float16 range.

Each test builds its bad input from the shared OpenFace file (or from scratch) and asserts the value the import must
give, not only that it does not crash.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datamodules.feature_store import ClipResult, FeatureStore, ShardWriter, find_store, pack
from datamodules.records import ClipRecord
from datamodules.sources import ManifestSource
from fer_zoo.cli_errors import UsageError
from fer_zoo.imports.command import ImportSpec, import_features, import_one
from fer_zoo.imports.command import main as import_main
from fer_zoo.imports.formats import ImportFileError, read_npy, read_openface, read_pyfeat

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "face-videos"
OPENFACE = SHARED / "OpenFace_Test.csv"
VIDEO = SHARED / "single_face.mp4"  # 72 frames at 30 fps
needs_openface = pytest.mark.skipif(not OPENFACE.is_file(), reason=f"{OPENFACE} absent (shared data folder)")
needs_video = pytest.mark.skipif(not VIDEO.is_file(), reason=f"{VIDEO} absent (shared data folder)")


def _raw() -> pd.DataFrame:
    df = pd.read_csv(OPENFACE)
    df.columns = [c.strip() for c in df.columns]
    return df.copy()


def _write(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def _gap_file(tmp_path: Path) -> Path:
    """The shared 100-frame file with no rows for frames 31-70 (1-based), as OpenFace writes frames without a face;
    AU01_r holds the frame number, so a test can see which source frame a row came from."""
    raw = _raw()
    raw["AU01_r"] = raw["frame"].astype(float)
    return _write(raw[(raw.frame < 31) | (raw.frame > 70)], tmp_path / "gap.csv")


# ------------------------------------------------------------------------------ item 3: frames without a row


@needs_openface
def test_openface_frames_without_a_row_are_invalid_rows_not_a_shift(tmp_path: Path) -> None:
    raw = _raw()
    spec = ImportSpec("openface", ["au_r", "pose"])
    result, schema = import_one(ClipRecord("c", str(tmp_path / "absent.mp4")), _gap_file(tmp_path), spec)
    assert result.status == "ok" and schema is not None
    assert result.features.shape == (100, 23)  # frames 0..99: the file's last frame, no video to count
    np.testing.assert_array_equal(result.frame_indices, np.arange(100))
    np.testing.assert_array_equal(result.valid, ~((np.arange(100) >= 30) & (np.arange(100) < 70)))
    np.testing.assert_array_equal(result.features[:, 0], np.where(result.valid, np.arange(1, 101), 0))
    tz = schema.index("pose_Tz")
    np.testing.assert_allclose(result.features[80, tz], raw.loc[80, "pose_Tz"], rtol=1e-6)  # frame 81's own row
    np.testing.assert_allclose(result.timestamps, np.arange(100) * 0.001, atol=1e-12)  # 0.030..0.069 interpolated
    assert "gap.csv: 40 of 100 frames without a row -> invalid" in result.reason


@needs_openface
@needs_video
def test_openface_rows_on_a_video_pad_to_its_frames_and_refuse_what_does_not_fit(tmp_path: Path) -> None:
    raw = _raw()
    clip = ClipRecord("c", str(VIDEO))
    spec = ImportSpec("openface", ["au_r"])
    first30 = _write(raw[raw.frame <= 30], tmp_path / "first30.csv")
    result, _ = import_one(clip, first30, spec)
    assert result.status == "ok" and len(result.valid) == 72 and result.valid.sum() == 30 and result.valid[:30].all()
    assert "42 of 72 frames without a row -> invalid" in result.reason
    unchecked, _ = import_one(clip, first30, ImportSpec("openface", ["au_r"], check_frame_count=False))
    assert len(unchecked.valid) == 30 and unchecked.reason == ""  # the clip ends at the file's last row
    dup = _write(pd.concat([raw[raw.frame <= 30], raw[raw.frame == 12]]), tmp_path / "dup.csv")
    failed, _ = import_one(clip, dup, spec)
    assert failed.status == "failed" and "dup.csv: 1 frames have more than one row (first: frame index 11" in \
        failed.reason
    past = _write(raw[raw.frame <= 80], tmp_path / "past.csv")
    failed, _ = import_one(clip, past, spec)
    assert failed.status == "failed" and f"past.csv: rows reach frame 80 but {VIDEO} has 72 frames" in failed.reason


@needs_openface
@pytest.mark.parametrize("train", [False, True])
def test_a_gap_import_and_an_extracted_store_sample_the_same_source_frames(tmp_path: Path, train: bool) -> None:
    """TSN sampling takes the same relative row position in every modality: the frame-31..70-gap file, imported,
    must give at every sampled slot the very source frame an extracted store of all 100 frames gives (and within
    one frame spacing of a store capped to 64 frames), with the frames that had no row masked."""
    from datamodules.feature_datamodule import FeatureDataset
    from datamodules.frames import cap_indices

    folder = tmp_path / "openface"
    folder.mkdir()
    shutil.copy(_gap_file(tmp_path), folder / "c.csv")
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path,label\nc.mp4,happy\n")  # no video on disk: the clip ends at the file's last frame
    source = ManifestSource(manifest)
    summary = import_features(source, source.clips(), tmp_path / "features", "openface",
                              ImportSpec("openface", ["au_r"]), folder, "{clip_id}.csv", log=lambda *_: None)
    assert summary["frames_without_row"] == 40 and "40 of 100 frames without a row" in summary["notes"]["c"]
    stores = {"openface": FeatureStore(find_store(tmp_path / "features", "openface"))}
    for name, idx in (("full", np.arange(100)), ("capped", cap_indices(100, 64))):
        path = tmp_path / name
        w = ShardWriter(path, {"m": name})  # an extracted-like store: column 0 = the 1-based source frame
        w.add(ClipResult("c", np.stack([idx + 1.0, np.zeros(len(idx))], 1).astype(np.float32),
                         np.ones(len(idx), bool), idx, idx / 30.0))
        w.flush()
        pack(path, ["c"], {"dim": 2})
        stores[name] = FeatureStore(path)
    ds = FeatureDataset(stores, ["c"], [0], num_frames=16, train=train, seed=3)
    for _ in range(5 if train else 1):
        item = ds[0]
        got = {m: item["features"][m][:, 0].numpy() for m in stores}
        valid = item["valid"]["openface"].numpy()
        np.testing.assert_array_equal(valid, (got["full"] < 31) | (got["full"] > 70))
        np.testing.assert_array_equal(got["openface"][valid], got["full"][valid])
        assert np.abs(got["full"] - got["capped"]).max() <= 2.0, got


# ------------------------------------------------------------------------------ item 4: one identity per clip


def _two_faces(tmp_path: Path) -> Path:
    """Face 0 in all 100 frames (AU12_r 1.0), face 1 in frames 1-60 (AU12_r 4.0), more confident in every other
    frame: a per-frame 'most confident face' rule switches person 30 times."""
    raw = _raw()
    a = raw.assign(face_id=0, AU12_r=1.0, confidence=0.88)
    b = raw[raw.frame <= 60].assign(face_id=1, AU12_r=4.0, confidence=np.where(raw.frame[:60] % 2 == 0, 0.95, 0.8))
    df = pd.concat([a, b]).sort_values(["frame", "face_id"], kind="stable")
    return _write(df[["frame", "face_id", *[c for c in raw.columns if c != "frame"]]], tmp_path / "two.csv")


@needs_openface
def test_openface_two_faces_keep_one_identity_through_the_clip(tmp_path: Path) -> None:
    f = _two_faces(tmp_path)
    clip = read_openface(f, ["au_r"])
    np.testing.assert_array_equal(clip.features[:, clip.schema.index("AU12_r")], np.full(100, 1.0, np.float32))
    np.testing.assert_array_equal(clip.frame_indices, np.arange(100))
    assert clip.info["face"] == ("face_id 0 kept (tracked in the most frames: 100 frames), 1 other face left out "
                                 "(face_id 1 in 60)")
    result, schema = import_one(ClipRecord("c", "absent.mp4"), f, ImportSpec("openface", ["au_r"], face_id=1))
    assert result.status == "ok" and schema == clip.schema
    np.testing.assert_array_equal(result.features[:60, schema.index("AU12_r")], np.full(60, 4.0, np.float32))
    np.testing.assert_array_equal(result.valid, np.arange(100) < 60)  # face 1 is gone after frame 60: invalid
    assert "face_id 1 kept (asked for: 60 frames), 1 other face left out (face_id 0 in 100)" in result.reason
    assert "40 of 100 frames without a row -> invalid" in result.reason
    with pytest.raises(ImportFileError, match=r"two.csv: no face_id 7 in this file \(its faces: \[0, 1\]\)"):
        read_openface(f, ["au_r"], face_id=7)


@needs_openface
def test_import_features_cli_face_id(tmp_path: Path) -> None:
    folder = tmp_path / "of"
    folder.mkdir()
    shutil.copy(_two_faces(tmp_path), folder / "c.csv")
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path,label\nc.mp4,happy\n")
    args = ["--source.class_path=datamodules.sources.ManifestSource", f"--source.init_args.csv={manifest}",
            f"--store_root={tmp_path / 'features'}", "--modality=openface", f"--folder={folder}",
            "--columns=[au_r]"]
    assert import_main([*args, "--format=openface", "--face_id=1"]) == 0
    store = FeatureStore(find_store(tmp_path / "features", "openface"))
    assert store.meta["config"]["face_id"] == 1 and "face_id 1 kept" in store.status("c")[1]
    f, v = store.clip("c")
    assert f.shape == (100, 17) and v.sum() == 60
    assert (np.asarray(f[:60, store.meta["schema"].index("AU12_r")]) == 4.0).all()
    with pytest.raises(UsageError, match="face_id: only OpenFace"):
        import_main([*args, "--format=pyfeat", "--face_id=1"])


def _fex(rows: list[tuple[int, float, float, float]]) -> pd.DataFrame:
    """py-feat rows ``(frame, x, y, size)`` with AU01 = x (so the kept face's place shows in the features)."""
    return pd.DataFrame([{"frame": fr, "FaceRectX": x, "FaceRectY": y, "FaceRectWidth": s, "FaceRectHeight": s,
                          "FaceScore": 0.95, "AU01": x / 100, "Pitch": 0.0} for fr, x, y, s in rows])


def test_pyfeat_refuses_a_largest_face_that_changes_person(tmp_path: Path) -> None:
    # Two people side by side, 100 px faces: the right one is 2 px bigger in every third frame.
    rows = [r for fr in range(30) for r in ((fr, 0.0, 0.0, 100.0), (fr, 300.0, 0.0, 102.0 if fr % 3 == 0 else 98.0))]
    f = _write(_fex(rows), tmp_path / "pair.csv")
    with pytest.raises(ImportFileError, match=r"pair.csv: the largest face changes person 19 times \(first between "
                                              r"frames 0 and 1: it jumps from \(351, 51\) to \(50, 50\)"):
        read_pyfeat(f, ["aus"], fps=30)
    # One person moving fast (no other face to switch to) and a constant pair (the big face stays itself) are fine.
    alone = _write(_fex([(fr, fr * 40.0, 0.0, 100.0) for fr in range(10)]), tmp_path / "alone.csv")
    np.testing.assert_allclose(read_pyfeat(alone, ["aus"], fps=30).features[:, 0], np.arange(10) * 0.4, rtol=1e-6)
    pair = [r for fr in range(10) for r in ((fr, 0.0, 0.0, 80.0), (fr, 300.0 + fr, 0.0, 120.0))]
    steady = read_pyfeat(_write(_fex(pair), tmp_path / "steady.csv"), ["aus"], fps=30)
    np.testing.assert_allclose(steady.features[:, 0], (300.0 + np.arange(10)) / 100, rtol=1e-6)


def test_pyfeat_frames_without_a_row_and_skip_frames(tmp_path: Path) -> None:
    gap = _write(_fex([(fr, 10.0, 10.0, 100.0) for fr in range(20) if not 5 <= fr < 12]), tmp_path / "gap.csv")
    result, _ = import_one(ClipRecord("c", "absent.mp4"), gap, ImportSpec("pyfeat", ["aus"], fps=25.0))
    np.testing.assert_array_equal(result.valid, ~((np.arange(20) >= 5) & (np.arange(20) < 12)))
    np.testing.assert_allclose(result.timestamps, np.arange(20) / 25.0)
    assert "7 of 20 frames without a row -> invalid" in result.reason
    skip = _write(_fex([(fr, 10.0, 10.0, 100.0) for fr in range(0, 100, 5) if fr != 50]), tmp_path / "skip.csv")
    result, _ = import_one(ClipRecord("c", "absent.mp4"), skip, ImportSpec("pyfeat", ["aus"], fps=25.0))
    np.testing.assert_array_equal(result.frame_indices, np.arange(0, 100, 5))  # one row per 5 frames, not 4 of 5 gaps
    np.testing.assert_array_equal(result.valid, np.arange(0, 100, 5) != 50)
    assert "1 of 20 grid points (one every 5 frames) without a row -> invalid" in result.reason


# ------------------------------------------------------------------------------ npy: rows placed by their time


def test_npy_timestamps_with_a_gap_and_two_rows_on_one_frame(tmp_path: Path) -> None:
    a = np.arange(15, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    frames = np.r_[0:10, 15:20]
    np.save(tmp_path / "v.npy", a)
    np.save(tmp_path / "v_timestamps_ms.npy", frames * 40.0)
    result, _ = import_one(ClipRecord("c", "absent.mp4"), tmp_path / "v.npy", ImportSpec("npy", [], fps=25.0))
    assert result.status == "ok" and result.features.shape == (20, 3)
    np.testing.assert_array_equal(result.valid, ~((np.arange(20) >= 10) & (np.arange(20) < 15)))
    np.testing.assert_array_equal(result.features[15:, 0], np.arange(10, 15))  # the file's rows 10..14 at 15..19
    np.testing.assert_allclose(result.timestamps, np.arange(20) * 0.04)
    assert "5 of 20 frames without a row -> invalid" in result.reason
    np.save(tmp_path / "v_timestamps_ms.npy", np.r_[frames[:-1], 18] * 40.0)
    failed, _ = import_one(ClipRecord("c", "absent.mp4"), tmp_path / "v.npy", ImportSpec("npy", [], fps=25.0))
    assert failed.status == "failed" and "v.npy: 1 frames have more than one row (first: frame index 18" in \
        failed.reason


@needs_video
def test_npy_rows_at_a_lower_rate_than_the_video_keep_one_row_per_step(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.ones((12, 2), np.float32))  # 5 Hz rows over a 72-frame 30 fps video
    np.save(tmp_path / "v_timestamps.npy", np.arange(12) / 5.0)
    result, _ = import_one(ClipRecord("c", str(VIDEO)), tmp_path / "v.npy", ImportSpec("npy", []))
    assert result.status == "ok" and result.valid.all()
    np.testing.assert_array_equal(result.frame_indices, np.arange(0, 72, 6))
    assert "rows every 6 frames (5 Hz on a 30 fps video)" in result.reason
    np.save(tmp_path / "fast.npy", np.ones((144, 2), np.float32))
    failed, _ = import_one(ClipRecord("c", str(VIDEO)), tmp_path / "fast.npy", ImportSpec("npy", [], fps=60.0))
    assert "fast.npy: rows at 60 Hz, faster than the clip's video (30 fps)" in failed.reason


# ------------------------------------------------------------------------------ item 5: beyond float16


def test_npy_beyond_float16_is_refused_naming_file_column_and_value(tmp_path: Path) -> None:
    a = np.ones((10, 4), np.float32)
    a[6, 2] = 70000.0
    a[3, 1] = -65600.0
    np.save(tmp_path / "big.npy", a)
    with pytest.raises(ImportFileError, match=r"big.npy: column 'f2' reaches \|x\| = 70000 \(2 columns in all\), "
                                              r"beyond the float16 range .*scale it"):
        read_npy(tmp_path / "big.npy", fps=25)
    a[6, 2] = a[3, 1] = 65504.0  # float16's largest finite value still imports, exactly
    np.save(tmp_path / "edge.npy", a)
    assert read_npy(tmp_path / "edge.npy", fps=25).features.max() == 65504.0


@needs_openface
def test_openface_beyond_float16_fails_the_clip_and_the_run_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "of"
    folder.mkdir()
    raw = _raw()
    _write(raw, folder / "a.csv")
    _write(raw.assign(pose_Tz=raw.pose_Tz * 1000.0), folder / "b.csv")  # millimetres written as micrometres
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path,label\na.mp4,happy\nb.mp4,sad\n")
    source = ManifestSource(manifest)
    summary = import_features(source, source.clips(), tmp_path / "features", "openface",
                              ImportSpec("openface", ["pose"]), folder, "{clip_id}.csv", log=lambda *_: None)
    assert list(summary["failed"]) == ["b"]
    assert f"{folder / 'b.csv'}: column 'pose_Tz' reaches |x| = {raw.pose_Tz.max() * 1000:.6g}" in \
        summary["failed"]["b"]
    store = FeatureStore(summary["path"])
    f, v = store.clip("a")
    assert f.shape == (100, 6) and v.all() and np.isfinite(np.asarray(f)).all()


def test_store_writer_refuses_features_not_finite_as_float16(tmp_path: Path) -> None:
    """Any writer (extraction too): a clip whose features overflow float16 becomes a failed clip naming it."""
    path = tmp_path / "store"
    w = ShardWriter(path, {"m": "x"})
    big = np.zeros((4, 3), np.float32)
    big[2, 1] = 1e5
    nan = np.zeros((4, 3), np.float32)
    nan[0, 0] = np.nan
    for cid, x in (("ok", np.full((4, 3), 2.5, np.float32)), ("big", big), ("nan", nan)):
        w.add(ClipResult(cid, x, np.ones(4, bool), np.arange(4), np.arange(4) / 25.0))
    w.flush()
    pack(path, ["ok", "big", "nan"], {"dim": 3})
    store = FeatureStore(path)
    assert store.status("ok") == ("ok", "") and np.asarray(store.clip("ok")[0]).tolist() == [[2.5] * 3] * 4
    status, reason = store.status("big")
    assert status == "failed" and reason.startswith("clip big: 1 feature values are not finite as float16 (first: "
                                                    "row 2, column 1, value 100000;")
    assert store.status("nan")[0] == "failed" and "value nan" in store.status("nan")[1]
    assert store.meta["num_failed"] == 2 and np.isfinite(np.asarray(store._open()[0])).all()
