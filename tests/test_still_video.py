"""A model trained on photos must work on video (issue 16): still videos, mixed photo + video manifests.

The full figure (every held-out photo of the shared photo set, two seeds, before/after) is
``benchmarks/bench_still_video.py``; here a small sample of the bundled photos, end to end through the real CLIs
(``extract``, ``fit``) and the ``predict-video`` path (real H.264 files, decoded, face tracked, extracted, scored).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_zoo.video.consistency import Jitter, encode_still_video, flip_rate

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "images"
PER_CLASS = 12
VIDEO_FRAMES = 8


def _cli(args: list[str]) -> None:
    # One OpenMP thread: on a busy shared machine torch's spinning threads slow a small fit down many times over.
    env = {"OMP_NUM_THREADS": "1", **os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, "-m", "fer_zoo", *args], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"`fer_zoo {' '.join(args)}` failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def _rgb(path: Path) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------------------------------ still videos


def test_a_still_video_decodes_back_to_its_photo(tmp_path: Path) -> None:
    from datamodules.frames import read_frames

    photo = next(iter(sorted((SAMPLE / "happiness").glob("*.jpg"))))
    rgb = _rgb(photo)
    still = read_frames(encode_still_video(rgb, tmp_path / "still.mp4", frames=16)).rgb
    jit = read_frames(encode_still_video(rgb, tmp_path / "jit.mp4", frames=16, jitter=Jitter(3, 0.1), seed=1)).rgb
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    for frames in (still, jit):
        assert len(frames) == 16 and frames[0].shape == (h, w, 3)
    ref = rgb[:h, :w].astype(np.float32)
    assert all(np.abs(f.astype(np.float32) - ref).mean() < 4.0 for f in still)  # codec noise only
    diffs = [np.abs(a.astype(np.float32) - b).mean() for a, b in zip(jit, jit[1:])]
    assert min(diffs) > 1.0  # every jittered frame differs from the one before
    means = np.array([f.mean() for f in jit]) / ref.mean()
    assert means.min() > 0.85 and means.max() < 1.15 and means.std() > 0.01


def test_the_same_jittered_still_video_decodes_to_the_same_pixels(tmp_path: Path) -> None:
    """Encoding is reproducible: with x264's default lookahead threads, 12 of 40 shared photos' jittered videos
    decoded to other pixels the second time, which moved the benchmark's agreement by a photo between runs."""
    from datamodules.frames import read_frames

    photos = sorted((SAMPLE / "happiness").glob("*.jpg"))[:6] + sorted((SAMPLE / "anger").glob("*.jpg"))[:6]
    for i, photo in enumerate(photos):
        rgb = _rgb(photo)
        a, b = (read_frames(encode_still_video(rgb, tmp_path / f"{i}_{k}.mp4", frames=16, jitter=Jitter(), seed=i)).rgb
                for k in "ab")
        assert len(a) == len(b) == 16 and all(np.array_equal(x, y) for x, y in zip(a, b)), photo.name


def test_shift_sources_split_the_photo_to_video_change_into_box_and_codec(tmp_path: Path) -> None:
    """Each crop of the decomposition is made from the right pixels and box: a photo against itself moves nothing,
    a real still video moves the features a little, and the parts are measured on the same photos."""
    from extractors.registry import get_extractor
    from fer_zoo.video.consistency import shift_sources
    from fer_zoo.video.face_track import TrackConfig

    photos = [str(p) for c in ("happiness", "anger") for p in sorted((SAMPLE / c).glob("*.jpg"))[:3]]
    videos = [encode_still_video(_rgb(Path(p)), tmp_path / f"{i}.mp4") for i, p in enumerate(photos)]
    exts = {"facemesh": get_extractor("facemesh", refine_landmarks=False, geometry=True),
            "frames": get_extractor("mobilenet_v2", weights="none")}  # random weights: only the plumbing is tested
    cfg = TrackConfig()
    with pytest.raises(ValueError, match="5 videos"):
        shift_sources(photos, [Path(p) for p in photos[:5]], cfg, exts)
    itself = shift_sources(photos, [Path(p) for p in photos], cfg, exts)
    assert itself.photos == 6
    assert all(v == 0.0 for d in (itself.box, itself.codec, itself.both) for v in d.values())
    s = shift_sources(photos, videos, cfg, exts)
    assert s.photos == 6 and set(s.box) == set(s.codec) == set(s.both) == {"facemesh", "frames"}
    for m in s.both:
        assert 0.0 < s.both[m] < 1.0 and 0.0 < s.codec[m] < 1.0 and 0.0 <= s.box[m] < 1.0, (m, s)


def test_flip_rate_counts_adjacent_changes_between_predicted_windows() -> None:
    assert flip_rate([0, 0, 1, 1, 0]) == 0.5
    assert flip_rate([2, None, 2, 3]) == 1.0  # only (2, 3): pairs with a window without prediction are skipped
    assert np.isnan(flip_rate([1]))


# ------------------------------------------------------------------------------------ trained on photos (+ videos)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Sample photos plus short labelled videos, face-cropped by ``preprocess`` (the crops predict-video makes), one
    store over them; a model fitted on the photos' crops only and one on the mixed manifest (resnet + facemesh,
    stretched short clips, feature jitter)."""
    tmp = tmp_path_factory.mktemp("still_video")
    photos, videos = [], []
    for cls in sorted(p for p in SAMPLE.iterdir() if p.is_dir()):
        files = sorted(cls.glob("*.jpg"))
        photos += [(f, cls.name) for f in files[:PER_CLASS]]
        for f in files[PER_CLASS:PER_CLASS + 1]:  # one labelled video per class, from a photo not used above
            v = encode_still_video(_rgb(f), tmp / f"{f.stem}.mp4", frames=VIDEO_FRAMES, jitter=Jitter(), seed=7)
            videos.append((v, cls.name))
    labels = tmp / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "label"])
        w.writerows((str(p), lab) for p, lab in photos + videos)
    crops = tmp / "crops"
    proc = subprocess.run([sys.executable, "-m", "fer_zoo", "preprocess", *[str(p) for p, _ in photos + videos],
                           "--out", str(crops), "--labels", str(labels)], cwd=REPO, capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", **os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode in (0, 4), proc.stderr[-3000:]  # 4: a photo without a face, left out and reported
    with open(crops / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    video_ids = {v.stem for v, _ in videos}
    # MediaPipe's short-range detector finds no face in 3 of the 48 sample photos (Avinash_28, Avinash_29,
    # Dwarakish_160): preprocess reports them and leaves them out; every video keeps its face
    assert {Path(r["path"]).name for r in rows} >= video_ids and len(rows) >= len(photos + videos) - 4
    manifests = {}
    for name, keep in (("photos", [r for r in rows if Path(r["path"]).name not in video_ids]), ("mixed", rows)):
        manifests[name] = crops / f"{name}.csv"  # beside preprocess.json: predict-video takes its crop settings
        with open(manifests[name], "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["path", "label"], extrasaction="ignore")
            w.writeheader()
            w.writerows(keep)
    store = tmp / "features"
    _cli(["extract", "--config", "configs/extract.yaml", "--source.class_path", "datamodules.sources.ManifestSource",
          "--source.init_args.csv", str(manifests["mixed"]), "--source.init_args.vocabulary", "faces8",
          "--store_root", str(store), "--only", "resnet", "facemesh", "--num_workers", "0"])
    out = {"tmp": tmp, "videos": [v for v, _ in videos]}
    for name, csv_path in manifests.items():
        _cli(["fit", "--config", "configs/resnet_facemesh.yaml", "--config", "configs/demo.yaml",
              "--data.source.class_path", "datamodules.sources.ManifestSource", "--data.source.init_args.csv",
              str(csv_path), "--data.source.init_args.vocabulary", "faces8", "--data.store_root", str(store),
              "--data.frame_jitter", "0.1", "--trainer.max_epochs", "25", "--runs_dir", str(tmp / "runs"),
              "--run_name", name, "--wandb", "false", "--trainer.enable_progress_bar", "false",
              "--data.test_fraction", "0.25"])
        out[name] = tmp / "runs" / name
    return out


@pytest.mark.slow
def test_a_mixed_manifest_presents_photos_and_videos_alike(runs: dict) -> None:
    """Photos (1-frame clips) and videos both fill every slot with valid frames; a photo's slots are copies."""
    from fer_zoo.video.consistency import load_runs, run_datamodule

    (run,), _ = load_runs({"mixed": runs["mixed"]})
    dm = run_datamodule(run)
    assert dm.short_clips == "stretch" and run.info.short_clips == "stretch"
    lengths = {len(dm.stores["resnet"].clip(c)[0]) for c in dm.labels}
    assert lengths == {1, VIDEO_FRAMES}
    seen = set()
    for split in ("train", "test"):
        ds = dm.dataset(split)
        for i, cid in enumerate(ds.clip_ids):
            n = len(dm.stores["resnet"].clip(cid)[0])
            item = ds[i]
            x, v = item["features"]["resnet"], item["valid"]["resnet"]
            assert v.shape == (16,) and v.all()
            distinct = len({tuple(r) for r in x[:, :8].tolist()})
            if split == "test":  # evaluation: a photo is 16 identical slots, a video shows each frame twice
                assert distinct == (1 if n == 1 else VIDEO_FRAMES)
            else:  # training adds per-frame jitter: every slot differs
                assert distinct == 16
            seen.add(n)
    assert seen == {1, VIDEO_FRAMES}




@pytest.mark.slow
@pytest.mark.parametrize("name", ["photos", "mixed"])
def test_a_still_video_gets_the_prediction_of_its_photo(runs: dict, name: str) -> None:
    """Held-out photos written as 16-frame videos and run through the predict-video path agree with the photo's own
    prediction (the benchmark's >= 95 % still, >= 90 % jittered, on a small sample: at most one miss each). The
    mixed manifest holds 8 jittered videos among the photos: before their std columns were floored at the mean
    columns' scale (``probe.floor_std_scales``) the probe told them apart by those and sent every jittered video
    of a test photo to one class (2 of 8 agreed). The photos run failed this sample (and the full figure, 94.1 +-
    1.0 %) until the checkpoint policy weighed the model's start, its linear probe, against the trained epochs
    (``fer_zoo.training.selection``): the full benchmark's 4 seeds all test the start, 96.8 % still, 93.4 % jittered."""
    from fer_zoo.video.consistency import load_runs, original_media, photo_predictions, score_videos

    loaded, extractors = load_runs({name: runs[name]})
    assert loaded[0].info.training_crops == "preprocess" and not loaded[0].info.crop_mismatch
    ids, crops, _, probs = photo_predictions(loaded[0], "test", limit=8)
    paths = original_media(crops)  # videos of the photos themselves: predict-video crops them again
    assert len(ids) >= 6 and all(Path(p).suffix == ".jpg" for p in paths)
    tmp = runs["tmp"] / f"videos_{name}"
    tmp.mkdir()
    still = [encode_still_video(_rgb(Path(p)), tmp / f"{i}_s.mp4") for i, p in enumerate(paths)]
    jit = [encode_still_video(_rgb(Path(p)), tmp / f"{i}_j.mp4", jitter=Jitter(), seed=i) for i, p in enumerate(paths)]
    for videos, misses in ((still, 1), (jit, 1)):
        scored = score_videos(videos, loaded, extractors, window=16)
        assert all(len(s.windows) == 1 for s in scored)  # a window without a face has no prediction: a miss
        top = [s.top(name)[0] for s in scored]
        agree = sum(t == int(p.argmax()) for t, p in zip(top, probs))
        assert agree >= len(ids) - misses, (name, top, probs.argmax(1).tolist())


@pytest.mark.slow
def test_the_agreement_breakdown_rescores_exactly_what_predict_video_scored(runs: dict, tmp_path: Path) -> None:
    """The breakdown's full-model agreement is the scored one (same window inputs), the clip-statistics head is
    measured on its own, and the codec moves the frame embedding while the photo's own inputs are left alone."""
    from fer_zoo.video.consistency import (
        agreement_breakdown,
        load_runs,
        original_media,
        photo_predictions,
        score_videos,
    )

    loaded, extractors = load_runs({"photos": runs["photos"]})
    ids, crops, _, probs = photo_predictions(loaded[0], "test", limit=6)
    videos = [encode_still_video(_rgb(Path(p)), tmp_path / f"{i}.mp4") for i, p in enumerate(original_media(crops))]
    with pytest.raises(ValueError, match="keep_features"):
        agreement_breakdown(loaded[0], ids, score_videos(videos[:1], loaded, extractors, window=16)[:1] * len(ids))
    scored = score_videos(videos, loaded, extractors, window=16, keep_features=True)
    with_face = [(s.top("photos")[0], int(p.argmax())) for s, p in zip(scored, probs) if s.top("photos")[0] is not None]
    b = agreement_breakdown(loaded[0], ids, scored)
    assert b.photos == len(with_face) >= 5
    assert b.full == pytest.approx(np.mean([t == p for t, p in with_face]))
    assert b.stats_head is not None and 0.0 <= b.stats_head <= 1.0
    assert set(b.held_at_photo) == set(b.shift) == {"resnet", "facemesh"}
    assert 0.0 < b.shift["resnet"][0] <= b.shift["resnet"][1] < 0.5  # H.264 moves the embedding, a little
    assert 0.0 < b.shift["facemesh"][0] < 0.05  # landmarks, normalised to the face box, barely move
