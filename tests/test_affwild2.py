"""AffWild2Source on an ABAW-format data set built here from the shared real videos, with labels written here.

Layout built (module fixture): cropped_aligned/ frames of single_face.mp4 (``video01``, 72 frames, 3 deleted), the
left and right halves of WolfgangLanger_Pexels.mp4 (``video02_left`` / ``video02_right``, 40 frames, one deleted on
the right), single_face.mp4 itself as a raw video (``video03``), and an annotated clip with no frames (``video04``);
EXPR / VA / AU files with segments of known classes and unlabeled stretches in Train_Set and Validation_Set.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from datamodules.affwild2 import AffWild2Source, read_expr, video_of
from datamodules.frame_labels import AU_NAMES, FrameLabels, frame_grid
from datamodules.frames import read_frames
from datamodules.labels import get_vocabulary
from fer_zoo.dense.baselines import DenseClip, dense_baselines

EXPR_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
AU_HEADER = ",".join(AU_NAMES)
IDX = {c: i for i, c in enumerate(("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise",
                                   "other"))}

# video01 (72 frames): happiness 0-19, unlabeled 20-29, neutral 30-49, other 50-71
V01_EXPR = [4] * 20 + [-1] * 10 + [0] * 20 + [7] * 22
V01_DELETED = (5, 31, 72)  # 1-based file numbers removed from cropped_aligned/video01
V02_LEFT_EXPR = [6] * 15 + [1] * 25  # surprise then anger
V02_RIGHT_EXPR = [-1] * 10 + [5] * 30  # unlabeled then sadness
V02_RIGHT_DELETED = (12,)  # frame 11: labeled (sadness)


def write(path: Path, header: str, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(f"{line}\n" for line in lines))
    return path


def first_frames(video: Path, n: int) -> list[np.ndarray]:
    import av

    out = []
    with av.open(str(video)) as c:
        for frame in c.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == n:
                break
    return out


def save_crops(frames: list[np.ndarray], folder: Path, deleted: tuple[int, ...] = ()) -> None:
    """``folder/00001.jpg ...`` as 112x112 crops (ABAW's cropped_aligned size), then the ``deleted`` numbers removed."""
    import cv2

    folder.mkdir(parents=True)
    for k, rgb in enumerate(frames, start=1):
        small = cv2.resize(rgb, (112, 112), interpolation=cv2.INTER_AREA)
        assert cv2.imwrite(str(folder / f"{k:05d}.jpg"), np.ascontiguousarray(small[:, :, ::-1]))
    for k in deleted:
        (folder / f"{k:05d}.jpg").unlink()


def va_line(k: int) -> str:
    return "-5,-5" if k >= 60 else f"{k / 100:.2f},-0.5"


def au_line(k: int, active: tuple[str, ...]) -> str:
    return ",".join("1" if a in active else "0" for a in AU_NAMES)


@pytest.fixture(scope="module")
def abaw(face_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("affwild2")
    crops = root / "cropped_aligned"
    single = first_frames(face_videos / "single_face.mp4", 72)
    assert len(single) == 72
    save_crops([f[:, 140:500] for f in single], crops / "video01", V01_DELETED)
    two = first_frames(face_videos / "WolfgangLanger_Pexels.mp4", 40)
    save_crops([f[:, :320] for f in two], crops / "video02_left")
    save_crops([f[:, 320:] for f in two], crops / "video02_right", V02_RIGHT_DELETED)
    shutil.copy(face_videos / "single_face.mp4", crops / "video03.mp4")  # a raw video instead of a frame folder

    expr, va, au = root / "EXPR_Set", root / "VA_Set", root / "AU_Set"
    write(expr / "Train_Set" / "video01.txt", EXPR_HEADER, [str(v) for v in V01_EXPR])
    write(expr / "Validation_Set" / "video02_left.txt", EXPR_HEADER, [str(v) for v in V02_LEFT_EXPR])
    write(expr / "Validation_Set" / "video02_right.txt", EXPR_HEADER, [str(v) for v in V02_RIGHT_EXPR])
    write(expr / "Validation_Set" / "video04.txt", EXPR_HEADER, ["2"] * 10)
    (expr / "Train_Set" / "README.md").write_text("not a label file")
    write(va / "Train_Set" / "video01.txt", "valence,arousal", [va_line(k) for k in range(72)])
    write(va / "Train_Set" / "video03.txt", "valence,arousal", ["0.25,0.75"] * 30)
    write(va / "Validation_Set" / "video02_left.txt", "valence,arousal", ["-1,1"] * 20 + ["0.1,-5"] * 20)
    write(au / "Train_Set" / "video01.txt", AU_HEADER,
          [au_line(k, ("AU12", "AU25")) for k in range(20)] + [",".join(["-1"] * 12)] * 10
          + [au_line(k, ()) for k in range(42)])
    write(au / "Validation_Set" / "video02_right.txt", AU_HEADER,
          [",".join(["-1"] * 12)] * 10 + [au_line(k, ("AU4",)) for k in range(30)])
    return root


def expected_frames(n: int, deleted: tuple[int, ...]) -> np.ndarray:
    return np.array([k - 1 for k in range(1, n + 1) if k not in deleted], dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------- listing


def test_lists_one_clip_per_annotation_file_with_split_subject_path(abaw: Path) -> None:
    src = AffWild2Source(abaw, "EXPR")
    clips = {c.clip_id: c for c in src.clips()}
    assert list(clips) == ["video01", "video02_left", "video02_right", "video04"]
    assert [clips[c].split for c in clips] == ["train", "val", "val", "val"]
    assert [clips[c].subject for c in clips] == ["video01", "video02", "video02", "video04"]
    assert all(c.label is None and c.test_fold is None for c in clips.values())
    assert clips["video02_left"].path == str(abaw / "cropped_aligned" / "video02_left")
    # an annotated clip without frames is listed (extraction fails it naming the path), with its reason
    assert clips["video04"].path == str(abaw / "cropped_aligned" / "video04")
    assert [c for c, _ in src.missing] == ["video04"] and "no frame folder" in src.missing[0][1]
    assert src.skipped == [(str(abaw / "EXPR_Set" / "Train_Set" / "README.md"),
                            "not an annotation file (<video>.txt)")]
    assert src.vocabulary is get_vocabulary("abaw_expr") and src.folds == [] and src.name == "affwild2"
    assert list(src.vocabulary.classes) == list(IDX)


def test_several_tasks_list_the_union_raw_video_clip(abaw: Path) -> None:
    src = AffWild2Source(abaw, ["EXPR", "VA", "AU"])
    clips = {c.clip_id: c for c in src.clips()}
    assert list(clips) == ["video01", "video02_left", "video02_right", "video03", "video04"]
    assert clips["video03"].path == str(abaw / "cropped_aligned" / "video03.mp4") and clips["video03"].split == "train"
    va_only = AffWild2Source(abaw, "va").clips()
    assert [c.clip_id for c in va_only] == ["video01", "video02_left", "video03"]


# ----------------------------------------------------------------------------------------------------------- labels


def test_expr_labels_by_frame_and_missing_crops_shift_nothing(abaw: Path) -> None:
    src = AffWild2Source(abaw, "EXPR")
    fl = src.frame_labels("video01")
    assert isinstance(fl, FrameLabels) and fl.n_frames == 72 and fl.va is None and fl.au is None
    assert fl.expr.dtype == np.int64
    np.testing.assert_array_equal(fl.expr, V01_EXPR)
    assert fl.expr[0] == IDX["happiness"] and fl.expr[25] == -1 and fl.expr[30] == IDX["neutral"]
    assert fl.expr[71] == IDX["other"]
    # 00005.jpg, 00031.jpg and 00072.jpg are gone: frames 4, 30, 71 have no image, the others keep their number
    np.testing.assert_array_equal(fl.frames, expected_frames(72, V01_DELETED))
    assert len(fl.frames) == 69 and 4 not in fl.frames and fl.frames[4] == 5


def test_left_right_tracks_read_their_own_files(abaw: Path) -> None:
    src = AffWild2Source(abaw, "EXPR")
    left, right = src.frame_labels("video02_left"), src.frame_labels("video02_right")
    np.testing.assert_array_equal(left.expr, V02_LEFT_EXPR)
    np.testing.assert_array_equal(right.expr, V02_RIGHT_EXPR)
    assert left.expr[0] == IDX["surprise"] and right.expr[10] == IDX["sadness"] and right.expr[9] == -1
    np.testing.assert_array_equal(left.frames, np.arange(40))
    np.testing.assert_array_equal(right.frames, expected_frames(40, V02_RIGHT_DELETED))
    assert video_of("video02_left") == video_of("video02_right") == "video02" and video_of("a_leftover") == "a_leftover"
    no_frames = src.frame_labels("video04")
    assert no_frames.n_frames == 10 and len(no_frames.frames) == 0 and (no_frames.expr == IDX["disgust"]).all()


def test_va_au_values_and_tasks_a_clip_lacks(abaw: Path) -> None:
    src = AffWild2Source(abaw, ["EXPR", "VA", "AU"])
    v1 = src.frame_labels("video01")
    assert v1.va.dtype == np.float32 and v1.va.shape == (72, 2)
    np.testing.assert_array_equal(v1.va[:60, 0], np.array([k / 100 for k in range(60)], dtype=np.float32))
    assert (v1.va[:60, 1] == np.float32(-0.5)).all() and np.isnan(v1.va[60:]).all()
    assert v1.au.dtype == np.int8 and v1.au.shape == (72, 12)
    on = [AU_NAMES.index("AU12"), AU_NAMES.index("AU25")]
    assert (v1.au[:20, on] == 1).all() and v1.au[:20].sum() == 40
    assert (v1.au[20:30] == -1).all() and (v1.au[30:] == 0).all()
    left = src.frame_labels("video02_left")  # EXPR and VA files, no AU file: all AUs unlabeled
    assert (left.au == -1).all() and left.au.shape == (40, 12)
    assert (left.va[:20] == [-1, 1]).all() and (left.va[20:, 0] == np.float32(0.1)).all()
    assert np.isnan(left.va[20:, 1]).all()
    right = src.frame_labels("video02_right")  # no VA file
    assert np.isnan(right.va).all() and (right.au[10:, AU_NAMES.index("AU4")] == 1).all()
    raw = src.frame_labels("video03")  # a video: decoded frame k is annotation frame k
    assert raw.frames is None and raw.n_frames == 30 and (raw.expr == -1).all() and (raw.va == [0.25, 0.75]).all()
    np.testing.assert_array_equal(raw.row_frames(np.arange(30)), np.arange(30))
    with pytest.raises(ValueError, match="past the 30 frames"):
        raw.row_frames(np.arange(31))
    with pytest.raises(KeyError, match="not listed"):
        src.frame_labels("video99")


def test_store_rows_map_to_annotation_frames_through_the_real_reader(abaw: Path) -> None:
    """What the store records (the reader's positions in the folder, capped or not) maps to each file's number."""
    fl = AffWild2Source(abaw, "EXPR").frame_labels("video01")
    folder = abaw / "cropped_aligned" / "video01"
    for cap in (None, 10):
        frames = read_frames(folder, max_frames=cap)
        rows = fl.row_frames(frames.indices)
        files = sorted(folder.glob("*.jpg"))
        np.testing.assert_array_equal(rows, [int(files[i].stem) - 1 for i in frames.indices])
    full = read_frames(folder)
    assert full.rgb.shape == (69, 112, 112, 3)
    grid, present = frame_grid(full.rgb.reshape(69, -1).mean(axis=1), fl.row_frames(full.indices), fl.n_frames)
    assert grid.shape == (72,) and present.sum() == 69 and not present[[4, 30, 71]].any()
    assert grid[5] == pytest.approx(full.rgb[4].mean())  # file 00006.jpg is the 5th file, frame 5
    with pytest.raises(ValueError, match="not built from this folder"):
        fl.row_frames(np.array([69]))
    with pytest.raises(ValueError, match="same annotation frame"):
        frame_grid(np.zeros(2), np.array([3, 3]), 72)


def test_baselines_on_real_crops_score_frames_without_a_crop(abaw: Path) -> None:
    """Store-like rows (the real reader over the crops, 8x8 pixels each) laid out on the annotation frames."""
    src = AffWild2Source(abaw, "EXPR")
    paths = {c.clip_id: c.path for c in src.clips()}

    def dense(clip_id: str) -> DenseClip:
        fl = src.frame_labels(clip_id)
        frames = read_frames(paths[clip_id])
        pixels = frames.rgb[:, ::14, ::14].reshape(len(frames), -1).astype(np.float32) / 255
        grid, present = frame_grid(pixels, fl.row_frames(frames.indices), fl.n_frames)
        return DenseClip(clip_id, fl, {"pixels": grid}, {"pixels": present})

    out = dense_baselines([dense("video01")], [dense("video02_left"), dense("video02_right")])["EXPR"]
    # video01's majority is "other" (22 frames), a class the validation tracks never show: every F1 is 0
    assert out["majority"].n_train == 62 and out["majority"].score.n_frames == 40 + 30
    assert out["majority"].score.f1 == 0.0 and out["probe"].score.f1 == 0.0  # trained on 3 classes val lacks
    assert out["probe"].n_train == 59  # the 3 deleted crops of video01 are all labeled frames
    assert out["probe"].n_fallback == 1  # video02_right's frame 11 (sadness) has no crop: scored all the same


# ------------------------------------------------------------------------------------------------------------ folds


def test_k_folds_keep_both_people_of_a_video_together(abaw: Path) -> None:
    clips = AffWild2Source(abaw, ["EXPR", "VA", "AU"], n_folds=2, fold_seed=3).clips()
    fold = {c.clip_id: c.test_fold for c in clips}
    assert set(fold.values()) == {1, 2} and fold["video02_left"] == fold["video02_right"]
    assert {c.clip_id: c.split for c in clips}["video01"] == "train"  # the official split stays recorded
    again = AffWild2Source(abaw, ["EXPR", "VA", "AU"], n_folds=2, fold_seed=3).clips()
    assert {c.clip_id: c.test_fold for c in again} == fold
    assert AffWild2Source(abaw, "EXPR", n_folds=2).folds == [1, 2]
    with pytest.raises(ValueError, match="at least 5 subjects"):
        AffWild2Source(abaw, ["EXPR", "VA", "AU"], n_folds=5).clips()  # 4 videos (video02 counts once)
    with pytest.raises(ValueError, match="n_folds must be 0"):
        AffWild2Source(abaw, "EXPR", n_folds=1)


# ----------------------------------------------------------------------------------------------------------- errors


def small_root(tmp_path: Path, expr_lines: list[str], files: tuple[str, ...] = ("00001.jpg", "00002.jpg"),
               header: str = EXPR_HEADER) -> Path:
    """One clip ``v`` with EXPR labels and empty frame files (listing and labels never decode images), beside a
    good clip ``ok``."""
    write(tmp_path / "EXPR_Set" / "Train_Set" / "v.txt", header, expr_lines)
    write(tmp_path / "EXPR_Set" / "Train_Set" / "ok.txt", EXPR_HEADER, ["3", "3"])
    (tmp_path / "EXPR_Set" / "Validation_Set").mkdir()
    for clip, names in (("v", files), ("ok", ("00001.jpg", "00002.jpg"))):
        folder = tmp_path / "cropped_aligned" / clip
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).touch()
    return tmp_path


@pytest.mark.parametrize(("lines", "header", "match"), [
    (["1", "2"], "Neutral,Anger,Happy", r"v\.txt:1: EXPR header must be"),
    (["1", "8"], EXPR_HEADER, r"v\.txt:3: value '8' \(column 1\) is not a class index -1\.\.7"),
    (["1", "x"], EXPR_HEADER, r"v\.txt:3: value 'x'"),
    (["1", "1.0"], EXPR_HEADER, r"v\.txt:3: value '1\.0'"),
    (["1,2", "1"], EXPR_HEADER, r"v\.txt:2: expected 1 comma-separated values, got 2"),
    (["1", "", "1"], EXPR_HEADER, r"v\.txt:3: blank line among the labels"),
    (["1", "7"], EXPR_HEADER.rsplit(",", 1)[0], r"v\.txt:3: value '7' \(column 1\) is not a class index -1\.\.6"),
])
def test_bad_expr_files_name_file_and_line_and_cost_no_other_clip(tmp_path: Path, lines: list[str], header: str,
                                                                   match: str) -> None:
    src = AffWild2Source(small_root(tmp_path, lines, header=header), "EXPR")
    assert [c.clip_id for c in src.clips()] == ["ok", "v"]  # listing never parses: one bad file stops nothing
    with pytest.raises(ValueError, match=match):
        src.frame_labels("v")
    np.testing.assert_array_equal(src.frame_labels("ok").expr, [3, 3])


def test_old_seven_class_header_and_trailing_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "seven.txt"
    path.write_text(EXPR_HEADER.rsplit(",", 1)[0] + "\r\n6\r\n-1\r\n0\r\n\r\n\n")
    np.testing.assert_array_equal(read_expr(path), [IDX["surprise"], -1, IDX["neutral"]])


def test_bad_va_and_au_values(tmp_path: Path) -> None:
    root = small_root(tmp_path, ["1", "1"])
    va = write(root / "VA_Set" / "Train_Set" / "v.txt", "valence,arousal", ["0.5,0.5", "1.5,0.2"])
    (root / "VA_Set" / "Validation_Set").mkdir()
    with pytest.raises(ValueError, match=rf"{va}:3: valence '1.5' is not in \[-1, 1\] \(or -5 = no label\)"):
        AffWild2Source(root, ["EXPR", "VA"]).frame_labels("v")
    write(va, "valence,arousal", ["0.5,nan", "0.1,0.2"])
    with pytest.raises(ValueError, match=rf"{va}:2: arousal 'nan'"):
        AffWild2Source(root, ["VA"]).frame_labels("v")
    write(va, "valence,arousal", ["0.5,0.5", "0.1"])
    with pytest.raises(ValueError, match=rf"{va}:3: expected 2 comma-separated values, got 1"):
        AffWild2Source(root, ["VA"]).frame_labels("v")
    write(va, "arousal,valence", ["0.5,0.5"])
    with pytest.raises(ValueError, match=rf"{va}:1: VA header must be 'valence,arousal'"):
        AffWild2Source(root, ["VA"]).frame_labels("v")
    au = write(root / "AU_Set" / "Train_Set" / "v.txt", AU_HEADER, [",".join(["0"] * 11 + ["2"])])
    (root / "AU_Set" / "Validation_Set").mkdir()
    with pytest.raises(ValueError, match=rf"{au}:2: value '2' \(column 12\) is not -1, 0 or 1"):
        AffWild2Source(root, ["AU"]).frame_labels("v")
    write(au, AU_HEADER.replace("AU26", "AU27"), [",".join(["0"] * 12)])
    with pytest.raises(ValueError, match=rf"{au}:1: AU header must be"):
        AffWild2Source(root, ["AU"]).frame_labels("v")


@pytest.mark.parametrize(("files", "match"), [
    (("00001.jpg", "00003.jpg"), r"v/00003\.jpg: frame 3 is past the annotation's last frame: .*v\.txt \(2 frames\)"),
    (("00001.jpg", "cover.jpg"), r"v/cover\.jpg: not a frame number"),
    (("00000.jpg", "00001.jpg"), r"v/00000\.jpg: not a frame number"),
    (("1.jpg", "00001.png"), r"frame 1 has two files"),
])
def test_bad_frame_folders_name_the_file(tmp_path: Path, files: tuple[str, ...], match: str) -> None:
    src = AffWild2Source(small_root(tmp_path, ["1", "1"], files), "EXPR")
    with pytest.raises(ValueError, match=match):
        src.frame_labels("v")
    assert len(src.frame_labels("ok").frames) == 2


def test_files_frames_with_other_extensions_are_ignored(tmp_path: Path) -> None:
    src = AffWild2Source(small_root(tmp_path, ["1", "1", "1"], ("00001.jpg", "00003.jpg", "notes.txt", ".DS_Store")))
    np.testing.assert_array_equal(src.frame_labels("v").frames, [0, 2])


def test_files_of_different_lengths_leave_the_shorter_task_unlabeled_at_the_end(tmp_path: Path) -> None:
    root = small_root(tmp_path, ["1", "2", "3"], ("00001.jpg", "00005.jpg"))
    write(root / "VA_Set" / "Train_Set" / "v.txt", "valence,arousal", ["0.5,0.5"] * 5)
    (root / "VA_Set" / "Validation_Set").mkdir()
    fl = AffWild2Source(root, ["EXPR", "VA"]).frame_labels("v")
    assert fl.n_frames == 5
    np.testing.assert_array_equal(fl.expr, [1, 2, 3, -1, -1])
    assert (fl.va == 0.5).all()
    np.testing.assert_array_equal(fl.frames, [0, 4])  # 00005.jpg is inside the longer file: frame 4
    with pytest.raises(ValueError, match=r"00005\.jpg: frame 5 is past the annotation's last frame: .*\(3 frames\)"):
        AffWild2Source(root, "EXPR").frame_labels("v")  # EXPR alone covers 3 frames


def test_split_conflicts_between_tasks_and_within_a_task(tmp_path: Path) -> None:
    root = small_root(tmp_path, ["1", "1"])
    write(root / "VA_Set" / "Validation_Set" / "v.txt", "valence,arousal", ["0,0", "0,0"])
    (root / "VA_Set" / "Train_Set").mkdir()
    with pytest.raises(ValueError, match=r"clip 'v' is on both sides .*EXPR_Set/Train_Set/v\.txt \(train\).*"
                                         r"VA_Set/Validation_Set/v\.txt \(val\); set split_task"):
        AffWild2Source(root, ["EXPR", "VA"]).clips()
    split = {c.clip_id: c.split for c in AffWild2Source(root, ["EXPR", "VA"], split_task="va").clips()}
    assert split == {"ok": "train", "v": "val"}
    assert {c.clip_id: c.split for c in AffWild2Source(root, ["EXPR", "VA"], split_task="EXPR").clips()} == \
        {"ok": "train", "v": "train"}
    with pytest.raises(ValueError, match="split_task 'AU' is not among"):
        AffWild2Source(root, ["EXPR", "VA"], split_task="AU")
    write(root / "EXPR_Set" / "Validation_Set" / "ok.txt", EXPR_HEADER, ["1"])
    with pytest.raises(ValueError, match=r"'ok' is annotated for EXPR in two splits"):
        AffWild2Source(root, "EXPR").clips()


def test_layout_errors_and_challenge_folder_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown ABAW task 'EX'"):
        AffWild2Source(tmp_path, "EX")
    with pytest.raises(FileNotFoundError, match="Aff-Wild2 root not found"):
        AffWild2Source(tmp_path / "nowhere").clips()
    # the 3rd-7th ABAW release: Annotations/EXPR_Recognition_Challenge/{Train_Set,Validation_Set}
    ann = tmp_path / "6th_ABAW_Annotations" / "EXPR_Recognition_Challenge"
    write(ann / "Train_Set" / "a.txt", EXPR_HEADER, ["0"])
    write(ann / "Validation_Set" / "b.txt", EXPR_HEADER, ["1"])
    (tmp_path / "cropped_aligned").mkdir()
    with pytest.raises(FileNotFoundError, match=r"EXPR annotation folder not found.*found under "
                                                r"\['6th_ABAW_Annotations'\]: set annotations_subdir"):
        AffWild2Source(tmp_path, "EXPR").clips()
    src = AffWild2Source(tmp_path, "EXPR", annotations_subdir="6th_ABAW_Annotations")
    assert [(c.clip_id, c.split) for c in src.clips()] == [("a", "train"), ("b", "val")]
    assert len(src.missing) == 2
    with pytest.raises(FileNotFoundError, match="frames folder not found"):
        AffWild2Source(tmp_path, "EXPR", annotations_subdir="6th_ABAW_Annotations", frames_subdir="nope").clips()
    with pytest.raises(FileNotFoundError, match=r"VA annotation folder not found"):
        AffWild2Source(tmp_path, ["EXPR", "VA"], annotations_subdir="6th_ABAW_Annotations").clips()


def test_tracks_never_fall_back_to_the_shared_video_audio_from_videos(tmp_path: Path) -> None:
    write(tmp_path / "EXPR_Set" / "Train_Set" / "v9_left.txt", EXPR_HEADER, ["0"])
    write(tmp_path / "EXPR_Set" / "Train_Set" / "v8.txt", EXPR_HEADER, ["0"])
    (tmp_path / "EXPR_Set" / "Validation_Set").mkdir()
    (tmp_path / "cropped_aligned").mkdir()
    (tmp_path / "cropped_aligned" / "v9.mp4").touch()
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "v9.avi").touch()
    src = AffWild2Source(tmp_path, "EXPR", videos_subdir="videos")
    clips = {c.clip_id: c for c in src.clips()}
    assert clips["v9_left"].path == str(tmp_path / "cropped_aligned" / "v9_left")
    assert clips["v9_left"].audio == str(tmp_path / "videos" / "v9.avi")
    reasons = dict(src.missing)
    assert "a _left/_right track needs its own cropped frames" in reasons["v9_left"]
    assert "no video" in reasons["v8"] and "for its audio" in [r for c, r in src.missing if c == "v8"][-1]


def test_the_two_people_of_a_video_on_both_sides_of_the_official_split_are_refused(abaw: Path,
                                                                                    tmp_path: Path) -> None:
    """video02_left in Train_Set and video02_right in Validation_Set: one video's frames would train and test."""
    root = tmp_path / "split"
    shutil.copytree(abaw, root)
    (root / "EXPR_Set" / "Validation_Set" / "video02_left.txt").rename(root / "EXPR_Set" / "Train_Set" /
                                                                       "video02_left.txt")
    with pytest.raises(ValueError, match=r"video 'video02' are on both sides of the split \(video02_left: train, "
                                         r"video02_right: val"):
        AffWild2Source(root, "EXPR").clips()
    assert len(AffWild2Source(root, "EXPR", n_folds=2).clips()) == 4  # folds over whole videos keep them together
