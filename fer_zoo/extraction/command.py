"""``python -m fer_zoo extract --config configs/extract.yaml``: run the configured extractors over a clip source."""

from __future__ import annotations

import os
import sys
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser

from datamodules.provenance import clips_provenance
from fer_zoo.cli_errors import UsageError, from_config_value_error, parse_args
from fer_zoo.extraction.run import ExtractorBuildError, ExtractorSpec, StoreSummary, extract_modality

EXIT_SOME_FAILED = 3
LIST_AT_MOST = 20  # changed clips listed by name per modality


def build_parser() -> ArgumentParser:
    from datamodules.sources import ClipSource  # noqa: F401  (the base type jsonargparse resolves sources against)

    p = ArgumentParser(prog="python -m fer_zoo extract", description=__doc__, default_env=False, exit_on_error=False,
                       allow_abbrev=False)
    p.add_argument("--config", action=ActionConfigFile, help="YAML config (see configs/extract.yaml)")
    p.add_argument("--source", type=ClipSource, required=True, help="clip source: class_path + init_args")
    p.add_argument("--store_root", type=str, required=True, help="folder of this dataset's feature stores")
    p.add_argument("--modalities", type=dict[str, ExtractorSpec], required=True,
                   help="modality name -> {name, config, fallback}")
    p.add_argument("--only", type=str, nargs="+", default=None, help="extract only these modalities")
    p.add_argument("--frame_cap", type=int | None, default=None, help="at most this many frames per clip (uniform)")
    p.add_argument("--num_workers", type=int, default=2, help="loader worker processes (decode; MediaPipe pool)")
    p.add_argument("--decoder_threads", type=int, default=1,
                   help="video decoder threads per worker (0: FFmpeg's choice); scale with num_workers instead")
    p.add_argument("--flush_every", type=int, default=16, help="clips per shard")
    p.add_argument("--retry_failed", type=bool, default=False,
                   help="extract again the clips that failed in an earlier run although their files did not change "
                        "(clips whose file changed are extracted again anyway)")
    p.add_argument("--trainer", type=dict[str, Any], default={}, help="Lightning Trainer kwargs (devices, strategy)")
    p.add_argument("--fit_config", type=str | None, default=None,
                   help="a fit config (e.g. your copy of configs/my_clips.yaml): its data.source and data.store_root "
                        "replace source and store_root, and unless --only is given only its data.modalities are "
                        "extracted, so one file names your clips for both commands")
    return p


def fit_config_data(path: str, extract_modalities: list[str]) -> tuple[dict[str, Any], str, list[str]]:
    """``(source, store_root, modalities to extract)`` from a fit config's ``data`` section.

    ``extract_modalities``: the modality names this extract config knows; the fit config's ``data.modalities``
    (a ``/<extractor>-<hash>`` pin is cut off) must be among them. Raises ``ValueError`` naming the file and key.
    """
    from pathlib import Path

    import yaml

    file = Path(path)
    if not file.is_file():
        raise ValueError(f"--fit_config: file not found: {file}")
    cfg = yaml.safe_load(file.read_text()) or {}
    data = cfg.get("data") if isinstance(cfg, dict) else None
    missing = [k for k in ("source", "store_root", "modalities") if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(f"--fit_config {file}: no data.{', data.'.join(missing)} in it (a fit config names the clip "
                         "source, the store root and the modalities to train on under `data:`)")
    mods = list(dict.fromkeys(str(m).split("/")[0] for m in data["modalities"]))
    unknown = [m for m in mods if m not in extract_modalities]
    if unknown:
        raise ValueError(f"--fit_config {file}: data.modalities {unknown} are not modalities of the extract config "
                         f"(known: {extract_modalities})")
    return data["source"], str(data["store_root"]), mods




def print_summary(summaries: list[StoreSummary], skipped: list[tuple[str, str]] | None = None) -> None:
    """The per-modality table, then every failed clip and every file the source skipped, each with its reason."""
    print("\nextraction summary")
    print(f"{'modality':<10} {'clips':>6} {'skipped':>8} {'ok':>6} {'failed':>7} {'valid frames':>13}  store")
    for s in summaries:
        print(f"{s.modality:<10} {s.clips:>6} {s.skipped:>8} {s.ok:>6} {len(s.failed):>7} {s.valid_frames:>12.1%}  "
              f"{s.path}")
    for s in summaries:
        if s.requested:  # the store's name says it too; this says it in words, with the reason
            print(f"  [{s.modality}] -> {s.extractor} (fallback for {s.requested}: {s.fallback_reason})")
        if s.extracted:
            print(f"  [{s.modality}] extracted: " + ", ".join(f"{n} {why}" for why, n in s.extracted.items()))
        for cid, how in list(s.changed.items())[:LIST_AT_MOST]:
            print(f"  SOURCE CHANGED [{s.modality}] {cid}: {how} (extracted again)")
        if len(s.changed) > LIST_AT_MOST:
            print(f"  SOURCE CHANGED [{s.modality}] ... and {len(s.changed) - LIST_AT_MOST} more")
        for cid, was in s.gone.items():
            print(f"  SOURCE GONE [{s.modality}] {cid}: {was} no longer exists; its earlier features are kept")
        if s.unknown:
            print(f"  [{s.modality}] {s.unknown} clips packed before stores recorded their source: not checked")
        for cid, reason in s.failed.items():
            print(f"  FAILED [{s.modality}] {cid}: {reason}")
    for path, reason in skipped or []:
        print(f"  SKIPPED {path}: {reason}")


def global_rank() -> int:
    """This process's rank: Lightning's when a Trainer ran here (DDP), else from the launcher's environment, read
    as Lightning reads it (``lightning.fabric.utilities.rank_zero._get_rank``). A rerun with nothing to extract never
    imports Lightning (~2.5 s)."""
    if "lightning" in sys.modules:
        from lightning.fabric.utilities.rank_zero import rank_zero_only

        return int(getattr(rank_zero_only, "rank", 0))
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def apply_fit_config(parser: ArgumentParser, cfg: Any) -> list[str]:
    """Put ``--fit_config``'s source and store root into the parsed ``cfg``; return the modalities it trains on.

    The source is parsed on its own: merged over the extract config's source, init_args that the other class also
    has (the sample's ``root``) would carry over into it. Raises :class:`UsageError` naming the file.
    """
    from jsonargparse import ArgumentError

    try:
        source, cfg.store_root, mods = fit_config_data(cfg.fit_config, list(cfg.modalities))
        cfg.source = parser.parse_object({"source": source, "store_root": cfg.store_root,
                                          "modalities": cfg.modalities}).source
    except (ValueError, ArgumentError) as err:
        text = " ".join(str(err).split())
        raise UsageError(text if text.startswith("--fit_config") else f"--fit_config {cfg.fit_config}: {text}") \
            from None
    return mods


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse_args(parser, argv, "extract")
    fit_mods = apply_fit_config(parser, cfg) if cfg.fit_config else None
    try:
        init = parser.instantiate_classes(cfg)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise from_config_value_error(err) from err
    names = init.only or fit_mods or list(init.modalities)
    unknown = [m for m in names if m not in init.modalities]
    if unknown:
        raise UsageError(f"--only names modalities {unknown} that are not under `modalities` ({list(init.modalities)})")
    for key in ("num_workers", "decoder_threads"):
        if getattr(init, key) < 0:
            raise UsageError(f"{key} must be >= 0, got {getattr(init, key)}")
    try:
        clips = init.source.clips()
    except (ValueError, KeyError, FileNotFoundError) as err:  # a label outside the vocabulary, a missing split file
        raise from_config_value_error(err) from err
    skipped = list(getattr(init.source, "skipped", []))  # files the source saw but could not take as clips
    print(f"source {init.source.name}: {len(clips)} clips" + (f", {len(skipped)} files skipped" if skipped else ""))
    excluded = dict(getattr(init.source, "excluded", {}))  # listed rows left out on purpose (AffectNet's "none")
    if excluded:
        print(f"source {init.source.name}: left out " + ", ".join(f"{n} {why}" for why, n in excluded.items()))
    # Where each clip's features come from, stat'ed once for every modality (datamodules.provenance).
    current = dict(zip([c.clip_id for c in clips], clips_provenance(clips)))
    summaries, unbuilt = [], []
    for modality in names:
        spec = init.modalities[modality]
        if isinstance(spec, dict):
            spec = ExtractorSpec(**spec)
        try:
            summaries.append(extract_modality(
                init.source, clips, init.store_root, modality, spec, frame_cap=init.frame_cap,
                trainer_kwargs=init.trainer, num_workers=init.num_workers, flush_every=init.flush_every,
                decoder_threads=init.decoder_threads, retry_failed=init.retry_failed, current=current))
        except ExtractorBuildError as err:  # the other modalities still run; the command then fails with exit 2
            if os.environ.get("FER_ZOO_DEBUG"):
                raise
            unbuilt.append(err)
    if global_rank() == 0 and summaries:
        print_summary(summaries, skipped)
    if unbuilt:
        raise UsageError("; ".join(str(e) for e in unbuilt)) from unbuilt[0]
    gone = max((len(s.gone) for s in summaries), default=0)
    if gone:
        print(f"{gone} clips' sources no longer exist (SOURCE GONE above); their features from the earlier run are "
              "kept and training reports them. Restore the files, or remove the clips from the source.",
              file=sys.stderr)
    if any(s.failed for s in summaries):
        print(f"some clips failed (listed above); exit status {EXIT_SOME_FAILED}. A rerun extracts again the clips "
              "whose file changed (fixed, replaced, or now present) and skips the others; to retry those too (a "
              "fixed decoder, a moved mount), rerun with --retry_failed true", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0
