"""Your own videos: face tracking and crops (``preprocess``) and windowed prediction (``predict-video``)."""
