"""Clip sources, label vocabularies, temporal sampling and the feature DataModule."""
