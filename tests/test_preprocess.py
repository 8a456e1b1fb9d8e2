"""``python -m fer_zoo preprocess``: face tracking rules, crops, and real videos -> a DFEW tree DFEWSource reads."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from fer_zoo.video.face_track import (
    Detection,
    FaceTracker,
    InputError,
    TrackConfig,
    clip_ids,
    collect_videos,
    crop_square,
    iou,
    snap_box,
)

REPO = Path(__file__).resolve().parents[1]

FACE = (100.0, 100.0, 200.0, 200.0)
OTHER = (400.0, 100.0, 500.0, 200.0)


def _run(tracker: FaceTracker, frames: list[list[Detection]]) -> list:
    out = []
    for i, dets in enumerate(frames):
        out += tracker.step(i, dets)
    out += tracker.finish()
    assert [d.frame for d in out] == list(range(len(frames))), "every frame is decided once, in order"
    return out


def _shift(box: tuple, dx: float) -> tuple:
    return (box[0] + dx, box[1], box[2] + dx, box[3])


# ------------------------------------------------------------------------------------------------ tracking rules


def test_iou() -> None:
    assert iou(FACE, FACE) == pytest.approx(1.0)
    assert iou(FACE, OTHER) == 0.0
    assert iou(FACE, _shift(FACE, 50)) == pytest.approx(50 * 100 / (2 * 100 * 100 - 50 * 100))


def test_tracker_confirms_after_min_hits_and_backfills() -> None:
    dets = [[Detection(_shift(FACE, i), 0.9)] for i in range(8)]
    out = _run(FaceTracker(min_hits=5), dets)
    assert all(d.face_found for d in out)


def test_tracker_rejects_short_bursts_of_false_detections() -> None:
    """Clouds and logos flicker for a few frames (1-4 on the bundled no_face.mp4): never a face."""
    burst = [[], [Detection(OTHER, 0.6)], [], [Detection(FACE, 0.55)], [Detection(FACE, 0.6)], [Detection(FACE, 0.6)],
             [], []]
    out = _run(FaceTracker(min_hits=5), burst)
    assert not any(d.face_found for d in out)
    assert out[1].reason.startswith("unconfirmed") and out[3].reason.startswith("unconfirmed")
    assert out[0].reason == "no detection"


def test_tracker_follows_overlap_not_confidence() -> None:
    """Once a face is tracked, a more confident face elsewhere (another person) is ignored."""
    frames = [[Detection(_shift(FACE, 2 * i), 0.7), Detection(OTHER, 0.99 if i >= 6 else 0.3)] for i in range(12)]
    out = _run(FaceTracker(min_confidence=0.5, min_hits=3), frames)
    assert all(d.face_found for d in out)
    assert all(d.box[0] < 300 for d in out), "jumped to the other person"


def test_tracker_keeps_the_face_through_a_short_loss_and_reacquires_after_max_lost() -> None:
    short_gap = [[Detection(FACE, 0.9)]] * 5 + [[Detection(OTHER, 0.95)]] * 3 + [[Detection(FACE, 0.9)]] * 2
    out = _run(FaceTracker(min_hits=3, max_lost=5), short_gap)
    assert [d.face_found for d in out] == [True] * 5 + [False] * 3 + [True] * 2
    assert out[5].reason == "other face only"
    long_gap = [[Detection(FACE, 0.9)]] * 5 + [[]] * 6 + [[Detection(OTHER, 0.95)]] * 4
    out = _run(FaceTracker(min_hits=3, max_lost=5), long_gap)
    assert [d.face_found for d in out] == [True] * 5 + [False] * 6 + [True] * 4  # lost for > 5 frames: re-acquired
    assert out[-1].box == OTHER


def test_tracker_keeps_a_clip_shorter_than_min_hits_when_the_face_is_always_there() -> None:
    assert all(d.face_found for d in _run(FaceTracker(min_hits=5), [[Detection(FACE, 0.9)]] * 3))
    assert not any(d.face_found for d in _run(FaceTracker(min_hits=5), [[], [Detection(FACE, 0.9)], []]))


# ------------------------------------------------------------------------------------------------ crops, inputs


def test_crop_square_pads_past_the_frame_edge_and_keeps_the_face_centred() -> None:
    frame = np.full((100, 200, 3), 200, np.uint8)
    crop = crop_square(frame, (150.0, 60.0, 190.0, 100.0), margin=0.25, size=64)  # box touching right/bottom
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert crop[32, 32].tolist() == [200, 200, 200]  # the face in the middle
    assert crop[-1, -1].tolist() == [0, 0, 0]  # black past the corner of the frame
    assert crop[5, 5].tolist() == [200, 200, 200]


def test_snap_box_gives_nearby_boxes_the_same_crop_and_keeps_the_face_inside() -> None:
    box = (101.3, 52.7, 401.9, 355.1)  # 300.6 x 302.4, centre (251.6, 203.9)
    snapped = snap_box(box, 0.08)
    side = snapped[2] - snapped[0]
    assert side == pytest.approx(snapped[3] - snapped[1])  # a square
    assert abs(np.log(side / 302.4)) <= np.log(1.08) / 2 + 1e-9  # side: the nearest power of 1.08
    cx, cy = (snapped[0] + snapped[2]) / 2, (snapped[1] + snapped[3]) / 2
    assert abs(cx - 251.6) <= 0.04 * side + 1e-9 and abs(cy - 203.9) <= 0.04 * side + 1e-9  # half a cell
    assert cx / (0.08 * side) == pytest.approx(round(cx / (0.08 * side)))  # on the grid
    # the same face re-detected a pixel or so away (a photo and its H.264 video): the very same box
    assert snap_box((100.6, 53.5, 401.1, 354.6), 0.08) == snapped
    # a real move (a face walking 40 px) gives another box; snap 0 is the detected box itself
    assert snap_box(_shift(box, 40.0), 0.08) != snapped
    assert snap_box(box, 0.0) == box


def test_settings_written_before_snap_existed_are_read_as_no_snap() -> None:
    old = {k: v for k, v in TrackConfig().to_dict().items() if k != "snap"}
    assert TrackConfig.from_dict(old).snap == 0.0  # what those trees were cropped with
    assert TrackConfig().snap == 0.08 and TrackConfig.from_dict(TrackConfig().to_dict()) == TrackConfig()
    with pytest.raises(ValueError, match="snap"):
        TrackConfig(snap=0.5)


def test_a_tree_preprocessed_before_snap_is_only_extended_without_snap(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Its preprocess.json has no ``snap``: its crops were cut at the detected box, so adding clips with today's
    default would mix two kinds of crops in one tree (refused, naming the setting); ``--snap 0`` adds them alike."""
    import json

    from fer_zoo.video.preprocess import main

    out = tmp_path / "tree"
    out.mkdir()
    settings = {k: v for k, v in TrackConfig().to_dict().items() if k != "snap"}
    (out / "preprocess.json").write_text(json.dumps({**settings, "frame_cap": None,
                                                     "frames_subdir": "Clip/clip_224x224"}))
    photo = sorted((REPO / "data" / "sample" / "images" / "happiness").glob("*.jpg"))[0]
    assert main([str(photo), "--out", str(out)]) == 2
    assert "snap: 0.0 there, 0.08 now" in capsys.readouterr().err
    assert main([str(photo), "--out", str(out), "--snap", "0"]) == 0
    assert (out / "Clip" / "clip_224x224" / photo.stem / "00001.jpg").is_file()


def test_collect_videos_and_clip_ids(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    for name in ("a/x.mp4", "a/x.mov", "a/123.webm", "a/notes.txt"):
        (tmp_path / name).write_bytes(b"0")
    vids = collect_videos([tmp_path / "a"])
    assert [v.name for v in vids] == ["123.webm", "x.mov", "x.mp4"]  # the .txt in a folder is ignored
    assert sorted(clip_ids(vids).values()) == ["00123", "x_mov", "x_mp4"]
    assert sorted(clip_ids(vids, dfew_numbers=False).values()) == ["123", "x_mov", "x_mp4"]
    with pytest.raises(InputError, match="not a video file"):
        collect_videos([tmp_path / "a" / "notes.txt"])
    with pytest.raises(InputError, match="no such file"):
        collect_videos([tmp_path / "missing.mp4"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no videos"):
        collect_videos([tmp_path / "empty"])


def test_preprocess_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fer_zoo.video.preprocess import main

    (tmp_path / "notes.txt").write_text("hello")
    assert main([str(tmp_path / "notes.txt"), "--out", str(tmp_path / "out")]) == 2
    assert "notes.txt: not a video or photo file" in capsys.readouterr().err
    assert main([str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "out")]) == 2
    assert "nope.mp4: no such file" in capsys.readouterr().err
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not decoded: the settings are checked first")
    assert main([str(video), "--out", str(tmp_path / "out"), "--faces", "most"]) == 2
    assert "faces must be 'all', 'largest' or a number of faces >= 1" in capsys.readouterr().err
    assert main([str(video), "--out", str(tmp_path / "out"), "--detect_every", "0"]) == 2
    assert "detect_every must be an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ real videos


def _boxes(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_dfew_splits(root: Path, clips: list[str]) -> None:
    """Minimal EmoLabel_DataSplit: clip i in the test set of fold i % 5 + 1, in the train sets of the others."""
    fold = {c: i % 5 + 1 for i, c in enumerate(clips)}
    label = {c: i % 7 + 1 for i, c in enumerate(clips)}
    for part in ("train", "test"):
        d = root / "EmoLabel_DataSplit" / f"{part}(single-labeled)"
        d.mkdir(parents=True)
        for k in range(1, 6):
            rows = [c for c in clips if (fold[c] == k) == (part == "test")]
            (d / f"set_{k}.csv").write_text("video_name,label\n" + "".join(f"{c},{label[c]}\n" for c in rows))


@pytest.mark.slow
def test_preprocess_real_videos_make_a_dfew_tree(face_videos: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from datamodules.frames import ClipReadError, read_frames
    from datamodules.sources import DFEWSource
    from fer_zoo.video.face_track import TrackConfig, track_video
    from fer_zoo.video.preprocess import main

    out = tmp_path / "dfew"
    rc = main([str(face_videos), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 4, "no_face.mp4 has no face: exit status 4"
    assert "no face found in" in captured.out and "no_face.mp4" in captured.out
    frames_root = out / "Clip" / "clip_224x224"
    expect = {"single_face": 72, "WolfgangLanger_Pexels": 472, "face_noface": 169, "noface_face": 169, "no_face": 95}
    assert sorted(p.name for p in frames_root.iterdir()) == sorted(expect)
    for clip, n in expect.items():
        rows = _boxes(frames_root / clip / "boxes.csv")
        assert [int(r["frame"]) for r in rows] == list(range(n))
        images = sorted(p.name for p in (frames_root / clip).glob("*.jpg"))
        faces = [r for r in rows if r["face_found"] == "1"]
        assert [r["image"] for r in faces] == images == [f"{k:05d}.jpg" for k in range(1, len(faces) + 1)]
        assert all(r["image"] == "" and r["x0"] == "" and r["reason"] for r in rows if r["face_found"] == "0")
    found = {c: [r["face_found"] == "1" for r in _boxes(frames_root / c / "boxes.csv")] for c in expect}
    assert all(found["single_face"]) and all(found["WolfgangLanger_Pexels"])
    assert not any(found["no_face"]), "the flickering false detections on clouds must not become a face"
    # face_noface: the face leaves after ~2.4 s; noface_face: it enters at ~3.9 s
    assert all(found["face_noface"][:72]) and not any(found["face_noface"][72:])
    assert not any(found["noface_face"][:96]) and all(found["noface_face"][96:168])

    # A valid DFEW tree once labels are added: DFEWSource lists the clips, read_frames reads the crops.
    ok = ["WolfgangLanger_Pexels", "face_noface", "noface_face", "single_face"]
    _write_dfew_splits(out, ok)
    records = {r.clip_id: r for r in DFEWSource(root=out, label_order="dfew").clips()}
    assert sorted(records) == ok
    for clip in ok:
        frames = read_frames(records[clip].path)
        assert frames.rgb.shape == (sum(found[clip]), 224, 224, 3)
    with pytest.raises(ClipReadError, match="no images"):
        read_frames(frames_root / "no_face")

    # predict-video decodes exactly these bytes: same tracker, same crop, same JPEG.
    res = track_video(face_videos / "single_face.mp4", TrackConfig())
    written = sorted((frames_root / "single_face").glob("*.jpg"))
    assert [r.jpeg for r in res.records] == [p.read_bytes() for p in written]

    # A rerun skips finished clips; other settings in the same tree are refused.
    assert main([str(face_videos / "single_face.mp4"), "--out", str(out)]) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert main([str(face_videos / "single_face.mp4"), "--out", str(out), "--margin", "0.4"]) == 2
    assert "other settings" in capsys.readouterr().err
    index = {r["clip_id"]: r for r in _boxes(out / "clips.csv")}
    assert index["no_face"]["status"] == "no_face" and index["single_face"]["status"] == "ok"


@pytest.mark.slow
def test_preprocess_reports_a_corrupt_video_and_goes_on(face_videos: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from fer_zoo.video.preprocess import main

    bad = tmp_path / "in" / "broken.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (tmp_path / "in" / "single_face.mp4").symlink_to(face_videos / "single_face.mp4")
    rc = main([str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--size", "112", "--frame_cap", "10"])
    captured = capsys.readouterr()
    assert rc == 3
    assert "FAILED" in captured.out and "broken.mp4" in captured.out
    clip = tmp_path / "out" / "Clip" / "clip_112x112" / "single_face"
    images = sorted(clip.glob("*.jpg"))
    assert len(images) == 10  # --frame_cap: 10 uniformly spaced face frames of the 72
    import cv2

    assert cv2.imread(str(images[0])).shape == (112, 112, 3)
    written = [r for r in _boxes(clip / "boxes.csv") if r["image"]]
    assert [int(r["frame"]) for r in written] == np.round(np.linspace(0, 71, 10)).astype(int).tolist()
    assert not (tmp_path / "out" / "Clip" / "clip_112x112" / "broken").exists()


# ------------------------------------------------------------------------------------------------ photos


def test_a_photo_is_cropped_like_every_frame_of_a_video_of_it(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`preprocess` crops a photo with the detector, tracker and crop of video frames: its one crop matches the
    crops of a still video made of it (codec noise only); a photo without a face is reported and the others go on."""
    import cv2

    from fer_zoo.video.consistency import encode_still_video
    from fer_zoo.video.preprocess import main

    photo = sorted((REPO / "data" / "sample" / "images" / "happiness").glob("*.jpg"))[0]
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    still = encode_still_video(rgb, tmp_path / "still.mp4", frames=8)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    out = tmp_path / "out"
    assert main([str(photo), str(blank), str(still), "--out", str(out)]) == 4  # 4: some input had no face
    text = capsys.readouterr()
    assert f"no face found in {blank}" in text.out + text.err
    root = out / "Clip" / "clip_224x224"
    assert sorted(p.name for p in (root / photo.stem).iterdir()) == ["00001.jpg", "boxes.csv"]
    (row,) = _boxes(root / photo.stem / "boxes.csv")
    assert row["face_found"] == "1" and row["image"] == "00001.jpg"
    assert [r["face_found"] for r in _boxes(root / "blank" / "boxes.csv")] == ["0"]
    crop = cv2.imread(str(root / photo.stem / "00001.jpg")).astype(np.float32)
    frames = sorted((root / "still").glob("*.jpg"))
    assert len(frames) == 8
    diffs = [float(np.abs(cv2.imread(str(f)).astype(np.float32) - crop).mean()) for f in frames]
    assert crop.shape == (224, 224, 3) and max(diffs) < 6.0, diffs  # same box, same crop: codec noise only
    with open(out / "manifest.csv", newline="") as f:
        listed = sorted(Path(r["path"]).name for r in csv.DictReader(f))
    assert listed == sorted([photo.stem, "still"])  # the photo without a face is left out


# ------------------------------------------------------------------------------------------------ people, legacy


def test_settings_written_before_faces_existed_are_read_as_the_single_face_rule() -> None:
    """A preprocess.json from before --faces: one face at a time by the old rule, detection on every frame."""
    old = {"detector": "short", "iou_min": 0.2, "jpeg_quality": 95, "margin": 0.25, "max_lost": 10,
           "min_confidence": 0.5, "min_hits": 5, "size": 224, "snap": 0.08, "version": "1"}
    cfg = TrackConfig.from_dict(old)
    assert (cfg.faces, cfg.detect_every) == ("legacy", 1)
    assert TrackConfig().faces == "all" and TrackConfig.from_dict(TrackConfig(faces=3).to_dict()).faces == "3"
    assert {"faces", "detect_every", "reid_seconds", "reid_appearance"} <= set(TrackConfig().to_dict())


def test_a_tree_preprocessed_before_faces_is_only_extended_with_faces_legacy(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from fer_zoo.video.preprocess import main

    out = tmp_path / "tree"
    out.mkdir()
    old = {"detector": "short", "iou_min": 0.2, "jpeg_quality": 95, "margin": 0.25, "max_lost": 10,
           "min_confidence": 0.5, "min_hits": 5, "size": 224, "snap": 0.08, "version": "1", "frame_cap": None,
           "frames_subdir": "Clip/clip_224x224"}
    (out / "preprocess.json").write_text(json.dumps(old))
    photo = sorted((REPO / "data" / "sample" / "images" / "happiness").glob("*.jpg"))[0]
    assert main([str(photo), "--out", str(out)]) == 2
    assert "faces: 'legacy' there, 'all' now" in capsys.readouterr().err
    assert main([str(photo), "--out", str(out), "--faces", "legacy"]) == 0
    assert (out / "Clip" / "clip_224x224" / photo.stem / "00001.jpg").is_file()
    assert json.loads((out / "preprocess.json").read_text()) == old  # the record of the tree is left as it was


def _tiny_video(path: Path, frames: int = 12) -> Path:
    """A 12-frame 128x96 H.264 video of a grey gradient (the fake detector below decides where the faces are)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.tile(np.linspace(40, 220, 128, dtype=np.uint8)[None, :, None], (96, 1, 3))
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        for _ in range(frames):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


class _FakeDetector:
    """Stands in for MediaPipe: the same faces on every frame, ``FACES`` (a list of (box, score))."""

    FACES: list = []

    def __init__(self, cfg: TrackConfig) -> None:
        pass

    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        return [Detection(b, s) for b, s in self.FACES]

    def close(self) -> None:
        pass


LEFT, RIGHT = ((5.0, 20.0, 45.0, 60.0), 0.8), ((70.0, 20.0, 120.0, 70.0), 0.9)


def test_preprocess_writes_one_clip_per_person_and_replaces_what_an_earlier_run_wrote(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import fer_zoo.video.preprocess as pre

    monkeypatch.setattr(pre, "FaceDetector", _FakeDetector)
    video = _tiny_video(tmp_path / "in" / "v.mp4")
    labels = tmp_path / "labels.csv"
    labels.write_text("video,label\nv.mp4,anger\n")
    out, root = tmp_path / "out", tmp_path / "out" / "Clip" / "clip_224x224"

    _FakeDetector.FACES = [LEFT]
    assert pre.main([str(video), "--out", str(out), "--labels", str(labels)]) == 0
    assert sorted(p.name for p in root.iterdir()) == ["v"]  # one person: the clip id of before
    assert {r["person"] for r in _boxes(root / "v" / "boxes.csv")} == {"1"}

    _FakeDetector.FACES = [LEFT, RIGHT]  # the same video, now with two people (e.g. another detector version)
    assert pre.main([str(video), "--out", str(out), "--labels", str(labels), "--overwrite"]) == 0
    assert sorted(p.name for p in root.iterdir()) == ["v_p1", "v_p2"], "the one-person clip of before is gone"
    p1, p2 = _boxes(root / "v_p1" / "boxes.csv"), _boxes(root / "v_p2" / "boxes.csv")
    assert [int(r["frame"]) for r in p1] == list(range(12)) and all(r["face_found"] == "1" for r in p1 + p2)
    assert {(r["x0"], r["person"]) for r in p1} == {("70.0", "1")}  # ids: largest first
    assert {(r["x0"], r["person"]) for r in p2} == {("5.0", "2")}
    index = {r["clip_id"]: r for r in _boxes(out / "clips.csv")}
    assert sorted(index) == ["v_p1", "v_p2"] and [index[c]["person"] for c in sorted(index)] == ["1", "2"]
    with open(out / "manifest.csv", newline="") as f:
        rows = [(r["path"], r["label"], r["person"]) for r in csv.DictReader(f)]
    assert rows == [("Clip/clip_224x224/v_p1", "anger", "1"), ("Clip/clip_224x224/v_p2", "anger", "2")]
    said = capsys.readouterr()
    assert f"{video}: 2 people -> v_p1, v_p2" in said.out + said.err
    assert pre.main([str(video), "--out", str(out)]) == 0  # done: skipped, the labels of before are kept
    assert "1 skipped" in capsys.readouterr().out
    with open(out / "manifest.csv", newline="") as f:
        assert [r["label"] for r in csv.DictReader(f)] == ["anger", "anger"]


def test_a_person_clip_id_taken_by_another_video_fails_that_video_only(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import fer_zoo.video.preprocess as pre

    monkeypatch.setattr(pre, "FaceDetector", _FakeDetector)
    _FakeDetector.FACES = [LEFT, RIGHT]
    a = _tiny_video(tmp_path / "in" / "v.mp4")
    b = _tiny_video(tmp_path / "in" / "v_p1.mp4")
    out = tmp_path / "out"
    assert pre.main([str(a), str(b), "--out", str(out)]) == 3
    said = capsys.readouterr()
    text = said.out + said.err
    assert f"FAILED {a}: 2 people found, but the clip id v_p1 of one of them is the clip of {b}" in text
    root = out / "Clip" / "clip_224x224"
    assert sorted(p.name for p in root.iterdir()) == ["v_p1_p1", "v_p1_p2"]  # the other video went on


def test_a_photo_with_two_faces_is_one_clip_of_its_most_confident_face(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    import fer_zoo.video.preprocess as pre

    monkeypatch.setattr(pre, "FaceDetector", _FakeDetector)
    _FakeDetector.FACES = [RIGHT, ((5.0, 20.0, 60.0, 75.0), 0.95)]  # the larger face is the less confident one
    photo = tmp_path / "two.png"
    cv2.imwrite(str(photo), np.full((96, 128, 3), 128, np.uint8))
    assert pre.main([str(photo), "--out", str(tmp_path / "out")]) == 0
    (row,) = _boxes(tmp_path / "out" / "Clip" / "clip_224x224" / "two" / "boxes.csv")
    assert (row["x0"], row["confidence"], row["person"]) == ("5.0", "0.95", "1")


class _LateDetector(_FakeDetector):
    """LEFT on every frame; RIGHT only from frame 30 on (a second person who walks in late)."""

    def __init__(self, cfg: TrackConfig) -> None:
        self.n = 0

    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        self.n += 1
        return [Detection(*LEFT)] + ([Detection(*RIGHT)] if self.n > 30 else [])


def test_frame_cap_with_several_people_spreads_over_each_persons_own_face_frames(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--frame_cap 4 on a 40-frame video where the second person is on screen for the last 10 frames: the cap picked
    frames 0, 13, 26, 39 of the whole video, so that person's clip got 1 image, status ok (review finding)."""
    import fer_zoo.video.preprocess as pre

    monkeypatch.setattr(pre, "FaceDetector", _LateDetector)
    video = _tiny_video(tmp_path / "in" / "w.mp4", frames=40)
    out = tmp_path / "out"
    assert pre.main([str(video), "--out", str(out), "--frame_cap", "4"]) == 0
    root = out / "Clip" / "clip_224x224"
    images = {d.name: sorted(p.name for p in d.glob("*.jpg")) for d in sorted(root.iterdir())}
    assert images == {"w_p1": ["00001.jpg", "00002.jpg", "00003.jpg", "00004.jpg"],
                      "w_p2": ["00001.jpg", "00002.jpg", "00003.jpg", "00004.jpg"]}
