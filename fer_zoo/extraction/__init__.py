"""Extraction: run the extractor zoo over a clip source into feature stores (``extract``, ``fetch-weights``)."""
