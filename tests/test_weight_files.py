"""Weight files that load nothing, weight files cut short, and extractor build errors (issue 28, items 1-2).

Every frame encoder that reads a weights file must refuse one that does not fit (never a half-random network
recorded as pretrained), name a file cut short as incomplete, and accept a wrapper-prefixed state dict only when it
then fits exactly, saying so in ``weights_source``. The files are built here from ``tiny_backbones`` and tiny
torchvision / wav2vec2 / HDF5 files.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from extractors import get_extractor

REPO = Path(__file__).resolve().parents[1]


def cut(src: Path, dst: Path, keep: float = 0.5) -> Path:
    """``dst``: the first ``keep`` of ``src``'s bytes (an interrupted copy or download)."""
    data = src.read_bytes()
    dst.write_bytes(data[:int(len(data) * keep)])
    return dst


def one_line_error(excinfo: pytest.ExceptionInfo, file: Path, first: str, *phrases: str) -> str:
    """The error is one line saying ``<file>: <first>...`` (the file named as what is wrong), then ``phrases``."""
    msg = str(excinfo.value)
    assert "\n" not in msg, f"not one line:\n{msg}"
    assert f"{file}: {first}" in msg, f"{file}: {first!r} not in: {msg}"
    for p in phrases:
        assert p in msg, f"{p!r} not in: {msg}"
    return msg


def timm_state(**kw: object) -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(0)
    return timm.create_model("convnext_atto", pretrained=False, **kw).state_dict()


def save(sd: dict[str, torch.Tensor], path: Path) -> Path:
    from safetensors.torch import save_file

    save_file(sd, str(path))
    return path


def clip_kwargs(tiny: dict) -> dict:
    return {"model": "fz-tiny-clip", "model_config": str(tiny["clip_config"]), "precision": "fp32"}


# ------------------------------------------------------------------------------------ files that do not fit


@pytest.mark.parametrize("flaw", ["an extra tensor", "a missing tensor"])
def test_timm_file_under_a_prefix_that_stripping_does_not_fix_is_refused(flaw: str, tmp_path: Path) -> None:
    """Before: timm loaded 0 of its tensors (all 'unexpected'), kept the random init and the store recorded the
    file as its weights."""
    sd = {f"model.{k}": v for k, v in timm_state().items()}
    if flaw == "an extra tensor":
        sd["model.criterion.weight"] = torch.ones(7)
        key = "criterion.weight"
    else:
        key = "stages.3.blocks.1.mlp.fc2.weight"
        del sd[f"model.{key}"]
    file = save(sd, tmp_path / "lightning_export.safetensors")
    with pytest.raises(ValueError) as info:
        get_extractor("timm", model="convnext_atto", pretrained=str(file), precision="fp32")
    one_line_error(info, file, "does not fit timm model convnext_atto", key, "prefix 'model.'")


@pytest.mark.parametrize("encoder", ["timm", "clip"])
def test_another_architectures_file_is_refused_in_one_line(encoder: str, tiny_backbones: dict,
                                                           tmp_path: Path) -> None:
    """timm: a ResNet file into a ConvNeXt raised timm's KeyError 'fc.weight' (no file named); open_clip: a
    multi-line RuntimeError listing every key."""
    import timm

    torch.manual_seed(0)
    other = save(timm.create_model("resnet10t", pretrained=False).state_dict(), tmp_path / "resnet10t.safetensors")
    cfg = ({"model": "convnext_atto", "precision": "fp32"} if encoder == "timm" else clip_kwargs(tiny_backbones))
    with pytest.raises(ValueError) as info:
        get_extractor(encoder, pretrained=str(other), **cfg)
    what = "timm model convnext_atto" if encoder == "timm" else "open_clip model fz-tiny-clip"
    msg = one_line_error(info, other, f"does not fit {what}", "expected tensors missing (first: ")
    assert ("stem.0.weight" if encoder == "timm" else "visual.") in msg, msg


# ----------------------------------------------------------------------------------------- files cut short


def _truncated(kind: str, tiny: dict, tmp: Path) -> tuple[str, dict, Path]:
    """(extractor, config, the file cut short) for each frame encoder that reads a weights file."""
    if kind == "timm safetensors":
        file = cut(tiny["convnext_atto"], tmp / "convnext_atto.safetensors")
        return "timm", {"model": "convnext_atto", "pretrained": str(file), "precision": "fp32"}, file
    if kind == "timm safetensors header":
        file = cut(tiny["convnext_atto"], tmp / "convnext_atto.safetensors", keep=0.00001)
        return "timm", {"model": "convnext_atto", "pretrained": str(file), "precision": "fp32"}, file
    if kind == "clip safetensors":
        whole = save(torch.load(tiny["clip"], weights_only=True), tmp / "whole.safetensors")
        file = cut(whole, tmp / "fz-tiny-clip.safetensors")
        return "clip", {**clip_kwargs(tiny), "pretrained": str(file)}, file
    if kind == "clip pt":
        file = cut(tiny["clip"], tmp / "fz-tiny-clip.pt", keep=0.8)
        return "clip", {**clip_kwargs(tiny), "pretrained": str(file)}, file
    if kind == "torchvision pth":
        import torchvision.models as tvm

        torch.save(tvm.resnet18(weights=None).state_dict(), tmp / "whole.pth")
        file = cut(tmp / "whole.pth", tmp / "resnet18_fer.pth")
        return "resnet18", {"weights": str(file)}, file
    if kind == "fer2013 hdf5":
        import h5py

        with h5py.File(tmp / "whole.hdf5", "w") as f:
            f.create_dataset("model_weights/conv2d_1/conv2d_1/kernel:0", data=np.ones((3, 3, 1, 8), np.float32))
            f.create_dataset("model_weights/big/big/kernel:0", data=np.ones((256, 256), np.float32))
        file = cut(tmp / "whole.hdf5", tmp / "emotion_model.hdf5")
        return "fer2013", {"weights": str(file)}, file
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["timm safetensors", "timm safetensors header", "clip safetensors", "clip pt",
                                  "torchvision pth", "fer2013 hdf5"])
def test_a_file_cut_short_is_named_as_incomplete(kind: str, tiny_backbones: dict, tmp_path: Path) -> None:
    """Before: safetensors' SafetensorError / torch's `OSError: [Errno 22] Invalid argument` (a 48-line traceback
    naming no file), or for HDF5 'not a readable HDF5 file'."""
    name, cfg, file = _truncated(kind, tiny_backbones, tmp_path)
    with pytest.raises(ValueError) as info:
        get_extractor(name, **cfg)
    one_line_error(info, file, "incomplete")


# ----------------------------------------------------------------------- a prefix that hides an exact fit


def _same_tensors(net: torch.nn.Module, sd: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> None:
    """Every tensor of ``net`` is the file's tensor of the same name: nothing was left at its random init."""
    own = net.state_dict()
    keys = [k for k in sd if not k.startswith(skip)]
    assert keys and all(k in own for k in keys), sorted(set(keys) - set(own))[:5]
    assert all(torch.equal(own[k].float(), sd[k].float()) for k in keys)


@pytest.mark.parametrize("encoder", ["timm", "clip", "torchvision"])
def test_a_prefixed_but_otherwise_exact_file_loads_every_tensor_and_says_so(
        encoder: str, tiny_backbones: dict, tmp_path: Path) -> None:
    """Before: timm loaded nothing from it; open_clip and torchvision stripped the prefix without a word."""
    if encoder == "timm":
        sd, prefix, cfg, skip = timm_state(), "model.", {"model": "convnext_atto", "precision": "fp32"}, ("head.fc",)
        plain = save(sd, tmp_path / "plain.safetensors")
        wrapped = save({prefix + k: v for k, v in sd.items()}, tmp_path / "prefixed.safetensors")
        key, name = "pretrained", "timm"
    elif encoder == "clip":
        sd, prefix, cfg, skip = torch.load(tiny_backbones["clip"], weights_only=True), "module.", \
            clip_kwargs(tiny_backbones), ()
        plain = tiny_backbones["clip"]
        wrapped = tmp_path / "open_clip_ddp.pt"  # open_clip's own DDP training checkpoint layout
        torch.save({"epoch": 2, "state_dict": {prefix + k: v for k, v in sd.items()}}, wrapped)
        key, name = "pretrained", "clip"
    else:
        import torchvision.models as tvm

        torch.manual_seed(0)
        sd, prefix, cfg, skip = tvm.resnet18(weights=None).state_dict(), "model.", {"precision": "fp32"}, ()
        plain = tmp_path / "plain.pt"
        torch.save(sd, plain)
        wrapped = tmp_path / "lightning.ckpt"
        torch.save({"epoch": 3, "state_dict": {prefix + k: v for k, v in sd.items()}}, wrapped)
        key, name = "weights", "resnet18"
    ext = get_extractor(name, **{key: str(wrapped)}, **cfg)
    source = ext.describe()["weights_source"]
    assert str(wrapped.resolve()) in source and f"prefix {prefix!r}" in source, source
    assert "matched the network exactly" in source, source
    assert not ext.random_weights
    ref = get_extractor(name, **{key: str(plain)}, **cfg)
    assert "carried the prefix" not in ref.describe()["weights_source"]
    if encoder == "timm":
        _same_tensors(ext.model, sd, skip)
    elif encoder == "clip":
        _same_tensors(ext.model.visual, {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")})
    torch.manual_seed(3)
    x = torch.rand(2, 3, *((32, 32) if encoder == "clip" else (64, 64))).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        a, b = [e.model.embed(x) if encoder == "clip" else e.model(x) for e in (ext, ref)]
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------- speech folders


def _tiny_speech(folder: Path) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(cfg).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, sampling_rate=16000).save_pretrained(folder)
    return folder / "model.safetensors"


@pytest.mark.parametrize("flaw", ["cut short", "a layer missing"])
def test_a_speech_folder_whose_weights_do_not_load_whole_is_refused(flaw: str, tmp_path: Path) -> None:
    """Before: transformers filled missing tensors with random values (a log table, no error), and a cut
    safetensors file was its SafetensorError traceback."""
    from safetensors.torch import load_file

    file = _tiny_speech(tmp_path / "wav2vec2_fer")
    if flaw == "cut short":
        cut(file, file, keep=0.6)
        phrases = ("incomplete",)
    else:
        sd = {k: v for k, v in load_file(file).items() if not k.startswith("encoder.layers.1.")}
        save(sd, file)
        phrases = ("does not fit Wav2Vec2Model", "encoder.layers.1.")
    with pytest.raises(ValueError) as info:
        get_extractor("speech", checkpoint=str(file.parent), precision="fp32")
    one_line_error(info, file, *phrases)


# ---------------------------------------------------------------------------------- the commands around them


def _extract_config(tmp_path: Path, modalities: dict) -> Path:
    """A two-photo manifest of the bundled sample and ``modalities``."""
    photos = sorted((REPO / "data" / "sample" / "images" / "happiness").glob("*.jpg"))[:2]
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},happiness\n" for p in photos))
    cfg = {"source": {"class_path": "datamodules.sources.ManifestSource", "init_args": {"csv": str(manifest)}},
           "store_root": str(tmp_path / "stores"), "num_workers": 0, "modalities": modalities,
           "trainer": {"enable_progress_bar": False}}
    path = tmp_path / "extract.yaml"
    path.write_text(json.dumps(cfg))
    return path


def test_extract_names_the_file_in_one_line_exit_2_and_keeps_the_other_modality(
        tiny_backbones: dict, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a full traceback and exit status 1, and the modality after it was never extracted."""
    from fer_zoo.__main__ import main

    monkeypatch.delenv("FER_ZOO_DEBUG", raising=False)
    bad = cut(tiny_backbones["convnext_atto"], tmp_path / "convnext_atto_copy.safetensors")
    good = {"name": "timm", "config": {"model": "convnext_atto", "pretrained": str(tiny_backbones["convnext_atto"]),
                                       "precision": "fp32"}}
    cfg = _extract_config(tmp_path, {"broken": {"name": "timm", "config": {**good["config"], "pretrained": str(bad)}},
                                     "frames": good})
    assert main(["extract", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("python -m fer_zoo extract: error:")]
    assert len(lines) == 1, err
    assert f"modality 'broken': extractor 'timm' cannot be built: {bad}: incomplete" in lines[0], lines[0]
    metas = list((tmp_path / "stores").glob("frames/timm-*/meta.json"))
    assert len(metas) == 1, "the modality that could be built was not extracted"
    assert not list((tmp_path / "stores").glob("broken/*")), "the broken modality left a store folder"
    assert str(tiny_backbones["convnext_atto"].resolve()) in json.loads(metas[0].read_text())["weights_source"]


def test_extract_with_fer_zoo_debug_shows_the_traceback(tiny_backbones: dict, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from fer_zoo.__main__ import main

    bad = cut(tiny_backbones["convnext_atto"], tmp_path / "convnext_atto_copy.safetensors")
    cfg = _extract_config(tmp_path, {"broken": {"name": "timm", "config": {"model": "convnext_atto",
                                                                           "pretrained": str(bad)}}})
    monkeypatch.setenv("FER_ZOO_DEBUG", "1")
    with pytest.raises(Exception, match="modality 'broken'") as info:
        main(["extract", "--config", str(cfg)])
    assert str(bad) in str(info.value.__cause__), "the original error is kept as the cause"


def test_predict_video_names_the_file_cut_short(tiny_backbones: dict, tmp_path: Path) -> None:
    """predict-video rebuilds each extractor from its store's meta: the error names the file there too."""
    from fer_zoo.video.run_info import PredictError, build_extractors

    bad = cut(tiny_backbones["convnext_atto"], tmp_path / "convnext_atto.safetensors")
    m = SimpleNamespace(key="frames", extractor="timm", config={"model": "convnext_atto", "pretrained": str(bad)},
                        meta_from=str(tmp_path / "meta.json"), meta={}, frame_cap=None)
    with pytest.raises(PredictError) as info:
        build_extractors(SimpleNamespace(modalities=[m]), model=None)
    one_line_error(info, bad, "incomplete")


def test_fetch_weights_checks_a_cached_file_is_whole(tiny_backbones: dict, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    """Before: a cached file cut short (an interrupted copy to the shared cache) was reported "ok"."""
    from fer_zoo.extraction.fetch_weights import main

    snap = tmp_path / "hub" / "models--timm--convnext_atto.d2_in1k"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (snap / "refs").mkdir(parents=True)
    (snap / "refs" / "main").write_text(rev)
    (snap / "snapshots" / rev).mkdir(parents=True)
    cached = cut(tiny_backbones["convnext_atto"], snap / "snapshots" / rev / "model.safetensors")
    cfg = tmp_path / "extract.yaml"
    cfg.write_text(json.dumps({"modalities": {"frames": {"name": "timm", "config": {"model": "convnext_atto"}}}}))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["--config", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert f"FAILED: timm convnext_atto: {cached}: incomplete" in out, out
    shutil.copy(tiny_backbones["convnext_atto"], cached)
    assert main(["--config", str(cfg)]) == 0
    assert "ok: timm convnext_atto: huggingface.co/timm/convnext_atto.d2_in1k" in capsys.readouterr().out


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
