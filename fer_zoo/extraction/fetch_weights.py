"""``python -m fer_zoo fetch-weights [--config configs/extract.yaml ...]``: download every pretrained weight the
extraction configs need into the caches the extractors read, on a machine with internet (e.g. a cluster's login node)
before running on offline compute nodes. Share ``$TORCH_HOME`` and ``$FER_ZOO_CACHE`` with the compute nodes, and for
timm/open_clip encoders the Hugging Face cache (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``; open_clip's
URL-only tags go to ``~/.cache/clip``)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

from extractors.weight_check import WeightsFileError, check_complete
from extractors.weights import OFFLINE_MOBILENET, offline_mobilenet_path, torchvision_weights

_TORCHVISION = {"resnet18", "resnet34", "resnet50", "mobilenet_v2"}
_SPEECH_DEFAULT = "facebook/wav2vec2-base"  # extractors.speech.SpeechEncoder's default checkpoint
_HUB_EXTRACTORS = {"timm", "clip", "clip_zeroshot"}


def _specs(config_files: list[str]) -> list[dict]:
    """Every extractor spec (and fallback) the configs name."""
    out = []
    for file in config_files:
        cfg = yaml.safe_load(Path(file).read_text()) or {}
        for spec in (cfg.get("modalities") or {}).values():
            out += [s for s in (spec, spec.get("fallback") or {}) if s.get("name")]
    return out


def needed_hub_files(config_files: list[str]) -> list[tuple[str, object]]:
    """``(what, HubFile)`` of the timm/open_clip checkpoints the configs name (local files and random inits are
    skipped); a wrong model name or tag raises ``ValueError`` here, on the login node."""
    from extractors.registry import default_config

    out: list[tuple[str, object]] = []
    for s in _specs(config_files):
        if s["name"] not in _HUB_EXTRACTORS:
            continue
        cfg = {**default_config(s["name"]), **(s.get("config") or {})}
        if s["name"] == "timm":
            from extractors.timm_frames import parse_weights, timm_hub_file

            if parse_weights(cfg.get("pretrained", True)) is True:
                out.append((f"timm {cfg['model']}", timm_hub_file(cfg["model"])))
        else:
            from extractors.clip_frames import open_clip_hub_file
            from extractors.timm_frames import parse_weights

            tag = parse_weights(cfg.get("pretrained", "openai"))
            tag = "openai" if tag is True else tag
            if tag and not Path(str(tag)).expanduser().is_file() and "/" not in str(tag):
                model = cfg.get("model", "ViT-B-16")
                out.append((f"open_clip {model} {tag}", open_clip_hub_file(model, str(tag))[0]))
    seen, unique = set(), []
    for what, f in out:
        if f not in seen:
            seen.add(f)
            unique.append((what, f))
    return unique


def needed_weights(config_files: list[str]) -> list[tuple[str, str]]:
    """``(arch, weights)`` pairs named by the configs' extractors and fallbacks."""
    out: list[tuple[str, str]] = []
    for file in config_files:
        cfg = yaml.safe_load(Path(file).read_text()) or {}
        for spec in (cfg.get("modalities") or {}).values():
            for s in (spec, spec.get("fallback") or {}):
                name = s.get("name")
                if name == "speech":
                    ckpt = str((s.get("config") or {}).get("checkpoint", _SPEECH_DEFAULT))
                    if ("speech", ckpt) not in out:
                        out.append(("speech", ckpt))
                elif name in _TORCHVISION:
                    default = OFFLINE_MOBILENET if name == "mobilenet_v2" else "DEFAULT"
                    w = (s.get("config") or {}).get("weights", default)
                    if w and w != "none" and (name, w) not in out:
                        out.append((name, str(w)))
    return out


def fetch_speech(checkpoint: str) -> bool:
    """Download a Hugging Face speech checkpoint (model + preprocessor config) into the HF cache ($HF_HOME)."""
    if Path(checkpoint).is_dir():
        print(f"skip: speech uses the local folder {checkpoint} (copy it to the compute nodes yourself)")
        return True
    try:
        from transformers import AutoConfig, AutoFeatureExtractor

        from extractors.speech import load_verified

        AutoConfig.from_pretrained(checkpoint)
        AutoFeatureExtractor.from_pretrained(checkpoint)
        load_verified(checkpoint, local=False)  # a cached file cut short, or tensors missing: named here
    except Exception as err:  # report every weight, then fail once at the end
        print(f"FAILED: speech {checkpoint}: {err}")
        return False
    print(f"ok: speech {checkpoint} (in the Hugging Face cache, $HF_HOME; share it with the compute nodes)")
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fer_zoo fetch-weights", description=__doc__)
    p.add_argument("--config", action="append", default=None, help="extraction config(s); default configs/extract.yaml")
    args = p.parse_args(argv)
    configs = args.config or ["configs/extract.yaml"]
    pairs = needed_weights(configs)
    failed = 0
    from extractors.hub_weights import resolve

    for what, hub in needed_hub_files(configs):
        try:
            path = resolve(hub, what)  # type: ignore[arg-type]
        except Exception as err:  # report every weight, then fail once at the end
            print(f"FAILED: {what}: {err}")
            failed += 1
            continue
        try:  # a cached file cut short (an interrupted copy between machines) is found here, not on a compute node
            check_complete(path)
        except WeightsFileError as err:
            print(f"FAILED: {what}: {err}; delete {path} and run fetch-weights again")
            failed += 1
            continue
        print(f"ok: {what}: {hub.describe()} -> {path}")
    for arch, w in pairs:
        if w == OFFLINE_MOBILENET:
            dest = offline_mobilenet_path()
            script = Path(__file__).resolve().parents[2] / "scripts" / "fetch_offline_mobilenet.sh"
            rc = subprocess.call(["bash", str(script), str(dest.parent), sys.executable])
            print(f"{'ok' if rc == 0 else 'FAILED'}: {arch} offline weights -> {dest}")
            failed += rc != 0
        elif arch == "speech":
            failed += not fetch_speech(w)
        elif "/" in w or w.endswith((".pt", ".pth", ".ckpt")):
            print(f"skip: {arch} uses the local file {w} (copy it to the compute nodes yourself)")
        else:
            try:
                loaded = torchvision_weights(arch, w)
                print(f"ok: {loaded.source} (in the torch cache)")
            except Exception as err:  # report every weight, then fail once at the end
                print(f"FAILED: {arch} {w}: {err}")
                failed += 1
    return 1 if failed else 0
