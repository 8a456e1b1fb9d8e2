"""import-features: OpenFace / py-feat CSVs and .npy files become ordinary stores that train like extracted ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datamodules.feature_store import FeatureStore, find_store
from datamodules.sources import ManifestSource, SampleSource
from fer_zoo.imports.command import ImportSpec, import_features
from fer_zoo.imports.command import main as import_main
from fer_zoo.imports.formats import ImportFileError, read_npy, read_openface, read_pyfeat

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "face-videos"
OPENFACE = SHARED / "OpenFace_Test.csv"
needs_openface = pytest.mark.skipif(not OPENFACE.is_file(), reason=f"{OPENFACE} absent (shared data folder)")


def _raw(path: Path) -> pd.DataFrame:
    """The CSV as a plain reader sees it, headers with OpenFace's leading spaces stripped."""
    df = pd.read_csv(path)
    df.columns = [c.strip() for c in df.columns]
    return df


@needs_openface
def test_real_openface_csv_schema_frames_values() -> None:
    clip = read_openface(OPENFACE, ["au_r", "au_c", "gaze", "pose"])
    raw = _raw(OPENFACE)
    assert clip.features.shape == (100, 17 + 18 + 6 + 6) and clip.features.dtype == np.float32
    assert clip.schema[:2] == ["AU01_r", "AU02_r"] and "AU28_c" in clip.schema and "gaze_0_x" in clip.schema
    assert clip.schema[-6:] == ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
    assert not any(c.startswith(" ") for c in clip.schema)
    np.testing.assert_array_equal(clip.frame_indices, np.arange(100))  # OpenFace's frame is 1-based
    np.testing.assert_allclose(clip.timestamps[:3], [0.0, 0.001, 0.002])
    assert clip.valid.all()  # success 1, confidence 0.88 everywhere in this file
    col = clip.schema.index("pose_Tz")
    np.testing.assert_allclose(clip.features[0, col], 597.876, rtol=1e-6)
    np.testing.assert_allclose(clip.features[:, clip.schema.index("AU12_r")], raw["AU12_r"], rtol=1e-6)
    lm = read_openface(OPENFACE, ["landmarks_2d", "landmarks_3d", "pdm"])
    assert lm.features.shape == (100, 136 + 204 + 6 + 34)
    np.testing.assert_allclose(lm.features[1, lm.schema.index("x_0")], 276.98, rtol=1e-6)


@needs_openface
def test_openface_untracked_frames_are_invalid_not_dropped(tmp_path: Path) -> None:
    raw = _raw(OPENFACE)
    raw.loc[5, "success"] = 0
    raw.loc[7, "confidence"] = 0.2
    raw.columns = [("" if c == "frame" else " ") + c for c in raw.columns]  # OpenFace's own header style
    f = tmp_path / "edited.csv"
    raw.to_csv(f, index=False)
    clip = read_openface(f, ["au_r"])
    assert len(clip.valid) == 100 and not clip.valid[5] and not clip.valid[7] and clip.valid.sum() == 98


@needs_openface
def test_openface_bad_files_name_the_problem(tmp_path: Path) -> None:
    text = OPENFACE.read_text()
    truncated = tmp_path / "truncated.csv"
    truncated.write_text(text[: len(text) // 2])  # an interrupted copy: the last row is cut mid-way
    with pytest.raises(ImportFileError, match=r"truncated.csv: .*(missing or non-numeric|truncated)"):
        read_openface(truncated, ["au_r", "au_c", "gaze", "pose"])
    no_aus = tmp_path / "no_aus.csv"
    _raw(OPENFACE).drop(columns=[c for c in _raw(OPENFACE).columns if c.startswith("AU")]).to_csv(no_aus, index=False)
    with pytest.raises(ImportFileError, match="no columns of group 'au_r'"):
        read_openface(no_aus, ["au_r"])
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ImportFileError, match=r"not an OpenFace 2.x CSV, missing columns \['frame'"):
        read_openface(other, ["au_r"])


def test_pyfeat_keeps_the_largest_face_per_frame(tmp_path: Path) -> None:
    rows = []
    for frame in range(3):  # two faces per frame: a small one listed first, then the subject's larger face
        rows.append({"frame": frame, "FaceRectX": 0, "FaceRectY": 0, "FaceRectWidth": 20, "FaceRectHeight": 20,
                     "FaceScore": 0.99, "AU01": 0.1, "AU12": 0.1, "happiness": 0.1, "Pitch": 1, "Roll": 2, "Yaw": 3})
        rows.append({"frame": frame, "FaceRectX": 50, "FaceRectY": 50, "FaceRectWidth": 100, "FaceRectHeight": 120,
                     "FaceScore": 0.9, "AU01": 0.5 + frame, "AU12": 0.7, "happiness": 0.8, "Pitch": 4, "Roll": 5,
                     "Yaw": 6})
    rows.append({"frame": 3, "FaceRectX": np.nan, "FaceRectY": np.nan, "FaceRectWidth": np.nan,
                 "FaceRectHeight": np.nan, "FaceScore": np.nan, "AU01": np.nan, "AU12": np.nan, "happiness": np.nan,
                 "Pitch": np.nan, "Roll": np.nan, "Yaw": np.nan})  # no face in frame 3
    f = tmp_path / "fex.csv"
    pd.DataFrame(rows).to_csv(f, index=False)
    clip = read_pyfeat(f, ["aus", "emotions", "pose"], fps=25.0)
    assert clip.schema == ["AU01", "AU12", "happiness", "Pitch", "Roll", "Yaw"]
    np.testing.assert_allclose(clip.features[:3, 0], [0.5, 1.5, 2.5])  # the larger face, every frame
    np.testing.assert_array_equal(clip.valid, [True, True, True, False])
    np.testing.assert_allclose(clip.timestamps, [0, 0.04, 0.08, 0.12])


def test_npy_timestamps_width_and_nan_rows(tmp_path: Path) -> None:
    a = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    np.save(tmp_path / "v_feat.npy", a)
    np.save(tmp_path / "v_feat_timestamps_ms.npy", np.arange(10) * 40.0)
    clip = read_npy(tmp_path / "v_feat.npy")
    np.testing.assert_allclose(clip.timestamps, np.arange(10) * 0.04)
    np.testing.assert_array_equal(clip.features, a)
    np.save(tmp_path / "w.npy", a)
    np.testing.assert_allclose(read_npy(tmp_path / "w.npy", fps=10).timestamps, np.arange(10) / 10)
    with pytest.raises(ImportFileError, match="no timestamps file beside it and no fps"):
        read_npy(tmp_path / "w.npy")
    with pytest.raises(ImportFileError, match="4 columns, but this import expects 8"):
        read_npy(tmp_path / "w.npy", fps=10, dim=8)
    a[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", a)
    with pytest.raises(ImportFileError, match=r"1 of 10 rows hold NaN/inf \(first: row 3\)"):
        read_npy(tmp_path / "nan.npy", fps=10)


@needs_openface
def test_import_a_manifest_records_bad_clips_and_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(SHARED / "single_face.mp4", clips / "short.mp4")  # 72 frames: the 100-row CSV is not its file
    for name in ("a", "b", "short", "truncated"):
        (clips / f"{name}.mp4").exists() or (clips / f"{name}.mp4").write_bytes(b"")
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path,label\nclips/a.mp4,happy\nclips/b.mp4,sad\nclips/short.mp4,happy\n"
                        "clips/truncated.mp4,sad\nclips/missing.mp4,sad\n")
    csvs = tmp_path / "openface"
    (csvs / "clips").mkdir(parents=True)
    for name in ("a", "b", "short"):
        shutil.copy(OPENFACE, csvs / "clips" / f"{name}.csv")
    (csvs / "clips" / "truncated.csv").write_text(OPENFACE.read_text()[:20_000])
    (csvs / "clips" / "stray.csv").write_text("x")
    source = ManifestSource(manifest)
    spec = ImportSpec("openface", ["au_r", "pose"])
    summary = import_features(source, source.clips(), tmp_path / "features", "openface", spec, csvs, "{clip_id}.csv")
    assert summary["clips"] == 5
    assert set(summary["failed"]) == {"clips/short", "clips/truncated", "clips/missing"}
    assert "has 72 frames" in summary["failed"]["clips/short"]
    assert "truncated.csv" in summary["failed"]["clips/truncated"]
    assert summary["failed"]["clips/missing"] == "no feature file for this clip"
    assert summary["extra_files"] == ["clips/stray.csv"]
    store = FeatureStore(find_store(tmp_path / "features", "openface"))
    assert store.meta["schema"][:1] == ["AU01_r"] and store.meta["import"]["format"] == "openface"
    f, v = store.clip("clips/a")
    assert f.shape == (100, 23) and v.all()
    assert list(store.frames("clips/a")[0][:3]) == [0, 1, 2]
    # A rerun with the same files is a no-op; a changed file makes a different store.
    again = import_features(source, source.clips(), tmp_path / "features", "openface", spec, csvs, "{clip_id}.csv")
    assert again["path"] == summary["path"]
    (csvs / "clips" / "b.csv").write_text(OPENFACE.read_text().replace("\n2,0.001,", "\n2,0.0011,"))
    changed = import_features(source, source.clips(), tmp_path / "features", "openface", spec, csvs,
                              "{clip_id}.csv")
    assert changed["path"] != summary["path"]
    assert "older imports of 'openface'" in capsys.readouterr().out


@pytest.mark.slow
@needs_openface
def test_openface_import_fits_with_resnet_and_ablates(sample_stores: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample's 167 photos, each given a 1-row OpenFace CSV (real rows of the shared file, so the values are
    OpenFace's own), imported next to a copy of the sample's frame-embedding store; then fit and ablate."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("WANDB_MODE", "offline")
    root = tmp_path / "features"
    shutil.copytree(find_store(sample_stores, "resnet"), root / "resnet" / find_store(sample_stores, "resnet").name)
    raw = OPENFACE.read_text().splitlines()
    folder = tmp_path / "openface"
    clips = SampleSource().clips()
    for i, clip in enumerate(clips):
        row = raw[1 + i % 100].split(",", 2)
        f = folder / f"{clip.clip_id}.csv"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(raw[0] + "\n" + ",".join(["1", "0", row[2]]) + "\n")
    bad = folder / f"{clips[0].clip_id}.csv"
    bad.write_text(raw[0] + "\n1,0,0.9\n")  # a row cut short: recorded as failed, the run goes on
    rc = import_main(["--source.class_path=datamodules.sources.SampleSource", f"--store_root={root}",
                      "--modality=openface", "--format=openface", f"--folder={folder}",
                      "--columns=[au_r, au_c, gaze, pose]"])
    assert rc == 3
    store = FeatureStore(find_store(root, "openface"))
    assert store.meta["num_failed"] == 1 and store.meta["dim"] == 47
    from fer_zoo.training.cli import run_lightning_cli

    run_lightning_cli(["fit", "--config", "configs/demo.yaml", "--data.modalities=[resnet, openface]",
                       f"--data.store_root={root}", "--trainer.max_epochs=2", "--data.num_workers=0",
                       "--wandb=false", f"--runs_dir={tmp_path / 'runs'}", "--run_name=r"])
    res = json.loads((tmp_path / "runs" / "r" / "results.json").read_text())
    assert res["modalities"] == ["resnet", "openface"] and 0 <= res["metrics"]["test/uar"] <= 1
    assert res["stores"]["openface"]["extractor"] == "import-openface"

    from fer_zoo.ablation import grid

    cfg = tmp_path / "ablation.yaml"
    cfg.write_text(json.dumps({
        "name": "imp", "runs_dir": str(tmp_path / "abl"), "base": ["configs/demo.yaml"],
        "overrides": ["--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--data.num_workers=0",
                      "--model.d_model=16", "--model.depth=1", f"--data.store_root={root}"],
        "modality_sets": [["openface"], ["resnet", "openface"]], "seeds": [1], "wandb": False}))
    assert grid.main(["--config", str(cfg)]) == 0
    table = (tmp_path / "abl" / "imp" / "summary.md").read_text()
    assert "openface" in table and "openface+resnet" in table


@pytest.mark.parametrize("train", [False, True])
def test_modalities_at_other_rates_line_up_in_time(tmp_path: Path, train: bool) -> None:
    """An OpenFace import keeps every frame (100 at 30 fps); an extracted store of the same clip holds 64 capped
    frames. TSN sampling takes the same relative position in every modality, so both pick frames of the same
    moment: within one segment's spacing of the sparser store (64 frames over 100: 1.6 source frames)."""
    from datamodules.feature_datamodule import FeatureDataset
    from datamodules.feature_store import ClipResult, ShardWriter, pack
    from datamodules.frames import cap_indices

    stores = {}
    for name, idx in (("openface", np.arange(100)), ("resnet", cap_indices(100, 64))):
        path = tmp_path / name
        w = ShardWriter(path, {"m": name})
        w.add(ClipResult("c", np.zeros((len(idx), 2), np.float32), np.ones(len(idx), bool), idx, idx / 30.0))
        w.flush()
        pack(path, ["c"], {"dim": 2})
        stores[name] = FeatureStore(path)
    ds = FeatureDataset(stores, ["c"], [0], num_frames=16, train=train, seed=3)
    from datamodules.sampling import segment_indices

    for seed in range(5 if train else 1):
        drawn = {}
        for name, store in stores.items():
            # FeatureDataset's draw (one generator state per clip, shared by every length), replayed through each
            # store's timestamps: which source moments were taken.
            gen = np.random.default_rng(seed) if train else None
            idx, _ = segment_indices(len(store.clip("c")[0]), 16, train, gen)
            drawn[name] = store.frames("c")[1][idx]
        assert np.abs(drawn["openface"] - drawn["resnet"]).max() <= 2.0 / 30.0 + 1e-9, drawn
    assert ds[0]["features"]["openface"].shape == ds[0]["features"]["resnet"].shape == (16, 2)
