"""Ablations: grids of modality sets x folds x seeds, their summary table, chart and W&B summary (``ablate``)."""
