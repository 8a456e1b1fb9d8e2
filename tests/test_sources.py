"""Clip sources on small fixture trees laid out exactly like each data set's release, built from real photos."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from datamodules.frames import read_frames
from datamodules.labels import MAFW_ORDERS
from datamodules.sources import (
    SOURCES,
    ClipSource,
    DFEWSource,
    FERV39KSource,
    ImageFolderSource,
    MAFWSource,
    ManifestSource,
    build_source,
)

SHARED = Path(__file__).resolve().parents[2] / "shared/data"
FACES = SHARED / "faces-static"
needs_faces = pytest.mark.skipif(
    not (FACES / "legend.csv").is_file(), reason=f"real photos not found at {FACES} (shared data folder absent)"
)
# Three 350x350 LFW photos (a frame folder needs frames of one size).
PHOTOS = ("Mark_Philippoussis_0005.jpg", "Jack_Straw_0004.jpg", "James_Carville_0001.jpg")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _frames(folder: Path, photos: tuple[str, ...] = PHOTOS) -> None:
    """A frame folder as our preprocessing writes it: 00001.jpg, 00002.jpg, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(photos, start=1):
        shutil.copy(FACES / "images" / name, folder / f"{i:05d}.jpg")


# ------------------------------------------------------------------------------------------------------------- DFEW

# clip -> (label 1-7, test fold): 10 clips, 2 per fold; video_name written as ints and as padded strings.
DFEW_CLIPS = {
    1: (1, 1),
    2: (2, 1),
    3: (3, 2),
    4: (4, 2),
    5: (5, 3),
    6: (6, 3),
    7: (7, 4),
    8: (1, 4),
    9: (2, 5),
    10: (3, 5),
}


def _dfew(root: Path, clips: dict[int, tuple[int, int]] = DFEW_CLIPS, frames: bool = True) -> Path:
    split = root / "EmoLabel_DataSplit"
    for k in range(1, 6):
        test = [f"{c:05d},{lab}" if c % 2 else f"{c},{lab}" for c, (lab, f) in clips.items() if f == k]
        train = [f"{c},{lab}" for c, (lab, f) in clips.items() if f != k]
        _write(split / "test(single-labeled)" / f"set_{k}.csv", "video_name,label\n" + "\n".join(test) + "\n")
        _write(split / "train(single-labeled)" / f"set_{k}.csv", "video_name,label\n" + "\n".join(train) + "\n")
    if frames:
        for c in clips:
            if c != 10:  # clip 10 has no frames on disk: still listed
                _frames(root / "Clip" / "clip_224x224" / f"{c:05d}")
    return root


@needs_faces
def test_dfew_labels_folds_and_frames(tmp_path: Path) -> None:
    src = DFEWSource(root=_dfew(tmp_path), label_order="dfew")
    clips = src.clips()
    assert [c.clip_id for c in clips] == [f"{c:05d}" for c in range(1, 11)]
    by_id = {c.clip_id: c for c in clips}
    assert by_id["00004"].label == "anger" and by_id["00004"].test_fold == 2  # label 4 in set_2's test csv
    assert [by_id[f"{c:05d}"].label for c in range(1, 8)] == list(src.vocabulary.classes)
    assert {c.test_fold for c in clips} == set(src.folds) == {1, 2, 3, 4, 5}
    assert all(c.split is None for c in clips)
    missing = by_id["00010"]
    assert missing.label == "neutral" and not Path(missing.path).exists()
    frames = read_frames(by_id["00001"].path)
    assert frames.rgb.shape == (3, 350, 350, 3)
    import cv2

    first = cv2.imread(str(FACES / "images" / PHOTOS[0]))[:, :, ::-1]
    np.testing.assert_array_equal(frames.rgb[0], first)


@needs_faces
def test_dfew_own_preprocessing_frames_subdir(tmp_path: Path) -> None:
    root = _dfew(tmp_path, frames=False)
    _frames(root / "faces" / "00003", PHOTOS[:2])
    clip = {c.clip_id: c for c in DFEWSource(root=root, frames_subdir="faces", label_order="dfew").clips()}["00003"]
    assert clip.path == str(root / "faces" / "00003")
    assert len(read_frames(clip.path)) == 2


def test_dfew_clip_in_two_test_sets_raises(tmp_path: Path) -> None:
    root = _dfew(tmp_path, frames=False)
    _write(root / "EmoLabel_DataSplit/test(single-labeled)/set_3.csv", "video_name,label\n5,5\n6,6\n1,1\n")
    with pytest.raises(ValueError, match="'00001' is listed twice in the test sets: fold 1 .* fold 3"):
        DFEWSource(root=root, label_order="dfew").clips()


def test_dfew_train_label_disagreeing_raises(tmp_path: Path) -> None:
    root = _dfew(tmp_path, frames=False)
    train2 = root / "EmoLabel_DataSplit/train(single-labeled)/set_2.csv"
    train2.write_text(train2.read_text().replace("\n1,1\n", "\n1,5\n"))
    with pytest.raises(ValueError, match="'00001' is labeled 'happiness' at .* but 'surprise' at .*set_2.csv:2"):
        DFEWSource(root=root, label_order="dfew").clips()


def test_dfew_unknown_label_names_file_line_and_label(tmp_path: Path) -> None:
    root = _dfew(tmp_path, frames=False)
    test4 = _write(root / "EmoLabel_DataSplit/test(single-labeled)/set_4.csv", "video_name,label\n7,7\n8,9\n")
    with pytest.raises(
        ValueError, match=re.escape(f"{test4}:3: integer label '9' is outside label_order 'dfew' (1..7, base 1)")
    ):
        DFEWSource(root=root, label_order="dfew").clips()


def test_dfew_missing_root_and_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"DFEW root not found: {tmp_path / 'nope'}.*EmoLabel_DataSplit"):
        DFEWSource(root=tmp_path / "nope", label_order="dfew").clips()
    root = _dfew(tmp_path / "d", frames=False)
    (root / "EmoLabel_DataSplit/train(single-labeled)/set_5.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"train\(single-labeled\)/set_5.csv"):
        DFEWSource(root=root, label_order="dfew").clips()


# ------------------------------------------------------------------------------------------------------------- MAFW

# clip -> (class name, test fold); the name is written as the official files do ("00025.mp4 anger").
MAFW_CLIPS = {
    "00025": ("anger", 1),
    "00055": ("disgust", 2),
    "00120": ("neutral", 3),
    "01440": ("happiness", 4),
    "08581": ("helplessness", 5),
    "09683": ("disappointment", 5),
}


def _mafw(root: Path, split_dir: str = "Train & Test Set", label=lambda name: name) -> Path:
    base = root / split_dir / "single" / "no_caption"
    for k in range(1, 6):
        for part, in_test in (("test", True), ("train", False)):
            lines = [f"{c}.mp4 {label(n)}" for c, (n, f) in MAFW_CLIPS.items() if (f == k) == in_test]
            _write(base / f"set_{k}" / f"{part}.txt", "\n".join(lines) + "\n")
    return root


@needs_faces
def test_mafw_official_names_and_frame_folders(tmp_path: Path) -> None:
    root = _mafw(tmp_path)
    _frames(root / "data" / "frames" / "00025", PHOTOS[:1])
    src = MAFWSource(root=root)
    clips = {c.clip_id: c for c in src.clips()}
    assert {k: (c.label, c.test_fold) for k, c in clips.items()} == MAFW_CLIPS
    assert clips["00025"].path == str(root / "data/frames/00025")
    assert len(read_frames(clips["00025"].path)) == 1
    assert clips["00120"].path == str(root / "data/frames/00120")  # listed though absent
    assert src.folds == [1, 2, 3, 4, 5] and src.name == "mafw"


def test_mafw_video_folder_and_split_path(tmp_path: Path) -> None:
    root = _mafw(tmp_path, split_dir="split")
    _write(root / "data" / "clips" / "00055.mp4", "")
    clips = {c.clip_id: c for c in MAFWSource(root=root, frames_subdir="data/clips").clips()}
    assert clips["00055"].path == str(root / "data/clips/00055.mp4")


@pytest.mark.parametrize(
    ("order", "ints"),
    [
        # MAE-DFER (0-based): anger 0, disgust 1, neutral 4, happiness 3, helplessness 9, disappointment 10.
        (
            "mafw_official",
            {"anger": 0, "disgust": 1, "neutral": 4, "happiness": 3, "helplessness": 9, "disappointment": 10},
        ),
        # DFER-CLIP (0-based): happiness 0 ... anger 3, disgust 5, helplessness 9, disappointment 10.
        (
            "mafw_dfew_first",
            {"anger": 3, "disgust": 5, "neutral": 2, "happiness": 0, "helplessness": 9, "disappointment": 10},
        ),
        # LabelEncoder (0-based, alphabetical): anger 0, anxiety 1, ..., surprise 10.
        (
            "mafw_alpha",
            {"anger": 0, "disgust": 4, "neutral": 8, "happiness": 6, "helplessness": 7, "disappointment": 3},
        ),
    ],
)
def test_mafw_integer_labels_under_each_order(tmp_path: Path, order: str, ints: dict[str, int]) -> None:
    root = _mafw(tmp_path, label=lambda name: str(ints[name]))
    clips = MAFWSource(root=root, label_order=order).clips()
    assert {c.clip_id: c.label for c in clips} == {c: n for c, (n, _) in MAFW_CLIPS.items()}
    # The same integers read under another order give other names: the order is never guessed.
    other = next(o for o in MAFW_ORDERS if o != order)
    assert {c.label for c in MAFWSource(root=root, label_order=other).clips()} != {n for n, _ in MAFW_CLIPS.values()}


def test_mafw_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Train & Test Set/single/no_caption or .*split/single/no_caption"):
        MAFWSource(root=tmp_path).clips()
    root = _mafw(tmp_path)
    bad = _write(root / "Train & Test Set/single/no_caption/set_2/test.txt", "00055.mp4 boredom\n")
    with pytest.raises(KeyError, match=f"{bad}:1: label 'boredom' is not in the 'mafw_official' vocabulary"):
        MAFWSource(root=root).clips()
    _write(bad, "00055.mp4 11\n")
    with pytest.raises(ValueError, match=r"label '11' is outside label_order 'mafw_official' \(0..10, base 0\)"):
        MAFWSource(root=root, label_order="mafw_official").clips()
    with pytest.raises(ValueError, match="unknown MAFW label_order 'mafw'"):
        MAFWSource(root=root, label_order="mafw")


# ---------------------------------------------------------------------------------------------------------- FERV39K


def _ferv(root: Path, train: str, test: str) -> Path:
    _write(root / "4_setups" / "All_scenes" / "train_All.csv", train)
    _write(root / "4_setups" / "All_scenes" / "test_All.csv", test)
    return root


@needs_faces
def test_ferv39k_official_name_lines(tmp_path: Path) -> None:
    root = _ferv(
        tmp_path,
        train="Action/Sad/0010 Sad\nInterview/Happy/0118 Happy\nWar/Fear/0002 Fear\n",
        test="DailyLife/Angry/0094 Angry\nTerror/Disgust/0018 Disgust\n",
    )
    _frames(root / "2_ClipsforFaceCrop" / "Action" / "Sad" / "0010", PHOTOS[:2])
    src = FERV39KSource(root=root)
    clips = src.clips()
    assert [c.clip_id for c in clips] == sorted(c.clip_id for c in clips)
    got = {c.clip_id: (c.label, c.split, c.test_fold) for c in clips}
    assert got == {
        "Action/Sad/0010": ("sadness", "train", None),
        "Interview/Happy/0118": ("happiness", "train", None),
        "War/Fear/0002": ("fear", "train", None),
        "DailyLife/Angry/0094": ("anger", "test", None),
        "Terror/Disgust/0018": ("disgust", "test", None),
    }
    assert src.folds == []
    assert len(read_frames(clips[0].path)) == 2


def test_ferv39k_integer_labels_header_and_commas(tmp_path: Path) -> None:
    root = _ferv(
        tmp_path,
        train="path label\nAction/ActionComedy/0001 0\nAction/ActionComedy/0002 3\n",
        test="Speech/Neutral/0031,2\nLiveshow/Surprise/0009,4\n",
    )
    got = {c.clip_id: (c.label, c.split) for c in FERV39KSource(root=root, label_order="ferv39k").clips()}
    assert got == {
        "Action/ActionComedy/0001": ("happiness", "train"),
        "Action/ActionComedy/0002": ("anger", "train"),
        "Speech/Neutral/0031": ("neutral", "test"),
        "Liveshow/Surprise/0009": ("surprise", "test"),
    }


def test_ferv39k_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"FERV39K root not found: {tmp_path / 'x'}.*4_setups/All_scenes"):
        FERV39KSource(root=tmp_path / "x").clips()
    root = _ferv(tmp_path, train="A/Happy/0001 Happy\n", test="A/Sad/0002 Sad\nA/Sad/0003 Contempt\n")
    with pytest.raises(KeyError, match=r"test_All.csv:2: label 'Contempt' is not in the 'ferv39k' vocabulary"):
        FERV39KSource(root=root).clips()
    _ferv(tmp_path, train="A/Happy/0001 Happy\n", test="A/Happy/0001 Happy\n")
    with pytest.raises(ValueError, match="'A/Happy/0001' is listed twice"):
        FERV39KSource(root=root).clips()
    (root / "4_setups/All_scenes/test_All.csv").unlink()
    with pytest.raises(FileNotFoundError, match="expected .*4_setups/All_scenes/test_All.csv"):
        FERV39KSource(root=root).clips()


# --------------------------------------------------------------------------------------------------------- manifest


def test_manifest_inferred_vocabulary_splits_folds(tmp_path: Path) -> None:
    csv_path = _write(
        tmp_path / "data" / "clips.csv",
        "path,label,split,fold\nvideos/a.mp4,Happy,train,1\nvideos/b.mp4,SADNESS,test,2\nframes/c,neutral,,\n",
    )
    src = ManifestSource(csv=csv_path)
    assert src.vocabulary.name == "manifest"
    assert src.vocabulary.classes == ("happiness", "neutral", "sadness")
    clips = src.clips()
    assert [(c.clip_id, c.label, c.split, c.test_fold) for c in clips] == [
        ("frames/c", "neutral", None, None),
        ("videos/a", "happiness", "train", 1),
        ("videos/b", "sadness", "test", 2),
    ]
    assert clips[1].path == str(tmp_path / "data" / "videos" / "a.mp4")  # relative to the CSV's folder
    assert src.folds == [1, 2]


def test_manifest_named_vocabulary_and_root(tmp_path: Path) -> None:
    csv_path = _write(tmp_path / "m.csv", "path,label\nx/1.mp4,anger\nx/2.mp4,disgusted\n")
    src = ManifestSource(csv=csv_path, root=tmp_path / "media", vocabulary="faces8")
    assert len(src.vocabulary) == 8
    clips = src.clips()
    assert [(c.clip_id, c.label) for c in clips] == [("x/1", "anger"), ("x/2", "disgust")]
    assert clips[0].path == str(tmp_path / "media" / "x" / "1.mp4")


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"expected {tmp_path / 'none.csv'}"):
        ManifestSource(csv=tmp_path / "none.csv")
    bad = _write(tmp_path / "m.csv", "path,label\na.mp4,anger\nb.mp4,boredom\n")
    with pytest.raises(KeyError, match=f"{bad}:3: label 'boredom' is not in the 'faces8' vocabulary"):
        ManifestSource(csv=bad, vocabulary="faces8").clips()
    ints = _write(tmp_path / "i.csv", "path,label\na.mp4,3\n")
    with pytest.raises(ValueError, match=f"{ints}:2: integer label '3', but no label_order is named"):
        ManifestSource(csv=ints)
    nolabel = _write(tmp_path / "n.csv", "file,emotion\na.mp4,anger\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['path', 'label'\]"):
        ManifestSource(csv=nolabel)


# ----------------------------------------------------------------------------------------------------- image folder


@needs_faces
def test_image_folder_class_folders_any_case(tmp_path: Path) -> None:
    for folder, photo in (("HAPPY", PHOTOS[0]), ("happiness", PHOTOS[1]), ("Anger", PHOTOS[2])):
        (tmp_path / folder).mkdir()
        shutil.copy(FACES / "images" / photo, tmp_path / folder / photo)
    clips = ImageFolderSource(root=tmp_path).clips()
    assert [(c.clip_id, c.label) for c in clips] == [
        ("Anger/James_Carville_0001", "anger"),
        ("HAPPY/Mark_Philippoussis_0005", "happiness"),
        ("happiness/Jack_Straw_0004", "happiness"),
    ]
    assert read_frames(clips[0].path).rgb.shape == (1, 350, 350, 3)


@needs_faces
def test_image_folder_legend_mixed_case(tmp_path: Path) -> None:
    with (FACES / "legend.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    upper = [r for r in rows if r["emotion"] == "HAPPINESS"][:2]
    lower = [r for r in rows if r["emotion"] == "happiness"][:2]
    other = [r for r in rows if r["emotion"].lower() == "surprise"][:1]
    pick = upper + lower + other
    legend = tmp_path / "legend.csv"
    with legend.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["user.id", "image", "emotion"])
        w.writeheader()
        w.writerows(pick)
    src = ImageFolderSource(root=FACES / "images", legend=legend)
    clips = src.clips()
    assert len(clips) == 5
    assert {c.label for c in clips} == {"happiness", "surprise"}
    assert sum(c.label == "happiness" for c in clips) == 4  # HAPPINESS and happiness are one class
    by_id = {c.clip_id: c for c in clips}
    first = Path(upper[0]["image"]).stem
    assert by_id[first].path == str(FACES / "images" / upper[0]["image"])
    assert read_frames(by_id[first].path).rgb.shape[0] == 1


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"image folder root not found: {tmp_path / 'x'}"):
        ImageFolderSource(root=tmp_path / "x").clips()
    (tmp_path / "boredom").mkdir()
    with pytest.raises(KeyError, match="boredom: label 'boredom' is not in the 'faces8' vocabulary"):
        ImageFolderSource(root=tmp_path).clips()
    legend = _write(tmp_path / "l.csv", "user.id,image,emotion\nu,a.jpg,ANGER\nu,b.jpg,Boredom\n")
    with pytest.raises(KeyError, match=f"{legend}:3: label 'Boredom'"):
        ImageFolderSource(root=tmp_path, legend=legend).clips()


# -------------------------------------------------------------------------------------------------------- registry


@needs_faces
def test_image_folder_subject_pattern_names_the_person() -> None:
    src = ImageFolderSource(FACES / "images", legend=FACES / "legend.csv", subject_pattern=r"^(.+)_\d+[a-z]*$")
    clips = {c.clip_id: c for c in src.clips()}
    assert clips["Aaron_Peirsol_0002"].subject == "Aaron_Peirsol"
    assert clips["Abdullah_Gul_0012"].subject == clips["Abdullah_Gul_0005"].subject == "Abdullah_Gul"
    with pytest.raises(ValueError, match="does not match the file name"):
        ImageFolderSource(FACES / "images", legend=FACES / "legend.csv", subject_pattern=r"^zz(.+)$").clips()
    with pytest.raises(ValueError, match="not a regular expression"):
        ImageFolderSource(FACES / "images", subject_pattern="(")


@needs_faces
def test_image_folder_folds_test_every_photo_once_and_never_split_a_person() -> None:
    """n_folds=5 on the shared photos: each photo in exactly one test fold, no person in two folds, every class
    spread over the folds as evenly as whole persons allow (contempt: 7 photos), the same folds for any training
    seed (they depend on fold_seed only), and another fold_seed draws other folds."""
    kw = {"legend": FACES / "legend.csv", "subject_pattern": r"^(.+)_\d+[a-z]*$", "n_folds": 5}
    src = ImageFolderSource(FACES / "images", **kw)
    assert src.folds == [1, 2, 3, 4, 5]
    clips = src.clips()
    assert all(c.test_fold in src.folds for c in clips)
    fold_of_person: dict[str, set[int]] = {}
    for c in clips:
        fold_of_person.setdefault(c.subject, set()).add(c.test_fold)
    assert all(len(f) == 1 for f in fold_of_person.values())
    per_fold = np.bincount([c.test_fold for c in clips], minlength=6)[1:]
    assert per_fold.sum() == len(clips) and per_fold.min() > 0.8 * len(clips) / 5
    contempt = np.bincount([c.test_fold for c in clips if c.label == "contempt"], minlength=6)[1:]
    assert contempt.sum() == 7 and contempt.max() <= 2
    assert [c.test_fold for c in ImageFolderSource(FACES / "images", **kw).clips()] == [c.test_fold for c in clips]
    other = ImageFolderSource(FACES / "images", **{**kw, "fold_seed": 1}).clips()
    assert [c.test_fold for c in other] != [c.test_fold for c in clips]
    assert ImageFolderSource(FACES / "images", legend=FACES / "legend.csv").folds == []
    with pytest.raises(ValueError, match="n_folds must be 0"):
        ImageFolderSource(FACES / "images", n_folds=1)


def test_manifest_folds_are_drawn_by_subject_and_refused_beside_a_stated_protocol(tmp_path: Path) -> None:
    rows = "".join(f"c{i}.mp4,{('anger', 'happiness')[i % 2]},p{i // 2}\n" for i in range(20))
    csv_path = _write(tmp_path / "m.csv", "path,label,subject\n" + rows)
    src = ManifestSource(csv_path, n_folds=5)
    clips = src.clips()
    assert src.folds == [1, 2, 3, 4, 5]
    by_person: dict[str, set[int]] = {}
    for c in clips:
        by_person.setdefault(c.subject, set()).add(c.test_fold)
    assert all(len(f) == 1 for f in by_person.values()) and len({c.test_fold for c in clips}) == 5
    stated = _write(tmp_path / "s.csv", "path,label,split\na.mp4,anger,train\nb.mp4,anger,test\n")
    with pytest.raises(ValueError, match="already has split or fold values"):
        ManifestSource(stated, n_folds=2).clips()
    with pytest.raises(ValueError, match="need at least 5 subjects"):
        ManifestSource(_write(tmp_path / "t.csv", "path,label,subject\na.mp4,anger,x\nb.mp4,happiness,y\n"),
                       n_folds=5).clips()


def test_registry_and_protocol(tmp_path: Path) -> None:
    assert sorted(SOURCES) == ["dfew", "ferv39k", "image_folder", "mafw", "manifest", "sample"]
    sample = build_source("sample")
    assert isinstance(sample, ClipSource) and sample.vocabulary.name == "faces8" and len(sample.clips()) == 167
    src = build_source("mafw", root=tmp_path, label_order="mafw_alpha")
    assert isinstance(src, MAFWSource) and isinstance(src, ClipSource)
    assert src.vocabulary is MAFW_ORDERS["mafw_alpha"]
    with pytest.raises(KeyError, match="unknown clip source 'afew'"):
        build_source("afew", root=tmp_path)


def test_built_from_config_by_jsonargparse(tmp_path: Path) -> None:
    """LightningCLI hands sources to jsonargparse as class_path + init_args; the dataclass fields are the config."""
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--source", type=ClipSource)
    cfg = parser.parse_object(
        {
            "source": {
                "class_path": "datamodules.sources.DFEWSource",
                "init_args": {"root": str(tmp_path), "frames_subdir": "faces"},
            }
        }
    )
    src = parser.instantiate(cfg).source
    assert isinstance(src, DFEWSource) and src.frames_subdir == "faces" and src.vocabulary.name == "dfew"


# ------------------------------------------------------------------------- issue 10: names that must not be mangled


def test_manifest_clip_folders_with_dots_keep_their_whole_name(tmp_path: Path) -> None:
    """Frame folders ``subj.1/`` and ``subj.2/``: ``with_suffix("")`` made both ``subj`` ("listed twice")."""
    from datamodules.sources import clip_id_of

    csv_path = _write(tmp_path / "m.csv", "path,label\nsubj.1,anger\nsubj.2,happiness\nsubj.3.mp4,anger\n"
                                          "v2.0/take.1.MOV,anger\n")
    clips = ManifestSource(csv=csv_path).clips()
    assert [c.clip_id for c in clips] == ["subj.1", "subj.2", "subj.3", "v2.0/take.1"]
    assert clips[0].path == str(tmp_path / "subj.1")
    assert clip_id_of("a/b.c.tif") == "a/b.c" and clip_id_of("a/b.c") == "a/b.c"


def test_mafw_clip_ids_keep_dots_before_the_suffix(tmp_path: Path) -> None:
    root = tmp_path / "MAFW"
    split = root / "Train & Test Set" / "single" / "no_caption"
    for k in range(1, 6):
        _write(split / f"set_{k}" / "test.txt", f"clip.{k}.mp4 anger\n")
        _write(split / f"set_{k}" / "train.txt", "".join(f"clip.{j}.mp4 anger\n" for j in range(1, 6) if j != k))
    assert [c.clip_id for c in MAFWSource(root=root).clips()] == [f"clip.{k}" for k in range(1, 6)]


def test_image_folder_reads_every_image_type_and_lists_what_it_skips(tmp_path: Path) -> None:
    """.tif, .tiff, .jfif, .webp photos were skipped without a word (2 of 6 listed); now read, and files that are
    not photos are listed in ``skipped`` with the reason; hidden files (macOS ``._x.jpg``, ``.DS_Store``) ignored."""
    import cv2

    folder = tmp_path / "happy"
    folder.mkdir()
    img = np.full((40, 30, 3), 128, np.uint8)
    for name, ext in (("a.jpg", ".jpg"), ("b.png", ".png"), ("c.tif", ".tif"), ("d.tiff", ".tiff"),
                      ("e.jfif", ".jpg"), ("f.webp", ".webp")):
        ok, buf = cv2.imencode(ext, img)
        (folder / name).write_bytes(buf.tobytes())
    (folder / "._a.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "g.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (folder / "notes.txt").write_text("shot on a phone\n")
    src = ImageFolderSource(root=tmp_path)
    clips = src.clips()
    assert [c.clip_id for c in clips] == [f"happy/{x}" for x in "abcdef"]
    for c in clips:
        assert read_frames(c.path).rgb.shape == (1, 40, 30, 3), c.path
    assert [(Path(f).name, r.split(" (")[0]) for f, r in src.skipped] == [
        ("g.heic", "not an image type read here"), ("notes.txt", "not an image type read here")]
    assert ".heic" in src.skipped[0][1]


# ------------------------------------------------------- issue 28, item 8: integers only through an order you name

# FERV39K clips as public loaders rewrite the split files: 0-based, alphabetical (Angry=0 .. Surprise=6).
ALPHA7 = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
# The class each of those folders names, as fer_zoo spells it.
CANON7 = {"Angry": "anger", "Disgust": "disgust", "Fear": "fear", "Happy": "happiness", "Neutral": "neutral",
          "Sad": "sadness", "Surprise": "surprise"}


def _ferv_alpha(root: Path) -> Path:
    """Every class in train (two scenes) and test, labels written 0-based in alphabetical order."""
    train = "".join(f"{scene}/{c}/{k:04d} {ALPHA7.index(c)}\n"
                    for k, (scene, c) in enumerate([(s, c) for s in ("Action", "Speech") for c in ALPHA7], start=1))
    test = "".join(f"DailyLife/{c}/{k:04d} {ALPHA7.index(c)}\n" for k, c in enumerate(ALPHA7, start=1))
    return _ferv(root, train=train, test=test)


def test_ferv39k_alphabetical_integers_without_an_order_stop_naming_the_order_that_fits(tmp_path: Path) -> None:
    """Read through fer_zoo's own order these made every Angry clip happiness, without a word."""
    root = _ferv_alpha(tmp_path)
    first = root / "4_setups/All_scenes/train_All.csv"
    with pytest.raises(ValueError) as err:
        FERV39KSource(root=root).clips()
    text = str(err.value)
    assert type(err.value).__name__ == "LabelOrderError"  # a ValueError: the CLI prints it as one line
    assert text.startswith(f"{first}:1: integer label '0' (one of 21 integer labels), but no label_order is named")
    assert "fit label_order: ferv39k_alpha (0=anger, 1=disgust, 2=fear, 3=happiness, 4=neutral, 5=sadness, " \
           "6=surprise)" in text
    assert "\n" not in text and " or label_order" not in text  # one line, one order fits


def test_ferv39k_integers_read_through_the_named_order_give_every_clip_its_paths_class(tmp_path: Path) -> None:
    clips = FERV39KSource(root=_ferv_alpha(tmp_path), label_order="ferv39k_alpha").clips()
    assert len(clips) == 21
    for c in clips:
        assert c.label == CANON7[c.clip_id.split("/")[1]], c
    assert {c.clip_id: c.label for c in clips}["Action/Angry/0001"] == "anger"
    assert sorted({c.split for c in clips}) == ["test", "train"]


def test_ferv39k_integers_through_an_order_the_paths_contradict_stop(tmp_path: Path) -> None:
    root = _ferv_alpha(tmp_path)
    with pytest.raises(ValueError, match=re.escape(
            f"{root / '4_setups/All_scenes/train_All.csv'}:1: integer label '0' reads 'happiness' in label_order "
            "'ferv39k', but the clip's path 'Action/Angry/0001' names 'anger' (21 of the 21 clips whose paths name a "
            "class disagree); the class names in the clip paths fit label_order: ferv39k_alpha (0=anger")):
        FERV39KSource(root=root, label_order="ferv39k").clips()
    # The official name files are read as before, whatever order is named for integers.
    _ferv(root, train="Action/Sad/0010 Sad\n", test="War/Fear/0002 Fear\n")
    assert [c.label for c in FERV39KSource(root=root).clips()] == ["sadness", "fear"]


def test_ferv39k_your_own_order_as_a_list_and_orders_of_other_classes_refused(tmp_path: Path) -> None:
    root = _ferv_alpha(tmp_path)
    clips = FERV39KSource(root=root, label_order=[c.lower() for c in ALPHA7]).clips()
    assert all(c.label == CANON7[c.clip_id.split("/")[1]] for c in clips)
    with pytest.raises(KeyError, match=r"label_order 'mafw_alpha' \(11 classes.*known orders over them: \['dfew', "
                                       r"'ferv39k', 'ferv39k_alpha', 'fer2013', 'rafdb'\]"):
        FERV39KSource(root=root, label_order="mafw_alpha")
    with pytest.raises(ValueError, match=r"unknown FERV39K label_order 'alpha'; known: \["):
        FERV39KSource(root=root, label_order="alpha")


def test_dfew_integers_need_the_release_order_named(tmp_path: Path) -> None:
    """DFEW's split files hold only integers: 1-7 mean Happy..Fear in the release, but a rewritten copy may count
    otherwise, and its paths (00001) name no class to check against, so the order must be named."""
    root = _dfew(tmp_path, frames=False)
    with pytest.raises(ValueError, match=re.escape(
            f"{root / 'EmoLabel_DataSplit/test(single-labeled)/set_1.csv'}:2: integer label '1' (one of 50 integer "
            "labels), but no label_order is named, and fer_zoo never guesses what an integer means. The DFEW release "
            "numbers its classes as label_order: dfew (1=happiness, 2=sadness, 3=neutral, 4=anger, 5=surprise, "
            "6=disgust, 7=fear). The clip paths name no classes to check an order against; known orders that read "
            "these integers: ['dfew', 'rafdb']")):
        DFEWSource(root=root).clips()
    labels = {c.clip_id: c.label for c in DFEWSource(root=root, label_order="dfew").clips()}
    assert [labels[f"{c:05d}"] for c in range(1, 8)] == ["happiness", "sadness", "neutral", "anger", "surprise",
                                                         "disgust", "fear"]
    # The same files read as RAF-DB's order (1 = surprise) if that is what the user says they are.
    assert DFEWSource(root=root, label_order="rafdb").clips()[0].label == "surprise"


def test_mafw_integers_need_one_of_its_orders_named(tmp_path: Path) -> None:
    """MAFW read integer files through mafw_official unless told otherwise; now only through a named order."""
    root = _mafw(tmp_path, label=lambda name: str(MAFW_ORDERS["mafw_alpha"].classes.index(name)))
    with pytest.raises(ValueError, match=r"set_1/test.txt:1: integer label '0' \(one of 30 integer labels\), "
                                              r"but no label_order is named.*'mafw_official', 'mafw_alpha', "
                                              r"'mafw_dfew_first'"):
        MAFWSource(root=root).clips()
    clips = MAFWSource(root=root, label_order="mafw_alpha").clips()
    assert {c.clip_id: c.label for c in clips} == {c: n for c, (n, _) in MAFW_CLIPS.items()}
    # Names need no order, as before.
    assert {c.label for c in MAFWSource(root=_mafw(tmp_path / "names")).clips()} == {n for n, _ in
                                                                                     MAFW_CLIPS.values()}


def test_manifest_integers_through_a_named_order_checked_against_class_folders(tmp_path: Path) -> None:
    rows = "".join(f"clips/{c}/{k}.mp4,{ALPHA7.index(c)}\n" for k, c in enumerate(ALPHA7))
    csv_path = _write(tmp_path / "m.csv", "path,label\n" + rows)
    with pytest.raises(ValueError, match=r"m.csv:2: integer label '0' \(one of 7 integer labels\), but no "
                                              r"label_order is named.*fit label_order: ferv39k_alpha \(0=anger"):
        ManifestSource(csv=csv_path)
    src = ManifestSource(csv=csv_path, label_order="ferv39k_alpha")
    assert src.vocabulary.classes == tuple(sorted(CANON7.values()))
    assert {c.clip_id: c.label for c in src.clips()} == {f"clips/{c}/{k}": CANON7[c] for k, c in enumerate(ALPHA7)}
    with pytest.raises(ValueError, match=r"m.csv:2: integer label '0' reads 'happiness' in label_order "
                                              r"'ferv39k', but the clip's path 'clips/Angry/0' names 'anger'"):
        ManifestSource(csv=csv_path, label_order="ferv39k")
    # A named vocabulary: the order's classes must be in it, and the folders are still checked.
    assert ManifestSource(csv=csv_path, vocabulary="faces8", label_order="ferv39k_alpha").clips()[0].label == "anger"
    with pytest.raises(ValueError, match=r"m.csv:6: integer label '4' reads 'sadness' in label_order "
                                              r"'fer2013'.* names 'neutral' \(3 of the 7"):
        ManifestSource(csv=csv_path, vocabulary="faces8", label_order="fer2013").clips()


def test_manifest_integers_without_class_folders_read_through_your_list(tmp_path: Path) -> None:
    csv_path = _write(tmp_path / "m.csv", "path,label\na.mp4,1\nb.mp4,0\nc.mp4,neutral\n")
    src = ManifestSource(csv=csv_path, label_order=["sadness", "happy"])
    assert src.vocabulary.classes == ("happiness", "neutral", "sadness")
    assert [(c.clip_id, c.label) for c in src.clips()] == [("a", "happiness"), ("b", "sadness"), ("c", "neutral")]
    with pytest.raises(ValueError, match=r"m.csv:2: integer label '1' is outside label_order 'your list' \(0..0"):
        ManifestSource(csv=csv_path, label_order=["sadness"])
    with pytest.raises(KeyError, match=r"m.csv:2: integer label '1' reads 'happiness' in label_order 'your list', "
                                       r"which is not in the 'manifest' vocabulary \['neutral', 'sadness'\]"):
        ManifestSource(csv=csv_path, vocabulary=["neutral", "sadness"], label_order=["sadness", "happy"]).clips()


def test_label_order_from_a_config_by_jsonargparse(tmp_path: Path) -> None:
    """``label_order`` as YAML gives it: a known order's name, or the class names as a list."""
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--source", type=ClipSource)
    root = _ferv_alpha(tmp_path)
    for order in ("ferv39k_alpha", [c.lower() for c in ALPHA7]):
        cfg = parser.parse_object({"source": {"class_path": "datamodules.sources.FERV39KSource",
                                              "init_args": {"root": str(root), "label_order": order}}})
        src = parser.instantiate(cfg).source
        assert src.label_order == order
        assert {c.clip_id: c.label for c in src.clips()}["Speech/Sad/0013"] == "sadness"
