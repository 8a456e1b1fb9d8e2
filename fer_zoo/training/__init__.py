"""Training: the temporal transformer, its LightningModule and the LightningCLI (``fit``/``validate``/``test``)."""
