"""DenseDataModule on a small ABAW-layout tree written here, with feature stores packed here (no extraction).

The tree: empty image files (labels and listings never decode images) and EXPR / VA / AU files whose values are
known. The stores' features say where each row came from: column 0 = the row's annotation frame + 1 (0 is "no
row"), column 1 = the clip's number, so every test can check which frame landed where; the other columns hold the
frame's expression class (``dim >= 10``: one-hot in columns 2-9 and column 1 zero).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.affwild2 import AffWild2Source
from datamodules.dense_datamodule import DenseClips, DenseDataModule, DenseWindows
from datamodules.feature_store import ClipResult, ShardWriter, pack, store_path
from datamodules.frame_labels import AU_NAMES
from datamodules.provenance import source_provenance

EXPR_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
AU_HEADER = ",".join(AU_NAMES)
#: clip -> (split folder, number of frames, deleted 1-based crop numbers)
CLIPS: dict[str, tuple[str, int, tuple[int, ...]]] = {
    "a": ("Train_Set", 50, (10,)),
    "b": ("Train_Set", 40, ()),
    "c_left": ("Train_Set", 30, ()),
    "c_right": ("Train_Set", 30, (1, 2)),
    "d": ("Train_Set", 20, ()),
    "g": ("Train_Set", 36, ()),
    "h": ("Train_Set", 44, ()),
    "e": ("Validation_Set", 25, ()),
    "f": ("Validation_Set", 70, (70,)),
}
NUMBER = {c: i for i, c in enumerate(CLIPS)}


def expr_of(clip: str, n: int) -> list[int]:
    """Known labels: clip a is happiness (4) 0-19, unlabeled 20-29, neutral (0) 30-49; others by clip number."""
    if clip == "a":
        return [4] * 20 + [-1] * 10 + [0] * 20
    k = NUMBER[clip]
    return [(k + (f // 10)) % 8 for f in range(n)]


def write(path: Path, header: str, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(f"{line}\n" for line in lines))
    return path


def build_tree(root: Path, invalid: dict[str, set[int]] | None = None, frame_cap: int | None = None,
               dim: int = 4) -> tuple[Path, Path]:
    """(ABAW root, store root) with one store ``face``: rows for every crop present, ``valid`` False on the
    annotation frames listed in ``invalid`` (clip -> frames)."""
    invalid = {"a": {3}, **(invalid or {})}
    for clip, (split, n, deleted) in CLIPS.items():
        folder = root / "cropped_aligned" / clip
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(1, n + 1):
            if k not in deleted:
                (folder / f"{k:05d}.jpg").touch()
        write(root / "EXPR_Set" / split / f"{clip}.txt", EXPR_HEADER, [str(v) for v in expr_of(clip, n)])
        write(root / "VA_Set" / split / f"{clip}.txt", "valence,arousal",
              [f"{(f % 20) / 10 - 1:.1f},{0.5 if f % 2 else -0.5}" if f != 7 else "-5,-5" for f in range(n)])
        write(root / "AU_Set" / split / f"{clip}.txt", AU_HEADER,
              [",".join("1" if (j + f) % 3 == 0 else "0" for j in range(12)) for f in range(n)])
    stores = root / "stores"
    path = store_path(stores, "face", "fakeface", "abcd1234")
    writer = ShardWriter(path, {"extractor": "fakeface", "dim": dim}, flush_every=10_000)
    for clip, (_, n, deleted) in CLIPS.items():
        frames = np.array([k - 1 for k in range(1, n + 1) if k not in deleted], np.int64)
        if frame_cap is not None and len(frames) > frame_cap:
            frames = frames[np.linspace(0, len(frames) - 1, frame_cap).round().astype(int)]
        feats = np.zeros((len(frames), dim), np.float32)
        feats[:, 0] = frames + 1
        feats[:, 1] = NUMBER[clip]
        y = np.asarray(expr_of(clip, n))[frames]  # the class: something the features really show
        if dim >= 10:  # one-hot in columns 2-9 (no class for -1)
            feats[np.flatnonzero(y >= 0), 2 + y[y >= 0]] = 1.0
            feats[:, 1] = 0.0
        else:
            feats[:, 2:] = y[:, None]
        valid = ~np.isin(frames, sorted(invalid.get(clip, ())))
        positions = np.searchsorted(np.array([k - 1 for k in range(1, n + 1) if k not in deleted]), frames)
        writer.add(ClipResult(clip, feats, valid, positions, positions / 30.0).from_source(
            source_provenance(root / "cropped_aligned" / clip)))
    writer.flush()
    pack(path, list(CLIPS), {"dim": dim, "modality": "face", "extractor": "fakeface", "frame_cap": frame_cap,
                             "source": {"name": "affwild2", "num_clips": len(CLIPS)}})
    return root, stores


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_tree(tmp_path_factory.mktemp("abaw"))


def module(tree: tuple[Path, Path], tasks: tuple[str, ...] = ("EXPR",), **kw) -> DenseDataModule:
    root, stores = tree
    return DenseDataModule(AffWild2Source(root, list(tasks)), str(stores), ["face"], tasks=list(tasks),
                           **{"window": 8, "stride": 4, "val_fraction": 0.2, **kw})


# ----------------------------------------------------------------------------------------------------------- splits


def test_abaw_validation_is_test_and_val_is_whole_training_videos(tree: tuple[Path, Path]) -> None:
    dm = module(tree)
    assert sorted(dm.split_ids["test"]) == ["e", "f"]
    train, val = set(dm.split_ids["train"]), set(dm.split_ids["val"])
    assert val and train and not train & val and train | val == {"a", "b", "c_left", "c_right", "d", "g", "h"}
    assert ("c_left" in val) == ("c_right" in val)  # one video's two people on one side
    again = module(tree)
    assert again.split_ids == dm.split_ids  # seeded
    assert dm.input_dims == {"face": 4} and dm.tasks == ["EXPR"] and dm.class_names[4] == "happiness"
    sizes = dm.split_sizes
    assert sizes["test"]["clips"] == 2 and sizes["test"]["frames"] == 25 + 70
    assert sizes["test"]["labeled_frames"] == {"EXPR": 95}


def test_folds_put_fold_k_in_test(tree: tuple[Path, Path]) -> None:
    root, stores = tree
    src = AffWild2Source(root, "EXPR", n_folds=3, fold_seed=1)
    dm = DenseDataModule(src, str(stores), ["face"], fold=2, window=8, stride=4, val_fraction=0.2)
    fold = {c.clip_id: c.test_fold for c in src.clips()}
    assert sorted(dm.split_ids["test"]) == sorted(c for c, k in fold.items() if k == 2)
    with pytest.raises(ValueError, match="set fold to one of"):
        DenseDataModule(src, str(stores), ["face"], window=8, stride=4)


# ------------------------------------------------------------------------------------------------------ the grid


def test_rows_land_on_their_annotation_frames_missing_crops_are_holes(tree: tuple[Path, Path]) -> None:
    dm = module(tree, ("EXPR", "VA", "AU"))
    g = dm.grids["a"]
    assert g.n_frames == 50
    # 00010.jpg is gone: frame 9 has no row; frame 3's row is valid=False; every other frame holds its own row
    assert g.rows["face"][9] == -1 and not g.face[9] and not g.face[3]
    feats, valid = dm.clip_arrays("a")
    present = np.flatnonzero(g.rows["face"] >= 0)
    np.testing.assert_array_equal(feats["face"][present, 0], present + 1)
    assert (feats["face"][9] == 0).all() and not valid["face"][[3, 9]].any() and valid["face"][[0, 10]].all()
    right = dm.grids["c_right"]  # 00001.jpg, 00002.jpg gone: the first row is frame 2
    assert list(right.rows["face"][:3]) == [-1, -1, 0]


def test_eval_clip_is_whole_and_scores_every_labeled_frame(tree: tuple[Path, Path]) -> None:
    dm = module(tree, ("EXPR", "VA", "AU"))
    ds = DenseClips(dm.stores, [dm.grids["a"]], dm.tasks)
    item = ds[0]
    assert item["features"]["face"].shape == (50, 4) and item["valid"]["face"].shape == (50,)
    expr = item["targets"]["EXPR"]
    np.testing.assert_array_equal(expr.numpy(), expr_of("a", 50))  # faceless frames 3 and 9 still scored
    assert torch.isnan(item["targets"]["VA"][7]).all() and item["targets"]["VA"][9, 1] == 0.5
    assert item["targets"]["AU"].shape == (50, 12) and item["targets"]["AU"][0, 0] == 1
    assert not item["face"][3] and not item["face"][9] and item["face"][0]


def test_training_windows_mask_faceless_frames_pad_and_move_by_a_random_offset(tree: tuple[Path, Path]) -> None:
    dm = module(tree, ("EXPR", "VA"))
    ds = DenseWindows(dm.stores, [dm.grids["a"]], dm.tasks, window=8, stride=4, seed=0)
    # plan_windows(50, 8, 4): starts 0, 4, ..., 40 and one closing window at 42: 12 windows, all with labels
    assert len(ds) == 12 and ds.start(11) == 42 and ds.start(11, 3) == 42  # clamped inside the clip
    starts = set()
    for _ in range(40):
        item = ds[1]
        s = item["start"]
        starts.add(s)
        assert 4 <= s <= 7
        frames = np.arange(s, s + 8)
        np.testing.assert_array_equal(item["features"]["face"][:, 0].numpy(), np.where(frames == 9, 0, frames + 1))
        expected = np.asarray(expr_of("a", 50))[frames]
        expected[(frames == 9) | (frames == 3)] = -1  # no valid feature there: not trained on
        np.testing.assert_array_equal(item["targets"]["EXPR"].numpy(), expected)
    assert len(starts) > 1
    short = DenseWindows(dm.stores, [dm.grids["d"]], dm.tasks, window=32, stride=16)
    item = short[0]
    assert len(short) == 1 and item["features"]["face"].shape == (32, 4)
    assert item["valid"]["face"][:20].all() and not item["valid"]["face"][20:].any()
    assert (item["targets"]["EXPR"][20:] == -1).all() and torch.isnan(item["targets"]["VA"][20:]).all()


def test_windows_without_a_trainable_frame_are_left_out(tmp_path: Path) -> None:
    tree = build_tree(tmp_path, invalid={"a": set(range(0, 30))})  # a: frames 0-29 faceless; 20-29 unlabeled anyway
    dm = module(tree)
    ds = DenseWindows(dm.stores, [dm.grids["a"]], dm.tasks, window=8, stride=4)
    # windows that can reach frame 30 (start + stride + window - 1 > 30) are kept: k * 4 + 10 > 30 -> k >= 6
    assert [k for _, k in ds.windows] == list(range(5, 12))


# ------------------------------------------------------------------------------------------------------- balance


def test_class_weights_inverse_frequency_of_trainable_training_frames(tree: tuple[Path, Path]) -> None:
    dm = module(tree, class_balance="weighted_loss")
    ys = np.concatenate([np.asarray(expr_of(c, dm.grids[c].n_frames))[dm.grids[c].face & (
        np.asarray(expr_of(c, dm.grids[c].n_frames)) >= 0)] for c in dm.split_ids["train"]])
    counts = np.bincount(ys, minlength=8)
    w = np.where(counts > 0, 1 / np.maximum(counts, 1), 0)
    np.testing.assert_allclose(dm.expr_class_weights, w * 8 / w.sum())
    assert module(tree).expr_class_weights is None


def test_resample_weights_windows_by_their_frames_inverse_class_frequency(tree: tuple[Path, Path]) -> None:
    dm = module(tree, class_balance="resample")
    ds = dm.dataset("train")
    w = dm.resample_weights()
    assert w.shape == (len(ds),)
    ys = np.concatenate([dm.grids[c].labels.expr[dm.grids[c].face & (dm.grids[c].labels.expr >= 0)]
                         for c in dm.split_ids["train"]])
    n = np.bincount(ys, minlength=8)
    c, k = ds.windows[0]
    g = ds.grids[c]
    y = g.labels.expr[0:8]
    y = y[g.face[0:8] & (y >= 0)]
    assert w[0] == pytest.approx(np.mean(1.0 / n[y]))
    sampler = dm.train_dataloader().sampler
    assert len(list(iter(sampler))) == len(ds)
    with pytest.raises(ValueError, match="needs EXPR among data.tasks"):
        module(tree, ("VA",), class_balance="resample")


# -------------------------------------------------------------------------------------------------------- errors


def test_capped_store_is_refused_naming_it(tmp_path: Path) -> None:
    tree = build_tree(tmp_path, frame_cap=16)
    with pytest.raises(ValueError, match=r"fakeface-abcd1234 was extracted with frame_cap 16, but clip '.*' has "
                                         r"\d+ frames: frames were skipped"):
        module(tree)


def test_bad_label_file_costs_only_its_clip_strict_stops(tmp_path: Path) -> None:
    root, stores = build_tree(tmp_path)
    bad = root / "EXPR_Set" / "Train_Set" / "b.txt"
    lines = bad.read_text().splitlines()
    lines[5] = "9"
    bad.write_text("\n".join(lines) + "\n")
    dm = module((root, stores))
    assert list(dm.dropped) == ["b"] and "b.txt:6: value '9'" in dm.dropped["b"].reason
    assert "b" not in dm.split_ids["train"] + dm.split_ids["val"] and len(dm.grids) == len(CLIPS) - 1
    with pytest.raises(ValueError, match=r"1 clips are unusable and strict=True: b \(.*b\.txt:6: value '9'"):
        module((root, stores), strict=True)


def test_argument_errors_are_named(tree: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match=r"data.tasks \['VA'\] are not read by the source"):
        DenseDataModule(AffWild2Source(tree[0], "EXPR"), str(tree[1]), ["face"], tasks=["VA"])
    with pytest.raises(ValueError, match="data.tasks must be distinct names"):
        DenseDataModule(AffWild2Source(tree[0], "EXPR"), str(tree[1]), ["face"], tasks=["EXPR", "XYZ"])
    with pytest.raises(ValueError, match="data.val_fraction must be in"):
        module(tree, val_fraction=0.0)
    from datamodules.feature_store import StoreError

    with pytest.raises(StoreError, match=r"for modality .mesh.*fer_zoo extract --config configs/extract/abaw"):
        DenseDataModule(AffWild2Source(tree[0], "EXPR"), str(tree[1]), ["mesh"])


def test_feature_stats_come_from_valid_training_rows_only(tree: tuple[Path, Path]) -> None:
    dm = module(tree)
    st = dm.feature_stats()["face"]
    rows = []
    for c in dm.split_ids["train"]:
        feats, valid = dm.clip_arrays(c)
        rows.append(feats["face"][valid["face"]])
    x = np.concatenate(rows).astype(np.float64)
    np.testing.assert_allclose(st.mean, x.mean(axis=0), rtol=1e-9)
    assert st.count == len(x)
    assert json.dumps(dm.describe()["sizes"])  # serialisable as results.json wants it


def test_a_split_without_labels_for_a_task_is_refused_naming_it(tmp_path: Path) -> None:
    root, stores = build_tree(tmp_path)
    for clip in ("e", "f"):  # the test clips: VA unlabeled everywhere
        path = root / "VA_Set" / "Validation_Set" / f"{clip}.txt"
        n = len(path.read_text().splitlines()) - 1
        write(path, "valence,arousal", ["-5,-5"] * n)
    dm = module((root, stores), ("EXPR",))  # EXPR alone is fine
    assert dm.labeled_frames("test") == {"EXPR": 95}
    with pytest.raises(ValueError, match=r"the test split \(2 clips: \['e', 'f'\]\) has no labeled frame for VA"):
        module((root, stores), ("EXPR", "VA"))
