"""``speech``: a pretrained self-supervised speech encoder (wav2vec 2.0, HuBERT, WavLM) through Hugging Face
``transformers``, one mean-pooled hidden state per frame window.

Each frame's window (``extractors.audio_base``: ``window`` s of 16 kHz mono audio centred on the frame) is
normalised as the checkpoint's own feature extractor says (``preprocessor_config.json``: ``do_normalize`` means zero
mean, unit variance per window), run through the encoder, and the hidden states of ``layer`` (``-1``: the last
transformer layer; ``k``: hidden_states[k], 0 being the CNN features' projection; ``"mean"``: the average of all
transformer layers, as in SUPERB-style probing) are averaged over the window's ~20 ms steps.

``checkpoint``: a Hub id (``facebook/wav2vec2-base``, ``facebook/hubert-base-ls960``, ``microsoft/wavlm-base-plus``)
or a local folder saved with ``save_pretrained``. Hub ids download into the Hugging Face cache (``$HF_HOME``) on first
use; offline without that cache a :class:`~extractors.weights.WeightsUnavailableError` says how to get it
(``python -m fer_zoo fetch-weights``). ``random_init: true`` builds the architecture of ``checkpoint``'s config with
random weights (for tests only): the extractor is then named ``speech_random``, so its store says so in its name and
``meta.json``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from extractors.audio_base import AudioExtractor, Windows
from extractors.registry import register_extractor
from extractors.weights import WeightsFileError, WeightsUnavailableError


def _receptive_field(cfg: Any) -> int:
    """Samples seen by one output step of the convolutional feature encoder (400 for wav2vec2-base)."""
    rf, jump = 1, 1
    for k, s in zip(cfg.conv_kernel, cfg.conv_stride):
        rf += (k - 1) * jump
        jump *= s
    return rf


def _folder_sha256(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix in {".safetensors", ".bin", ".json"}:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


@register_extractor("speech")
@register_extractor("speech_random", random_init=True)  # the name a random-weights store records (tests only)
class SpeechEncoder(AudioExtractor):
    """Config: ``checkpoint`` (Hub id or folder), ``layer`` (int or ``"mean"``, default -1), ``precision``
    (``auto``: bf16 autocast where supported | ``bf16`` | ``fp32``), ``batch_windows`` (16), ``random_init``
    (False), ``normalize`` (``auto``: the checkpoint's ``do_normalize`` | true | false), plus the audio window options.
    Output float32 ``[T, hidden_size]``."""

    version = "1"

    def __init__(self, checkpoint: str = "facebook/wav2vec2-base", layer: int | str = -1, precision: str = "auto",
                 batch_windows: int = 16, random_init: bool = False, normalize: str | bool = "auto",
                 **config: Any) -> None:
        from extractors.torchvision_frames import bf16_supported

        if precision not in {"auto", "bf16", "fp32"}:
            raise ValueError(f"speech: precision must be auto, bf16 or fp32, got {precision!r}")
        if not (layer == "mean" or (isinstance(layer, int) and not isinstance(layer, bool))):
            raise ValueError(f"speech: layer must be an integer or 'mean', got {layer!r}")
        if isinstance(batch_windows, bool) or not isinstance(batch_windows, int) or batch_windows < 1:
            raise ValueError(f"speech: batch_windows must be a positive integer, got {batch_windows!r}")
        resolved = ("bf16" if bf16_supported() else "fp32") if precision == "auto" else precision
        self.batch_windows = batch_windows
        if random_init != (self.name == "speech_random"):
            # the store's folder and meta say it is not pretrained: the name follows random_init, both ways
            self.name = "speech_random" if random_init else "speech"  # type: ignore[misc]
        self.model, self.weights_source, do_norm, self.weights_sha256 = self._build(str(checkpoint), bool(random_init),
                                                                                   normalize)
        n_layers = self.model.config.num_hidden_layers
        if isinstance(layer, int) and not -n_layers - 1 <= layer <= n_layers:
            raise ValueError(f"speech: layer {layer} out of range for {checkpoint} (hidden_states 0..{n_layers})")
        self._rf = _receptive_field(self.model.config)
        super().__init__(checkpoint=str(checkpoint), layer=layer, precision=resolved, random_init=bool(random_init),
                         normalize=do_norm, **config)

    def _build(self, ckpt: str, random_init: bool, normalize: str | bool) -> tuple[Any, str, bool, str | None]:
        import torch
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        local = Path(ckpt).is_dir()
        try:
            cfg = AutoConfig.from_pretrained(ckpt)
            if random_init:
                torch.manual_seed(0)
                model = AutoModel.from_config(cfg)
                source = f"none (random init from the config of {ckpt}: NOT pretrained, for tests only)"
            else:
                model = load_verified(ckpt, local)
                source = f"{'local folder' if local else 'Hugging Face Hub'} {ckpt} (transformers {_tf_version()})"
        except OSError as err:
            raise WeightsUnavailableError(
                f"speech: cannot load {ckpt!r} ({err}). Offline? On a machine with internet run "
                "`python -m fer_zoo fetch-weights --config <your extract config>` and share $HF_HOME "
                "(default ~/.cache/huggingface), or pass a local folder saved with save_pretrained.") from err
        if not hasattr(cfg, "conv_kernel"):
            raise ValueError(f"speech: {ckpt} is a {cfg.model_type} model, not a wav2vec2-style speech encoder")
        if normalize == "auto":
            try:
                normalize = bool(getattr(AutoFeatureExtractor.from_pretrained(ckpt), "do_normalize", False))
            except (OSError, ValueError) as err:
                raise ValueError(f"speech: {ckpt} has no preprocessor_config.json to say whether inputs are "
                                 "normalised; set normalize: true or false") from err
        model.eval().requires_grad_(False)
        sha = _folder_sha256(Path(ckpt)) if local and not random_init else None
        return model, source, bool(normalize), sha

    def __getstate__(self) -> dict[str, Any]:
        # transformers' weight-normed positional conv cannot be pickled as a module: ship config + tensors instead
        state = dict(self.__dict__)
        model = state.pop("model")
        state["_model_config"], state["_model_state"] = model.config, model.state_dict()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from transformers import AutoModel

        cfg, sd = state.pop("_model_config"), state.pop("_model_state")
        self.__dict__.update(state)
        self.model = AutoModel.from_config(cfg)
        self.model.load_state_dict(sd)
        self.model.eval().requires_grad_(False)

    @property
    def config_hash(self) -> str:
        from extractors.base import config_hash

        if self.weights_sha256 is None:  # a local folder re-saved in place changes the features: hash its content
            return super().config_hash
        return config_hash(self.name, self.version, {**self.config, "weights_sha256": self.weights_sha256})

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def schema(self) -> list[str]:
        return [f"speech_{i}" for i in range(self.dim)]

    @property
    def min_samples(self) -> int:
        return self._rf

    def describe(self) -> dict[str, Any]:
        sha = {"weights_sha256": self.weights_sha256} if self.weights_sha256 else {}
        return {"weights_source": self.weights_source, **sha, "preprocessing": {
            "model_type": self.model.config.model_type, "receptive_field_samples": self._rf,
            "normalize": "zero mean, unit variance per window" if self.config["normalize"] else "none",
            "pooling": f"mean over the window's steps of hidden_states[{self.config['layer']}]"
                       if self.config["layer"] != "mean" else "mean over steps of the mean of all transformer layers"}}

    def features(self, win: Windows) -> np.ndarray:
        import torch

        p = next(self.model.parameters())
        keep = np.flatnonzero(win.valid)
        starts, where = np.unique(win.start[keep], return_inverse=True)  # equal windows run once
        x = np.stack([win.samples[s:s + win.length] for s in starts]).astype(np.float32)
        if self.config["normalize"]:
            x = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-7)  # as Wav2Vec2FeatureExtractor
        use_bf16 = self.config["precision"] == "bf16"
        outs = []
        with torch.inference_mode(), torch.autocast(p.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            for chunk in torch.from_numpy(x).split(self.batch_windows):
                hs = self.model(chunk.to(p.device), output_hidden_states=True).hidden_states
                h = torch.stack(hs[1:]).mean(0) if self.config["layer"] == "mean" else hs[self.config["layer"]]
                outs.append(h.float().mean(1).cpu())
        pooled = torch.cat(outs).numpy()
        out = np.zeros((len(win.start), self.dim), np.float32)
        out[keep] = pooled[where]
        return out


#: Parameters the pretrained model may lack because inference never uses them (SpecAugment's mask embedding is
#: applied only in training mode).
UNUSED_AT_INFERENCE = ("masked_spec_embed",)


def load_verified(ckpt: str, local: bool) -> Any:
    """``AutoModel.from_pretrained(ckpt)``, refusing a checkpoint that leaves tensors of the model unset.

    transformers fills what the checkpoint lacks with random values and only logs it; its loading info
    (``output_loading_info=True``: ``missing_keys``, ``mismatched_keys``) is turned into an error here. Unexpected
    keys pass (a pretraining checkpoint's quantizer and heads, which the bare encoder does not have). A weights file
    cut short or corrupt is named as such (safetensors' and torch's errors, which are not ``OSError`` and would
    otherwise read as a traceback, or for a Hub id as "offline"). Raises ``WeightsFileError`` (a ``ValueError``).
    """
    import pickle

    from safetensors import SafetensorError
    from transformers import AutoModel

    try:
        # mismatched sizes reported in `info` (and refused below) instead of raised with a pointer to a log table
        model, info = AutoModel.from_pretrained(ckpt, output_loading_info=True, ignore_mismatched_sizes=True)
    except (SafetensorError, EOFError, pickle.UnpicklingError, RuntimeError) as err:
        raise WeightsFileError(f"speech: {_weights_files(ckpt, local)}: incomplete or unreadable weights "
                               f"({type(err).__name__}: {' '.join(str(err).split())})") from err
    except OSError as err:
        if not local:  # a Hub id: not cached and no network (the caller says how to fetch it)
            raise
        raise WeightsFileError(f"speech: {_weights_files(ckpt, local)}: incomplete or unreadable weights "
                               f"({type(err).__name__}: {' '.join(str(err).split())})") from err
    missing = [k for k in info.get("missing_keys", ()) if k.split(".")[-1] not in UNUSED_AT_INFERENCE]
    mismatched = list(info.get("mismatched_keys", ()))
    if missing or mismatched:
        parts = [f"{len(missing)} tensors missing (first: {', '.join(sorted(missing)[:3])})"] if missing else []
        if mismatched:
            parts.append(f"{len(mismatched)} of another shape (first: {_mismatch(sorted(mismatched)[0])})")
        raise WeightsFileError(f"speech: {_weights_files(ckpt, local)}: does not fit {type(model).__name__}: "
                               f"{', '.join(parts)}; transformers would leave them randomly initialised")
    return model


def _mismatch(item: Any) -> str:
    """transformers' ``(key, checkpoint shape, model shape)`` as one phrase (or the item as it comes)."""
    if isinstance(item, tuple | list) and len(item) == 3:
        key, file_shape, model_shape = item
        return f"{key} is {list(file_shape)} in the file, {list(model_shape)} in the model"
    return str(item)


def _weights_files(ckpt: str, local: bool) -> str:
    """The weights file(s) of a local checkpoint folder (or the folder / Hub id when none is found)."""
    if not local:
        from huggingface_hub import try_to_load_from_cache

        for name in ("model.safetensors", "pytorch_model.bin"):
            hit = try_to_load_from_cache(ckpt, name)
            if isinstance(hit, str):
                return hit
        return f"{ckpt} (its files in the Hugging Face cache, $HF_HOME)"
    files = sorted(str(f) for f in Path(ckpt).iterdir() if f.suffix in {".safetensors", ".bin"})
    return ", ".join(files) if files else ckpt


def _tf_version() -> str:
    import transformers

    return transformers.__version__
