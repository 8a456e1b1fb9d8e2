#!/usr/bin/env python
"""Audio extractors on this CPU: clips/s and real-time factor, compute only vs end to end, fp32 vs bf16.

Clips: the real ``../shared/data/face-videos/single_face.mp4`` (2.4 s, 30 fps) with a spoken soundtrack muxed in
(espeak-ng, 44.1 kHz stereo AAC; a tone track when espeak-ng is missing), ``--clips`` copies, ``--frame-cap`` frames
per clip (8: every frame gets a 1 s window, so 8 s of audio is encoded per 2.4 s clip).

- **end to end**: what the extraction run does per clip, in one process: the frame pass that fixes the stored
  frames, decoding + resampling the soundtrack, cutting windows, features;
- **compute only**: ``extractor.forward`` on windows prepared beforehand.

Extractors: ``fbank`` (kaldi-native-fbank, 128 bins), and ``speech`` with the wav2vec2-base architecture
(``Wav2Vec2Config()`` defaults, 95 M parameters) in fp32 and bf16 autocast. Pretrained weights cannot be downloaded
here, so the encoder has random weights: its speed does not depend on them (its features do; never use them).

Real-time factor = compute seconds / seconds of soundtrack (below 1: faster than real time); ``x realtime`` its
inverse. Target: fbank end to end at least 10x real time. Results: ``benchmarks/results/bench_audio.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _common import machine_info, print_machine, table, target_line, write_results  # noqa: E402

VIDEO = HERE.parents[1] / "shared" / "data" / "face-videos" / "single_face.mp4"


def make_clips(tmp: Path, n: int) -> tuple[list[Path], str]:
    from audio_data import have_espeak, mux, read_wav, resample_linear, speak, tone_track

    if have_espeak():
        voice, rate = read_wav(speak("I am so happy to see you again, this is really wonderful news.", tmp / "v.wav"))
        track, how = resample_linear(np.concatenate([voice, voice]), rate, 44100), "espeak-ng speech"
    else:
        track, how = tone_track(2.4, 44100, 0.5), "tone (espeak-ng missing)"
    first = mux(VIDEO, tmp / "clip0.mp4", track, 44100)
    clips = [first]
    for i in range(1, n):
        dst = tmp / f"clip{i}.mp4"
        dst.write_bytes(first.read_bytes())
        clips.append(dst)
    return clips, how


def end_to_end(ext: Any, clip: Path, cap: int) -> tuple[int, float]:
    from datamodules.audio import read_soundtrack
    from datamodules.frames import stream_frames
    from extractors.audio_base import AudioInput

    frames = stream_frames(clip, cap, 1)
    for _ in frames:
        pass
    track = read_soundtrack(clip)
    feats, _ = ext.forward(ext.preprocess(AudioInput(track, frames.timestamps)))
    return len(feats), track.duration


def measure(name: str, ext: Any, clips: list[Path], cap: int, repeats: int) -> list[dict[str, Any]]:
    from datamodules.audio import read_soundtrack
    from datamodules.frames import read_frames
    from extractors.audio_base import AudioInput

    pres = [ext.preprocess(AudioInput(read_soundtrack(c), read_frames(c, cap).timestamps)) for c in clips]
    audio_s = sum(read_soundtrack(c).duration for c in clips)
    ext.forward(pres[0])  # warm-up (allocations, autocast caches)
    rows = []
    for mode in ("compute only", "end to end"):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for c, pre in zip(clips, pres):
                if mode == "compute only":
                    ext.forward(pre)
                else:
                    end_to_end(ext, c, cap)
            best = min(best, time.perf_counter() - t0)
        rows.append({"extractor": name, "mode": mode, "clips": len(clips), "seconds": best,
                     "clips_per_s": len(clips) / best, "rtf": best / audio_s, "x_realtime": audio_s / best})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=3)
    p.add_argument("--frame-cap", type=int, default=8)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="2 clips, 1 repeat (a smoke run)")
    args = p.parse_args(argv)
    if args.quick or os.environ.get("FER_ZOO_BENCH_QUICK") == "1":
        args.clips, args.repeats = 1, 1
    if not VIDEO.is_file():
        print(f"skip: {VIDEO} not found (the shared data folder is absent)")
        return 0
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from extractors import get_extractor

    info = machine_info()
    print_machine(info)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        clips, how = make_clips(tmp, args.clips)
        torch.manual_seed(0)
        Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(tmp / "w2v2_base_random")
        Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(tmp / "w2v2_base_random")
        rows += measure("fbank", get_extractor("fbank"), clips, args.frame_cap, args.repeats)
        for prec in ("fp32", "bf16"):
            ext = get_extractor("speech", checkpoint=str(tmp / "w2v2_base_random"), precision=prec)
            rows += measure(f"speech wav2vec2-base {prec}", ext, clips, args.frame_cap, args.repeats)
    print(f"\n{args.clips} clips of 2.4 s ({how}), {args.frame_cap} frames each, 1 s windows; "
          f"torch threads {torch.get_num_threads()}; best of {args.repeats}")
    print(table(["extractor", "mode", "clips/s", "RTF", "x realtime"],
                [[r["extractor"], r["mode"], r["clips_per_s"], r["rtf"], r["x_realtime"]] for r in rows]))
    fb = next(r for r in rows if r["extractor"] == "fbank" and r["mode"] == "end to end")
    targets = [target_line("fbank end to end, x real time", fb["x_realtime"], 10.0, "x")]
    out = write_results("bench_audio_quick" if args.quick else "bench_audio",
                        {"machine": info, "rows": rows, "targets": targets, "clips": how})
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
