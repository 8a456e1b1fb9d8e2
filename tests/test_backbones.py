"""timm and open_clip encoders: the hub-cache route, offline errors, timm's data config, zero-shot plumbing, random-
weight stores, the zero-shot baseline, and a light core. Networks are small ones created here (``tiny_backbones``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.frames import read_frames
from extractors import get_extractor
from extractors.weights import WeightsUnavailableError

REPO = Path(__file__).resolve().parents[1]
REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def frames(face_videos: Path) -> np.ndarray:
    return read_frames(face_videos / "single_face.mp4", max_frames=3).rgb


def put_in_hf_cache(cache: Path, repo: str, filename: str, src: Path) -> Path:
    """Lay ``src`` out as huggingface_hub's cache does after a download of ``repo``/``filename`` (refs/main)."""
    d = cache / ("models--" + repo.replace("/", "--"))
    (d / "refs").mkdir(parents=True, exist_ok=True)
    (d / "refs" / "main").write_text(REV)
    (d / "snapshots" / REV).mkdir(parents=True, exist_ok=True)
    dest = d / "snapshots" / REV / filename
    shutil.copy(src, dest)
    return dest


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Every TCP connection attempt fails at once (and is recorded), as on an offline compute node."""
    attempts: list[tuple] = []

    def refuse(address: tuple, *args: object, **kwargs: object) -> socket.socket:
        attempts.append(address)
        raise OSError("network unreachable (simulated)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


# --------------------------------------------------------------------------------------------------- timm weights


def test_timm_pretrained_true_loads_the_cached_hub_file_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list, frames: np.ndarray
) -> None:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    src = tmp_path / "vit_tiny.safetensors"
    save_file(timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict(), src)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    cached = put_in_hf_cache(tmp_path / "hub", "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k", "model.safetensors",
                             src)
    hub = get_extractor("timm", model="vit_tiny_patch16_224", pretrained=True, precision="fp32")
    assert not no_network, f"a cached file needs no network, but connections were tried: {no_network}"
    assert hub.weights_file == str(cached) and "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k" in hub.weights_source
    assert hub.describe()["random_weights"] is False and hub.dim == 192
    # The same file given as a path: the very same network and features (one loading route).
    local = get_extractor("timm", model="vit_tiny_patch16_224", pretrained=str(src), precision="fp32")
    a, b = hub.extract(frames)[0], local.extract(frames)[0]
    np.testing.assert_array_equal(a, b)
    rand = get_extractor("timm", model="vit_tiny_patch16_224", pretrained=False, precision="fp32")
    assert not np.allclose(rand.extract(frames)[0], a, atol=1e-3), "the file's weights were not loaded"
    assert rand.random_weights and "random init" in rand.weights_source


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "unreachable"])
def test_missing_weights_offline_fail_fast_naming_file_and_command(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("FER_ZOO_OFFLINE", raising=False)
    import timm  # noqa: F401  (imported before the clock starts: importing it takes seconds on a loaded machine)

    t0 = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        get_extractor("timm", model="convnext_atto", pretrained=True)
    elapsed = time.monotonic() - t0
    msg = str(info.value)
    assert "timm/convnext_atto.d2_in1k" in msg and "model.safetensors" in msg, msg
    assert str(tmp_path / "empty" / "models--timm--convnext_atto.d2_in1k") in msg, msg
    assert "python -m fer_zoo fetch-weights" in msg, msg
    # huggingface_hub alone retries ~24 s per file (two candidate files here) before failing
    assert elapsed < 10.0, f"took {elapsed:.1f} s: the library's retries were not cut short"
    if how == "HF_HUB_OFFLINE":
        assert not no_network and "HF_HUB_OFFLINE" in msg
    else:
        assert no_network and "cannot reach huggingface.co:443" in msg, (no_network, msg)


def test_open_clip_tag_missing_offline_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match=r"(?s)timm/vit_base_patch16_clip_224\.openai.*fetch-weights"):
        get_extractor("clip", model="ViT-B-16", pretrained="openai")
    with pytest.raises(ValueError, match="no pretrained tag 'laion9b'"):
        get_extractor("clip", model="ViT-B-16", pretrained="laion9b")


def test_timm_applies_and_records_its_data_config(tiny_backbones: dict, frames: np.ndarray) -> None:
    """Features equal timm's own eval pipeline (PIL, create_transform): the same pixels (tests/test_frame_geometry.py),
    the same normalisation, up to float summation order (channels-last); the meta records the data config."""
    import timm
    from PIL import Image
    from safetensors.torch import load_file
    from timm.data import create_transform, resolve_data_config

    ext = get_extractor("timm", model="convnext_atto", pretrained=str(tiny_backbones["convnext_atto"]),
                        precision="fp32")
    meta = ext.describe()
    assert meta["data_config"] == {"input_size": [3, 224, 224], "interpolation": "bicubic", "crop_pct": 0.875,
                                   "crop_mode": "center", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert "Resize(size=256" in meta["preprocessing"] and "CenterCrop(size=(224, 224))" in meta["preprocessing"]
    ref_net = timm.create_model("convnext_atto", num_classes=0).eval()
    ref_net.load_state_dict({k: v for k, v in load_file(tiny_backbones["convnext_atto"]).items()
                             if not k.startswith("head.fc")})
    t = create_transform(**resolve_data_config(model=ref_net))
    with torch.no_grad():
        ref = ref_net(torch.stack([t(Image.fromarray(f)) for f in frames])).numpy()
    ours = ext.extract(frames)[0]
    assert ours.shape == ref.shape == (3, 320)
    rel = np.abs(ours - ref).max() / np.abs(ref).max()
    assert rel < 1e-5, f"max deviation {rel:.2e} of the largest feature from timm's own PIL pipeline"


def test_model_kwargs_img_size_resizes_the_input(frames: np.ndarray) -> None:
    """A ViT built at another resolution (DINOv2 at 224 instead of 518) gets its input at that size."""
    ext = get_extractor("timm", model="vit_tiny_patch16_224", pretrained=False, model_kwargs={"img_size": 112})
    assert ext.describe()["data_config"]["input_size"] == [3, 112, 112]
    assert ext.extract(frames)[0].shape == (3, 192)


def test_bad_timm_and_clip_config_values_name_the_key(tiny_backbones: dict) -> None:
    with pytest.raises(ValueError, match="unknown timm model 'convnext_nope'"):
        get_extractor("timm", model="convnext_nope", pretrained=False)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        get_extractor("timm", model="convnext_atto",
                      pretrained=str(tiny_backbones["clip"].parent / "missing.safetensors"))
    with pytest.raises(ValueError, match="does not fit timm model convnext_femto"):
        get_extractor("timm", model="convnext_femto", pretrained=str(tiny_backbones["convnext_atto"]))
    with pytest.raises(TypeError, match="img_size"):
        get_extractor("timm", model="convnext_atto", pretrained=False, img_size=160)
    with pytest.raises(ValueError, match="needs class_names"):
        get_extractor("clip_zeroshot", model="fz-tiny-clip", pretrained="none",
                      model_config=str(tiny_backbones["clip_config"]))
    with pytest.raises(ValueError, match="template"):
        get_extractor("clip_zeroshot", model="fz-tiny-clip", pretrained="none", class_names=["anger"],
                      templates=["a face"], model_config=str(tiny_backbones["clip_config"]))


# ------------------------------------------------------------------------------------------------------ zero-shot


def _zeroshot(tiny: dict, classes: list[str], **kw: object):  # noqa: ANN202
    return get_extractor("clip_zeroshot", model="fz-tiny-clip", pretrained=str(tiny["clip"]),
                         model_config=str(tiny["clip_config"]), class_names=classes, precision="fp32", **kw)


def test_zero_shot_probabilities_follow_the_class_names(tiny_backbones: dict, frames: np.ndarray) -> None:
    """class names -> prompts -> text embeddings (template ensemble) -> per-frame softmax, checked against open_clip
    computed by hand; a permuted class list permutes the columns the same way."""
    import open_clip
    from PIL import Image

    from extractors.clip_frames import DEFAULT_TEMPLATES

    classes = ["anger", "happiness", "neutral", "surprise"]
    ext = _zeroshot(tiny_backbones, classes)
    probs, valid = ext.extract(frames)
    assert probs.shape == (3, 4) and valid.all() and ext.schema == [f"p_{c}" for c in classes]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    meta = ext.describe()
    assert meta["class_names"] == classes
    assert meta["prompts"][0][0] == "a photo of an angry face."
    assert meta["prompts"][3][0] == "a photo of a surprised face."

    # By hand, with open_clip's own model, tokenizer and PIL preprocessing.
    model, _, pre = open_clip.create_model_and_transforms("fz-tiny-clip", pretrained=str(tiny_backbones["clip"]))
    tok = open_clip.get_tokenizer("fz-tiny-clip")
    words = {"anger": "angry", "happiness": "happy", "neutral": "neutral", "surprise": "surprised"}
    with torch.no_grad():
        text = []
        for c in classes:
            prompts = [t.format(words[c]).replace("a angry", "an angry") for t in DEFAULT_TEMPLATES]
            e = torch.nn.functional.normalize(model.encode_text(tok(prompts)), dim=-1).mean(0)
            text.append(torch.nn.functional.normalize(e, dim=-1))
        img = model.encode_image(torch.stack([pre(Image.fromarray(f)) for f in frames]), normalize=True)
        expected = torch.softmax(model.logit_scale.exp() * img @ torch.stack(text).T, dim=-1).numpy()
    np.testing.assert_allclose(probs, expected, atol=0.02)

    order = [2, 0, 3, 1]
    permuted = _zeroshot(tiny_backbones, [classes[i] for i in order]).extract(frames)[0]
    np.testing.assert_allclose(permuted, probs[:, order], atol=1e-5)


def test_the_extraction_run_passes_the_vocabulary_in_order(tiny_backbones: dict) -> None:
    from datamodules.labels import get_vocabulary
    from fer_zoo.extraction.run import ExtractorSpec, with_class_names

    class Source:
        name, vocabulary = "dfew", get_vocabulary("dfew")

    spec = with_class_names(ExtractorSpec("clip_zeroshot", {"model": "fz-tiny-clip"}), Source())
    assert spec.config["class_names"] == ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
    same = ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]  # synonyms, same order: accepted
    assert with_class_names(ExtractorSpec("clip_zeroshot", {"class_names": same}), Source()).config["class_names"] \
        == same
    with pytest.raises(ValueError, match="order included"):
        with_class_names(ExtractorSpec("clip_zeroshot", {"class_names": sorted(same)}), Source())
    plain = ExtractorSpec("clip", {"model": "fz-tiny-clip"})
    assert with_class_names(plain, Source()) is plain  # image embeddings do not depend on the classes


# ------------------------------------------------------------------------- stores: zero-shot, random weights, fit


@pytest.fixture(scope="module")
def zeroshot_store(tiny_backbones: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample (167 real labelled photos, faces8) through the tiny CLIP's zero-shot extractor."""
    from datamodules.sources import ImageFolderSource
    from fer_zoo.extraction.run import ExtractorSpec, extract_modality

    root = tmp_path_factory.mktemp("zs_stores")
    source = ImageFolderSource(root=str(REPO / "data" / "sample" / "images"), vocabulary="faces8")
    spec = ExtractorSpec("clip_zeroshot", {"model": "fz-tiny-clip", "pretrained": str(tiny_backbones["clip"]),
                                           "model_config": str(tiny_backbones["clip_config"])})
    s = extract_modality(source, source.clips(), root, "clipzs", spec, num_workers=0, log=lambda *a: None,
                         trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False})
    assert s.ok == len(source.clips()) and not s.failed
    return root


def test_zero_shot_store_records_the_vocabulary(zeroshot_store: Path) -> None:
    from datamodules.feature_store import FeatureStore, find_store
    from datamodules.labels import get_vocabulary

    store = FeatureStore(find_store(zeroshot_store, "clipzs"))
    classes = list(get_vocabulary("faces8").classes)
    assert store.meta["class_names"] == classes and store.meta["config"]["class_names"] == classes
    assert store.meta["schema"] == [f"p_{c}" for c in classes] and store.meta["random_weights"] is False
    feats, valid = store.clip(store.index.clip_id.iloc[0])
    assert feats.shape == (1, 8) and valid.all()
    assert abs(float(feats.astype(np.float64).sum()) - 1.0) < 5e-3  # float16 storage


def test_zero_shot_baseline_in_the_ablation_summary(zeroshot_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """evaluate() over two seeded splits equals a by-hand computation on each split's test clips; the summary gains
    one unranked row with those numbers."""
    from datamodules.feature_datamodule import FeatureDataModule
    from datamodules.sources import ImageFolderSource
    from fer_zoo.ablation import report, zero_shot

    monkeypatch.chdir(REPO)
    zs = zero_shot.evaluate("clipzs", [f"--data.store_root={zeroshot_store}"], [None], [1, 2],
                            ["--seed_everything", "--data.seed"])
    assert zs["n"] == 2 and len(zs["runs"]) == 2
    for run in zs["runs"]:
        dm = FeatureDataModule(ImageFolderSource(root="data/sample/images", vocabulary="faces8"), str(zeroshot_store),
                               ["clipzs"], seed=run["seed"], num_workers=0)
        store, ids = dm.stores["clipzs"], dm.split_ids["test"]
        pred = np.array([store.clip(c)[0].astype(np.float64).mean(0).argmax() for c in ids])
        y = np.array([dm.labels[c] for c in ids])
        recalls = [np.mean(pred[y == k] == k) for k in range(8) if (y == k).any()]
        assert run["n_test"] == len(ids) and run["no_valid_frame"] == 0
        assert run["war"] == pytest.approx(np.mean(pred == y), abs=1e-6)
        assert run["uar"] == pytest.approx(np.mean(recalls), abs=1e-6)
    assert zs["uar_mean"] == pytest.approx(np.mean([r["uar"] for r in zs["runs"]]))

    table = report.summary_table(__import__("pandas").DataFrame(
        [{"modalities": "resnet", "status": "done", "uar": 0.3, "war": 0.4}]))
    md = report.markdown(table, {"name": "t", "dataset": "sample", "folds": [0], "seeds": [1, 2], "base": [],
                                 "overrides": []})
    text = zero_shot.add_to_markdown(md, zs)
    row = next(ln for ln in text.splitlines() if "zero-shot clipzs (no training)" in ln)
    assert row.count("|") == next(ln for ln in text.splitlines() if "UAR %" in ln).count("|")
    assert f"{100 * zs['uar_mean']:.1f} ± {100 * zs['uar_std']:.1f}" in row
    assert zero_shot.add_to_table(table, zs)["modalities"].iloc[-1] == "zero-shot clipzs (no training)"


def test_ablate_writes_the_zero_shot_row(zeroshot_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """grid._zero_shot (what `ablate --zero_shot=...` calls) + write_summary: the row lands in summary.md and .csv;
    a missing store is reported in the summary instead of losing it."""
    import pandas as pd
    from jsonargparse import Namespace

    from fer_zoo.ablation import grid, report

    monkeypatch.chdir(REPO)
    cfg = Namespace(base=[], overrides=[f"--data.store_root={zeroshot_store}"], zero_shot="clipzs", seeds=[3],
                    seed_args=["--seed_everything", "--data.seed"])
    zs = grid._zero_shot(cfg, [None])
    assert zs["n"] == 1 and 0.0 <= zs["uar_mean"] <= 1.0
    run = tmp_path / "cell"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"metrics": {"test/uar": 0.3, "test/war": 0.4},
                                                  "class_names": ["a", "b"]}))
    rec = {"cell": "resnet-fold0-seed3", "modalities": "resnet", "n_modalities": 1, "fold": 0, "seed": 3,
           "status": "done", "run_dir": str(run)}
    meta = {"name": "t", "dataset": "sample", "folds": [0], "seeds": [3], "base": [], "overrides": [],
            "modality_sets": ["resnet"], "wandb": False, "wandb_project": "x", "zero_shot": zs}
    out = report.write_summary([rec], tmp_path / "abl", meta)
    assert "zero-shot clipzs (no training)" in out.md.read_text()
    csv = pd.read_csv(out.csv)
    row = csv[csv["modalities"] == "zero-shot clipzs (no training)"].iloc[0]
    assert row["uar_mean"] == pytest.approx(zs["uar_mean"], abs=1e-6) and row["n"] == 1
    assert csv.iloc[0]["modalities"] == "resnet"  # the trained set keeps its rank; the baseline is appended

    missing = grid._zero_shot(Namespace(**{**vars(cfg), "zero_shot": "nostore"}), [None])
    assert "error" in missing and "nostore" in missing["error"]
    text = report.write_summary([rec], tmp_path / "abl2", {**meta, "zero_shot": missing}).md.read_text()
    assert "Zero-shot baseline `nostore`: not computed" in text


def test_zero_shot_refuses_a_store_of_another_class_order() -> None:
    from fer_zoo.ablation.zero_shot import check_class_order

    with pytest.raises(ValueError, match="order included"):
        check_class_order({"class_names": ["happiness", "anger"]}, ["anger", "happiness"], "s")


def test_a_random_weights_store_is_labelled_and_refused_by_fit(tmp_path: Path) -> None:
    from datamodules.feature_datamodule import FeatureDataModule
    from datamodules.feature_store import FeatureStore, find_store
    from datamodules.sources import ImageFolderSource
    from fer_zoo.extraction.run import ExtractorSpec, extract_modality

    photos = tmp_path / "photos"
    for cls in ("anger", "happiness"):
        (photos / cls).mkdir(parents=True)
        for p in sorted((REPO / "data" / "sample" / "images" / cls).glob("*.jpg"))[:6]:
            (photos / cls / p.name).symlink_to(p)
    source = ImageFolderSource(root=str(photos), vocabulary="faces8")
    spec = ExtractorSpec("timm", {"model": "convnext_atto", "pretrained": False})
    s = extract_modality(source, source.clips(), tmp_path / "stores", "cnx", spec, num_workers=0,
                         log=lambda *a: None, trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False})
    assert "-RANDOM-" in s.path.name and s.path.name.startswith("timm-RANDOM-")
    meta = FeatureStore(find_store(tmp_path / "stores", "cnx")).meta
    assert meta["random_weights"] is True and "random init" in meta["weights_source"]
    assert meta["data_config"]["input_size"] == [3, 224, 224] and meta["dim"] == 320
    kw = dict(source=source, store_root=str(tmp_path / "stores"), modalities=["cnx"], num_workers=0)
    with pytest.raises(ValueError, match=r"(?s)randomly initialised.*allow_random_weights"):
        FeatureDataModule(**kw)
    assert FeatureDataModule(**kw, allow_random_weights=True).input_dims == {"cnx": 320}


# ------------------------------------------------------------------------------------------------- light core


def test_the_store_and_the_model_import_neither_timm_nor_open_clip() -> None:
    """(transformers is left out: ``import lightning`` pulls it in through torchmetrics' BERTScore module.)"""
    code = ("import sys, datamodules.feature_store, datamodules.feature_datamodule, fer_zoo.training.model, "
            "fer_zoo.training.lit_module, extractors; names = extractors.list_extractors(); "
            "assert {'timm', 'clip', 'clip_zeroshot'} <= set(names), names; "
            "bad = [m for m in ('timm', 'open_clip') if m in sys.modules]; "
            "assert not bad, bad")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]


def test_documented_backbones_config_parses_and_lists_its_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    from fer_zoo.extraction.command import build_parser
    from fer_zoo.extraction.fetch_weights import needed_hub_files

    monkeypatch.chdir(REPO)
    cfg = build_parser().parse_args(["--config", "configs/extract/backbones.yaml"])
    assert set(cfg.modalities) == {"clip", "clip_zs", "dinov2"}
    files = needed_hub_files(["configs/extract/backbones.yaml"])  # clip and clip_zs share one checkpoint
    assert [w for w, _ in files] == ["open_clip ViT-B-16 openai", "timm vit_small_patch14_dinov2.lvd142m"]


def test_fetch_weights_lists_the_hub_files_of_a_config(tmp_path: Path) -> None:
    from fer_zoo.extraction.fetch_weights import needed_hub_files

    cfg = tmp_path / "extract.yaml"
    cfg.write_text(json.dumps({"modalities": {
        "dino": {"name": "timm", "config": {"model": "vit_small_patch14_dinov2.lvd142m"}},
        "cnx": {"name": "timm", "config": {"model": "convnext_atto", "pretrained": "/data/cnx.safetensors"}},
        "clip": {"name": "clip", "config": {"model": "ViT-B-16", "pretrained": "openai"}},
        "zs": {"name": "clip_zeroshot", "config": {"model": "ViT-B-16"}},
    }}))
    files = needed_hub_files([str(cfg)])
    assert [w for w, _ in files] == ["timm vit_small_patch14_dinov2.lvd142m", "open_clip ViT-B-16 openai"]
    dino, clip = files[0][1], files[1][1]
    assert dino.repo_id == "timm/vit_small_patch14_dinov2.lvd142m" and dino.filenames[0] == "model.safetensors"
    assert clip.repo_id == "timm/vit_base_patch16_clip_224.openai"
    assert clip.filenames == ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
