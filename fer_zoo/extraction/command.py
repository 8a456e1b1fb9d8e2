"""``python -m fer_zoo extract --config configs/extract.yaml``: run the configured extractors over a clip source."""

from __future__ import annotations

import sys
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser

from datamodules.provenance import sources_provenance
from fer_zoo.cli_errors import UsageError, from_config_value_error, parse_args
from fer_zoo.extraction.run import ExtractorSpec, StoreSummary, extract_modality

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
    return p


def print_summary(summaries: list[StoreSummary]) -> None:
    print("\nextraction summary")
    print(f"{'modality':<10} {'clips':>6} {'skipped':>8} {'ok':>6} {'failed':>7} {'valid frames':>13}  store")
    for s in summaries:
        print(f"{s.modality:<10} {s.clips:>6} {s.skipped:>8} {s.ok:>6} {len(s.failed):>7} {s.valid_frames:>12.1%}  "
              f"{s.path}")
    for s in summaries:
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse_args(parser, argv, "extract")
    try:
        init = parser.instantiate_classes(cfg)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise from_config_value_error(err) from err
    names = init.only or list(init.modalities)
    unknown = [m for m in names if m not in init.modalities]
    if unknown:
        raise UsageError(f"--only names modalities {unknown} that are not under `modalities` ({list(init.modalities)})")
    for key in ("num_workers", "decoder_threads"):
        if getattr(init, key) < 0:
            raise UsageError(f"{key} must be >= 0, got {getattr(init, key)}")
    clips = init.source.clips()
    print(f"source {init.source.name}: {len(clips)} clips")
    # Where each clip's features come from, stat'ed once for every modality (datamodules.provenance).
    current = dict(zip([c.clip_id for c in clips], sources_provenance(c.path for c in clips)))
    summaries = []
    for modality in names:
        spec = init.modalities[modality]
        if isinstance(spec, dict):
            spec = ExtractorSpec(**spec)
        summaries.append(extract_modality(
            init.source, clips, init.store_root, modality, spec, frame_cap=init.frame_cap,
            trainer_kwargs=init.trainer, num_workers=init.num_workers, flush_every=init.flush_every,
            decoder_threads=init.decoder_threads, retry_failed=init.retry_failed, current=current))
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:
        print_summary(summaries)
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
