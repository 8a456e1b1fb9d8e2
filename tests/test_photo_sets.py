"""Photo-set layouts (FER2013 CSV + FER+, RAF-DB basic, AffectNet): labels by name, official splits, exclusions,
loud errors, and ``finetune-frames`` end to end on a tiny FER2013 CSV. Fixtures are built in tmp_path with PIL."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamodules.frames import ClipReadError, read_frames, stream_frames
from datamodules.labels import LabelVocabulary
from datamodules.photo_sets import AffectNetSource, FER2013Source, RAFDBSource, ferplus_majority
from datamodules.sources import LabelError

# The official id -> class tables, written out here (not imported) so a wrong order in datamodules.labels fails.
FER2013_IDS = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sadness", 5: "surprise", 6: "neutral"}
RAFDB_IDS = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
AFFECTNET_IDS = {0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear", 5: "disgust", 6: "anger",
                 7: "contempt"}


def _pixels(i: int) -> np.ndarray:
    """A distinct 48x48 grey image per row (a gradient offset by the row)."""
    return ((np.arange(48 * 48).reshape(48, 48) + 37 * i) % 256).astype(np.uint8)


def write_fer2013(path: Path, rows: list[tuple[int, str]], usage: bool = True) -> Path:
    """fer2013.csv with one row per (emotion id, Usage)."""
    lines = ["emotion,pixels,Usage" if usage else "emotion,pixels"]
    for i, (emotion, use) in enumerate(rows):
        px = " ".join(map(str, _pixels(i).ravel()))
        lines.append(f'{emotion},"{px}",{use}' if usage else f'{emotion},"{px}"')
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------------------------------------- FER2013


def test_fer2013_labels_by_name_official_split_and_png_pixels(tmp_path: Path) -> None:
    rows = [(k, "Training") for k in range(7)] + [(6, "PublicTest"), (3, "PrivateTest"), (1, "PrivateTest")]
    csv = write_fer2013(tmp_path / "fer2013.csv", rows)
    src = FER2013Source(csv)
    clips = src.clips()
    assert [c.clip_id for c in clips] == [f"fer{i:07d}" for i in range(len(rows))]
    assert [c.label for c in clips] == [FER2013_IDS[e] for e, _ in rows]
    assert [c.split for c in clips] == ["train"] * 7 + ["val", "test", "test"]
    for i, c in enumerate(clips):  # the PNG holds the row's pixels exactly (lossless, row-major)
        assert Path(c.path).parent == tmp_path / "fer2013_images"
        rgb = read_frames(c.path).rgb[0]
        assert rgb.shape == (48, 48, 3) and np.array_equal(rgb[..., 0], _pixels(i))


def test_fer2013_pngs_are_written_once_and_again_when_the_csv_changes(tmp_path: Path) -> None:
    csv = write_fer2013(tmp_path / "fer2013.csv", [(3, "Training"), (4, "PrivateTest")])
    out = tmp_path / "png"
    FER2013Source(csv, images_dir=out).clips()
    first = out / "fer0000000.png"
    os.utime(first, ns=(1, 1))  # a rewrite would bump the modification time
    FER2013Source(csv, images_dir=out).clips()
    assert first.stat().st_mtime_ns == 1
    (out / "fer0000001.png").unlink()  # a PNG gone: written again
    FER2013Source(csv, images_dir=out).clips()
    assert (out / "fer0000001.png").is_file()
    write_fer2013(csv, [(3, "Training"), (4, "PrivateTest"), (5, "Training")])  # the CSV changed
    clips = FER2013Source(csv, images_dir=out).clips()
    assert first.stat().st_mtime_ns != 1 and len(clips) == 3
    assert json.loads((out / "fer2013_images.json").read_text())["rows"] == 3


def test_fer2013_without_usage_has_no_split_and_any_vocabulary_naming_its_classes(tmp_path: Path) -> None:
    csv = write_fer2013(tmp_path / "train.csv", [(0, ""), (5, "")], usage=False)
    clips = FER2013Source(csv, vocabulary="faces8").clips()
    assert [(c.label, c.split) for c in clips] == [("anger", None), ("surprise", None)]
    with pytest.raises(LabelError, match=r"lacks the data set's classes \['fear', 'neutral'\]"):
        FER2013Source(csv, vocabulary=LabelVocabulary("mine", ("anger", "disgust", "happiness", "sadness",
                                                               "surprise")))


@pytest.mark.parametrize("bad, match", [
    ("7", r"fer2013.csv:3: label '7' is not a fer2013 class id \(0..6"),
    ("x", r"fer2013.csv:3: label 'x' is not a fer2013 class id"),
])
def test_fer2013_unknown_label_id_names_file_and_line(tmp_path: Path, bad: str, match: str) -> None:
    csv = write_fer2013(tmp_path / "fer2013.csv", [(0, "Training"), (1, "Training")])
    lines = csv.read_text().splitlines()
    lines[2] = bad + lines[2][1:]
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(LabelError, match=match):
        FER2013Source(csv).clips()


def test_fer2013_bad_pixels_and_usage_name_file_and_line_and_write_nothing(tmp_path: Path) -> None:
    csv = write_fer2013(tmp_path / "fer2013.csv", [(0, "Training"), (1, "Training"), (2, "Training")])
    good = csv.read_text()
    lines = good.splitlines()
    lines[3] = lines[3].replace('"', '"1 ', 1)  # 2,305 values
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"fer2013.csv:4: 2305 pixel values, expected 2304"):
        FER2013Source(csv).clips()
    assert not (tmp_path / "fer2013_images").exists()  # every row is checked before any PNG is written
    lines = good.splitlines()
    lines[2] = '1,"' + " ".join(["300"] + ["0"] * 2303) + '",Training'
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"fer2013.csv:3: pixel values must lie in 0..255"):
        FER2013Source(csv).clips()
    csv.write_text(good.replace("Training", "Train", 1))
    with pytest.raises(ValueError, match=r"fer2013.csv:2: Usage 'Train' is not one of"):
        FER2013Source(csv).clips()
    csv.write_text(good[: len(good) // 2])  # a truncated CSV: the cut row lacks its Usage (and pixels)
    with pytest.raises(ValueError, match=r"fer2013.csv:3: Usage '' is not one of"):
        FER2013Source(csv).clips()
    with pytest.raises(FileNotFoundError, match=r"FER2013 CSV not found: expected .*nope.csv"):
        FER2013Source(tmp_path / "nope.csv").clips()


def test_ferplus_majority_follows_the_ferplus_rule() -> None:
    # columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
    assert ferplus_majority([5, 0, 0, 1, 3, 1, 0, 0, 0, 0]) == "neutral"  # 5 > (5+3)/2 once the single votes drop
    assert ferplus_majority([4, 0, 0, 1, 3, 2, 0, 0, 0, 0]) is None  # 4 is not more than half of 4+3+2
    assert ferplus_majority([0, 0, 6, 0, 0, 0, 4, 0, 0, 0]) == "surprise"
    assert ferplus_majority([5, 0, 5, 0, 0, 0, 0, 0, 0, 0]) is None  # no majority
    assert ferplus_majority([0, 0, 0, 0, 0, 0, 0, 0, 0, 10]) is None  # not a face
    assert ferplus_majority([2, 0, 0, 0, 0, 0, 0, 0, 8, 0]) is None  # unknown wins
    assert ferplus_majority([0, 0, 0, 0, 0, 0, 0, 7, 3, 0]) == "contempt"


def test_ferplus_relabels_by_vote_columns_and_counts_what_it_leaves_out(tmp_path: Path) -> None:
    use = ["Training", "Training", "Training", "PublicTest", "PrivateTest"]
    csv = write_fer2013(tmp_path / "fer2013.csv", [(0, u) for u in use])
    votes = ["0,9,0,0,0,0,0,1,0,0", "0,0,0,0,0,0,0,0,0,10", "5,0,5,0,0,0,0,0,0,0", "0,0,0,0,0,0,0,8,2,0",
             "0,0,0,0,0,3,7,0,0,0"]
    names = ["fer0000000.png", "", "fer0000001.png", "fer0000002.png", "fer0000003.png"]
    new = tmp_path / "fer2013new.csv"
    new.write_text("Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
                   + "".join(f"{u},{n},{v}\n" for u, n, v in zip(use, names, votes)))
    src = FER2013Source(csv, ferplus_csv=new)
    clips = src.clips()
    assert [(c.clip_id, c.label, c.split) for c in clips] == [
        ("fer0000000", "happiness", "train"), ("fer0000003", "contempt", "val"), ("fer0000004", "fear", "test")]
    assert src.excluded == {"no image name (removed by FER+: not a face)": 1,
                            "no FER+ majority (or unknown / not a face)": 1}
    assert src.vocabulary.name == "ferplus"
    new.write_text(new.read_text().replace("PublicTest", "Training"))
    with pytest.raises(ValueError, match=r"fer2013new.csv:5: Usage 'Training' but fer2013.csv row 3 is 'PublicTest'"):
        FER2013Source(csv, ferplus_csv=new).clips()


# ---------------------------------------------------------------------------------------------------------- RAF-DB


def _jpeg(path: Path, size: tuple[int, int] = (24, 24), color: tuple[int, int, int] = (200, 80, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, quality=95)
    return path


def write_rafdb(root: Path, lines: list[str]) -> Path:
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        stem = Path(line.split()[0]).stem
        _jpeg(root / "Image" / "aligned" / f"{stem}_aligned.jpg")
    return root


def test_rafdb_labels_by_name_and_the_split_from_the_file_name(tmp_path: Path) -> None:
    listed = [("train_00001.jpg", 1), ("train_00002.jpg", 4), ("train_00003.jpg", 6), ("train_00004.jpg", 3),
              ("test_0001.jpg", 7), ("test_0002.jpg", 2), ("test_0003.jpg", 5)]
    root = write_rafdb(tmp_path / "raf", [f"{n} {k}" for n, k in listed])
    clips = {c.clip_id: c for c in RAFDBSource(root).clips()}
    for name, k in listed:
        c = clips[Path(name).stem]
        assert c.label == RAFDB_IDS[k]
        assert c.split == ("train" if name.startswith("train_") else "test")
        assert c.path == str(root / "Image" / "aligned" / f"{Path(name).stem}_aligned.jpg")
    in_faces8 = {c.clip_id: c.label for c in RAFDBSource(root, vocabulary="faces8").clips()}  # by name, any order
    assert in_faces8 == {Path(n).stem: RAFDB_IDS[k] for n, k in listed}


@pytest.mark.parametrize("line, error, match", [
    ("train_00002.jpg 8", LabelError, r"list_patition_label.txt:2: label '8' is not a rafdb class id \(1..7"),
    ("train_00002.jpg 0", LabelError, r"list_patition_label.txt:2: label '0'"),
    ("val_00002.jpg 3", ValueError, r"list_patition_label.txt:2: image 'val_00002.jpg' starts with neither"),
    ("train_00002.jpg", ValueError, r"list_patition_label.txt:2: expected '<image> <label 1-7>'"),
])
def test_rafdb_bad_lines_name_file_and_line(tmp_path: Path, line: str, error: type, match: str) -> None:
    root = write_rafdb(tmp_path / "raf", ["train_00001.jpg 1", "test_0001.jpg 2"])
    lines = (root / "EmoLabel" / "list_patition_label.txt").read_text().splitlines()
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join([lines[0], line]) + "\n")
    _jpeg(root / "Image" / "aligned" / f"{Path(line.split()[0]).stem}_aligned.jpg")
    with pytest.raises(error, match=match):
        RAFDBSource(root).clips()


def test_rafdb_missing_list_or_image_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"RAF-DB label list not found: expected .*list_patition_label"):
        RAFDBSource(tmp_path).clips()
    root = write_rafdb(tmp_path / "raf", ["train_00001.jpg 1", "test_0001.jpg 2"])
    (root / "Image" / "aligned" / "test_0001_aligned.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 2 RAF-DB images listed but not found: "
                                                r".*list_patition_label.txt:2: .*test_0001_aligned.jpg"):
        RAFDBSource(root).clips()


def test_a_truncated_jpeg_is_refused_naming_the_file(tmp_path: Path) -> None:
    from fer_zoo.finetune.data import load_photo

    root = write_rafdb(tmp_path / "raf", ["train_00001.jpg 1"])
    photo = root / "Image" / "aligned" / "train_00001_aligned.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(photo, quality=95)
    data = photo.read_bytes()
    assert read_frames(photo).rgb.shape == (1, 64, 64, 3)
    photo.write_bytes(data[: len(data) // 2])  # OpenCV alone would decode this, grey-filled, without an error
    for read in (lambda: read_frames(photo), lambda: load_photo(str(photo), 32)):
        with pytest.raises(ClipReadError, match=r"train_00001_aligned.jpg: truncated JPEG"):
            read()
    photo.write_bytes(data + b"trailer after the end-of-image marker")  # complete, with trailing data: read
    assert read_frames(photo).rgb.shape == (1, 64, 64, 3)


# ------------------------------------------------------------------------------------------------------- AffectNet

HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"


def write_affectnet(root: Path, train: list[tuple[str, int, tuple[int, int, int, int]]],
                    test: list[tuple[str, int, tuple[int, int, int, int]]]) -> Path:
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)

    def row(name: str, expr: int, box: tuple[int, int, int, int]) -> str:
        return f'{name},{box[0]},{box[1]},{box[2]},{box[3]},"1.0;2.0;3.0;4.0",{expr},0.5,-0.25'

    (lists / "training.csv").write_text("\n".join([HEADER] + [row(*r) for r in train]) + "\n")
    (lists / "validation.csv").write_text("\n".join(row(*r) for r in test) + "\n")  # released without a header
    for name, _, box in train + test:
        img = np.zeros((60, 80, 3), np.uint8)
        x, y, w, h = box
        img[y:y + h, x:x + w] = (0, 255, 0)  # the face region: pure green (PNG: lossless)
        path = root / "Manually_Annotated_Images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
    return root


def test_affectnet_labels_by_name_split_box_and_exclusions(tmp_path: Path) -> None:
    box = (10, 5, 30, 20)
    train = [(f"1/a{k}.png", k, box) for k in range(11)] + [("2/b.png", 1, box), ("2/c.png", 8, box)]
    test = [("3/t0.png", 6, box), ("3/t1.png", 10, box), ("3/t2.png", 0, box)]
    root = write_affectnet(tmp_path / "affectnet", train, test)
    src = AffectNetSource(root)
    clips = {c.clip_id: c for c in src.clips()}
    assert {c: (r.label, r.split) for c, r in clips.items()} == {
        **{f"1/a{k}": (AFFECTNET_IDS[k], "train") for k in range(8)}, "2/b": ("happiness", "train"),
        "3/t0": ("anger", "test"), "3/t2": ("neutral", "test")}
    assert src.excluded == {"expression 8 (none)": 2, "expression 9 (uncertain)": 1, "expression 10 (no-face)": 2}
    assert clips["3/t0"].box == box
    face = read_frames(clips["3/t0"].path, box=clips["3/t0"].box).rgb[0]  # the crop is exactly the face box
    assert face.shape == (20, 30, 3) and (face == (0, 255, 0)).all()
    assert np.array_equal(stream_frames(clips["3/t0"].path, box=box).rgb, read_frames(clips["3/t0"].path, box=box).rgb)

    seven = AffectNetSource(root, drop_contempt=True, vocabulary="faces8")
    assert "1/a7" not in {c.clip_id for c in seven.clips()}
    assert seven.excluded["contempt (7-class protocol)"] == 1


@pytest.mark.parametrize("row, error, match", [
    ('1/x.png,1,2,3,4,"",11,0,0', LabelError, r"training.csv:3: label '11' is not a affectnet class id \(0..7"),
    ('1/x.png,1,2,0,4,"",1,0,0', ValueError, r"training.csv:3: face box \(x, y, w, h\) = \(1, 2, 0, 4\)"),
    ('1/x.png,a,2,3,4,"",1,0,0', ValueError, r"training.csv:3: face box .* must be numbers"),
    ('1/x.png,1,2,3', ValueError, r"training.csv:3: \d+ columns, expected 9"),
])
def test_affectnet_bad_rows_name_file_and_line(tmp_path: Path, row: str, error: type, match: str) -> None:
    root = write_affectnet(tmp_path / "affectnet", [("1/a.png", 1, (0, 0, 8, 8)), ("1/x.png", 1, (0, 0, 8, 8))], [])
    path = root / "Manually_Annotated_file_lists" / "training.csv"
    path.write_text("\n".join(path.read_text().splitlines()[:2] + [row]) + "\n")
    with pytest.raises(error, match=match):
        AffectNetSource(root).clips()


def test_affectnet_missing_image_and_box_outside_the_image(tmp_path: Path) -> None:
    root = write_affectnet(tmp_path / "affectnet", [("1/a.png", 1, (0, 0, 8, 8))], [("2/b.png", 2, (0, 0, 8, 8))])
    (root / "Manually_Annotated_Images" / "2" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 2 AffectNet images .*validation.csv:1: .*2/b.png"):
        AffectNetSource(root).clips()
    with pytest.raises(ClipReadError, match=r"a.png: face box .* lies outside the 80x60 image"):
        read_frames(root / "Manually_Annotated_Images" / "1" / "a.png", box=(100, 0, 5, 5))


# ------------------------------------------------------------------------------------------- finetune-frames e2e


@pytest.mark.slow
def test_finetune_frames_on_a_fer2013_csv_writes_an_encoder_file(tmp_path: Path) -> None:
    """A tiny FER2013 CSV (7 classes x 4 training rows, PublicTest as validation, PrivateTest as test), random init,
    32 px, 1 epoch: the plumbing from the pixel strings to the encoder file, with FER2013's official split."""
    from fer_zoo.__main__ import main

    rows = [(k % 7, "Training") for k in range(28)] + [(k, "PublicTest") for k in range(7)] \
        + [(k, "PrivateTest") for k in range(7)]
    csv = write_fer2013(tmp_path / "fer2013.csv", rows)
    src = {"class_path": "datamodules.photo_sets.FER2013Source", "init_args": {"csv": str(csv)}}
    rc = main(["finetune-frames", "--runs_dir", str(tmp_path / "runs"), "--run_name", "fer", "--wandb", "false",
               "--data.source", json.dumps(src), "--model.init", "none", "--data.image_size", "32",
               "--data.batch_size", "16", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
               "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1"])
    assert rc == 0
    run = tmp_path / "runs" / "fer"
    results = json.loads((run / "results.json").read_text())
    assert results["split_sizes"] == {"train": 28, "val": 7, "test": 7}  # Usage, not a seeded split
    assert results["split_ids"]["test"] == [f"fer{i:07d}" for i in range(35, 42)]
    meta = json.loads((run / "encoder.json").read_text())
    assert meta["classes"] == ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    assert meta["input_size"] == 32 and meta["fingerprint"]["source"] == "fer2013"
    assert (run / "encoder.safetensors").stat().st_size > 0


@pytest.mark.parametrize("config", ["fer2013", "rafdb", "affectnet"])
def test_finetune_config_examples_name_a_photo_set_source_with_its_fields(config: str, tmp_path: Path) -> None:
    """configs/finetune/<set>.yaml: the class path imports, its init_args are the source's fields, and the source
    built from them (paths pointed at a tiny fixture) lists photos."""
    import importlib

    import yaml

    repo = Path(__file__).resolve().parents[1]
    spec = yaml.safe_load((repo / "configs" / "finetune" / f"{config}.yaml").read_text())["data"]["source"]
    module, name = spec["class_path"].rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    args = dict(spec["init_args"])
    if config == "fer2013":
        args["csv"] = write_fer2013(tmp_path / "fer2013.csv", [(3, "Training"), (4, "PrivateTest")])
    elif config == "rafdb":
        args["root"] = write_rafdb(tmp_path / "raf", ["train_00001.jpg 4", "test_0001.jpg 5"])
    else:
        args["root"] = write_affectnet(tmp_path / "an", [("1/a.png", 1, (0, 0, 8, 8))], [("2/b.png", 2, (0, 0, 8, 8))])
    clips = cls(**args).clips()
    assert sorted((c.label, c.split) for c in clips) == [("happiness", "train"), ("sadness", "test")]


@pytest.mark.slow
def test_extract_crops_affectnet_faces_and_a_changed_box_re_extracts(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """``extract`` on an AffectNet layout: each clip's features are those of its face crop (equal to extracting the
    crop saved as its own photo), and a corrected face box re-extracts that clip (the box is in its provenance)."""
    from datamodules.feature_store import FeatureStore, find_store
    from extractors.weights import offline_mobilenet_path
    from fer_zoo.extraction.command import main as extract

    if not offline_mobilenet_path().is_file():
        pytest.skip("offline MobileNetV2 weights absent (make install)")
    rng = np.random.default_rng(0)
    root = tmp_path / "an"
    write_affectnet(root, [("1/a.png", 1, (10, 5, 40, 40))], [("2/b.png", 2, (20, 10, 36, 44))])
    crops = tmp_path / "crops"
    for rel, (x, y, w, h) in (("1/a.png", (10, 5, 40, 40)), ("2/b.png", (20, 10, 36, 44))):
        img = rng.integers(0, 255, (60, 80, 3), np.uint8)  # texture, so the crop matters to the features
        Image.fromarray(img).save(root / "Manually_Annotated_Images" / rel)
        (crops / Path(rel).parent).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[y:y + h, x:x + w]).save(crops / rel)

    def run(source: dict, store_root: Path) -> FeatureStore:
        args = ["--source", json.dumps(source), "--store_root", str(store_root), "--modalities",
                json.dumps({"resnet": {"name": "mobilenet_v2"}}), "--num_workers", "0",
                "--trainer", '{"enable_progress_bar": false}']
        assert extract(args) == 0
        return FeatureStore(find_store(store_root, "resnet"))

    boxed = run({"class_path": "datamodules.photo_sets.AffectNetSource", "init_args": {"root": str(root)}},
                tmp_path / "f1")
    legend = tmp_path / "legend.csv"
    legend.write_text("image,emotion\n1/a.png,happy\n2/b.png,sad\n")
    plain = run({"class_path": "datamodules.sources.ImageFolderSource",
                 "init_args": {"root": str(crops), "legend": str(legend), "vocabulary": "affectnet"}}, tmp_path / "f2")
    for clip in ("1/a", "2/b"):
        np.testing.assert_array_equal(boxed.clip(clip)[0], plain.clip(clip)[0])
    train = root / "Manually_Annotated_file_lists" / "training.csv"
    train.write_text(train.read_text().replace("1/a.png,10,5,40,40", "1/a.png,0,0,40,40"))
    capsys.readouterr()
    again = run({"class_path": "datamodules.photo_sets.AffectNetSource", "init_args": {"root": str(root)}},
                tmp_path / "f1")
    assert "SOURCE CHANGED [resnet] 1/a" in capsys.readouterr().out
    assert not np.array_equal(again.clip("1/a")[0], plain.clip("1/a")[0])
    np.testing.assert_array_equal(again.clip("2/b")[0], plain.clip("2/b")[0])
