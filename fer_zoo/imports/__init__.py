"""Imports: features other tools wrote (OpenFace, py-feat, a .npy per video) as stores (``import-features``)."""
