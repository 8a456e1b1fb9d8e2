"""Import MediaPipe quietly: its C++ logging floods the console (one line per graph) unless silenced before loading."""

import os

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import mediapipe  # noqa: E402

__all__ = ["mediapipe"]
