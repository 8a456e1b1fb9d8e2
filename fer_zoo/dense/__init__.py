"""Per-frame (dense) tasks: ABAW's metrics and per-frame baselines on long, partly labeled videos."""
