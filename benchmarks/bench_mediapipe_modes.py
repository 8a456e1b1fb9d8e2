#!/usr/bin/env python
"""MediaPipe face mesh and pose over capped frames: tracking (``static_image_mode=False``) vs detection on every
frame (``True``), the evidence for each extractor's default (issue 10, row 7).

For each shared video and frame cap (8, 16, 64): how many of the capped frames each mode finds a face/body on,
and the mean landmark distance (pixels, x/y, averaged over landmarks and frames) of each mode from the landmarks
of tracking through EVERY frame at the same frame (the mode's intended use, consecutive frames), where both find
one. Prints one JSON line per (video, extractor, cap); about 5 minutes on one core.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from datamodules.frames import cap_indices, read_frames

VIDEOS = ["WolfgangLanger_Pexels.mp4", "face_noface.mov", "noface_face.mov", "single_face.mp4", "no_face.mp4"]


def landmarks(kind: str, frames: np.ndarray, static: bool) -> list[np.ndarray | None]:
    from extractors._mediapipe import mediapipe as mp

    if kind == "facemesh":
        graph = mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1)
    else:
        graph = mp.solutions.pose.Pose(static_image_mode=static, model_complexity=1)
    out: list[np.ndarray | None] = []
    with graph as g:
        for f in frames:
            r = g.process(np.ascontiguousarray(f))
            lm = (r.multi_face_landmarks[0].landmark if r.multi_face_landmarks else None) if kind == "facemesh" \
                else (r.pose_landmarks.landmark if r.pose_landmarks else None)
            out.append(None if lm is None else np.array([(p.x, p.y) for p in lm], np.float32))
    return out


def distance(a: list, b: list, w: int, h: int) -> tuple[float | None, int]:
    both = [i for i in range(len(a)) if a[i] is not None and b[i] is not None]
    if not both:
        return None, 0
    return round(float(np.mean([np.linalg.norm((a[i] - b[i]) * [w, h], axis=1).mean() for i in both])), 2), len(both)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", default=str(Path(__file__).resolve().parents[2] / "shared/data/face-videos"))
    ap.add_argument("--caps", type=int, nargs="+", default=[8, 16, 64])
    args = ap.parse_args()
    for name in VIDEOS:
        fr = read_frames(Path(args.videos) / name)
        h, w = fr.rgb.shape[1:3]
        for kind in ("facemesh", "pose"):
            dense = landmarks(kind, fr.rgb, static=False)
            for cap in args.caps:
                keep = cap_indices(len(fr), cap)
                ref = [dense[i] for i in keep]
                track = landmarks(kind, fr.rgb[keep], static=False)
                detect = landmarks(kind, fr.rgb[keep], static=True)
                print(json.dumps({
                    "video": name, "extractor": kind, "cap": cap, "frames": len(keep),
                    "found_dense_tracking": sum(x is not None for x in ref),
                    "found_tracking": sum(x is not None for x in track),
                    "found_detection": sum(x is not None for x in detect),
                    "px_tracking_vs_dense": distance(track, ref, w, h)[0],
                    "px_detection_vs_dense": distance(detect, ref, w, h)[0],
                }), flush=True)


if __name__ == "__main__":
    main()
