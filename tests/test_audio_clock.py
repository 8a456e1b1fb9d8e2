"""Audio clocks (issue 28, items 6-7): samples placed by their timestamps (gaps left uncovered, overlaps dropped and
said), windows kept out of gaps, and the audio stream chosen by its ``default`` disposition or by ``audio_stream``.
Test media are built here from the real face videos (``tests/audio_data.py``)."""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from datamodules.audio import SAMPLE_RATE, AudioReadError, Soundtrack, read_soundtrack
from datamodules.audio_clock import MAX_UNCOVERED_S, Run, place, tolerance
from datamodules.frames import read_frames
from extractors import get_extractor
from extractors.audio_base import AudioInput

sys.path.insert(0, str(Path(__file__).parent))
from audio_data import mux, mux_streams, tone_track  # noqa: E402

RATE = 48000
PACKET = 1024 / RATE  # s: one AAC frame at 48 kHz
GAP_FROM, GAP_TO, TONE_AT = 2.0, 4.5, 4.5  # packets starting in [2.0, 4.5) s are lost; the tone starts at 4.5 s
HEARD_UNTIL = math.ceil(GAP_FROM / PACKET) * PACKET  # 2.0053 s: the end of the last packet before the loss
HEARD_FROM = math.ceil(GAP_TO / PACKET) * PACKET  # 4.5013 s: the first packet after it
END = 8.0  # s of audio written (the video lasts 19.7 s)
MEL_HZ = 700 * (np.exp(np.linspace(1127 * np.log(1 + 40 / 700), 1127 * np.log(1 + 8000 / 700), 130)[1:-1] / 1127)
                - 1)
BAND_1K = int(np.argmin(np.abs(MEL_HZ - 1000)))  # the fbank mel bin holding the 1 kHz tone


def _lose_packets(t: float) -> list[float]:
    return [] if GAP_FROM <= t < GAP_TO else [t]


def _duplicate_packets(t: float) -> list[float]:
    """Packets of 3.0-3.2 s written twice with the same time (a retransmission)."""
    return [t, t] if 3.0 <= t < 3.2 else [t]


@pytest.fixture(scope="module")
def media(face_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("audio_clock")
    long_video, short_video = face_videos / "WolfgangLanger_Pexels.mp4", face_videos / "single_face.mp4"
    sound = tone_track(END, RATE, TONE_AT)  # -40 dBFS noise throughout, a -6 dBFS 1 kHz tone from 4.5 s
    out = {f"gap_{s}": mux(long_video, tmp / f"gap.{s}", sound, RATE, retime=_lose_packets) for s in ("mp4", "mkv")}
    # Matroska takes equal timestamps in a row (MP4 refuses them)
    out["overlap"] = mux(long_video, tmp / "overlap.mkv", sound, RATE, retime=_duplicate_packets)
    silent, tone = np.zeros((1, int(2.4 * RATE)), np.float32), tone_track(2.4, RATE, 0.0)
    for s in ("mp4", "mkv"):
        out[f"two_{s}"] = mux_streams(short_video, tmp / f"two.{s}", [silent, tone], RATE, default=1)
    out["two_none_default"] = mux_streams(short_video, tmp / "two_nd.mkv", [tone, silent], RATE, default=None)
    return out


def _rms(track: Soundtrack, t0: float, t1: float) -> float:
    a, b = (int(round((t - track.start) * SAMPLE_RATE)) for t in (t0, t1))
    return float(np.sqrt(np.mean(np.square(track.samples[a:b], dtype=np.float64))))


# ------------------------------------------------------------------------------------ item 6: a gap in the clock


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])  # mkv: pts rounded to 1 ms, jitter that is not a gap
def test_audio_after_lost_packets_plays_at_its_own_time(suffix: str, media: dict[str, Path]) -> None:
    track = read_soundtrack(media[f"gap_{suffix}"])
    assert abs(track.start) < 1e-3 and abs(track.end - END) < 2e-3
    [(g0, g1)] = track.gaps()  # one gap, where the packets were lost (mkv times are whole ms)
    assert abs(g0 - HEARD_UNTIL) < 2e-3 and abs(g1 - HEARD_FROM) < 2e-3, (g0, g1)
    assert abs(track.heard - (END - (HEARD_FROM - HEARD_UNTIL))) < 4e-3
    assert _rms(track, 4.6, 4.7) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)  # the tone, at 4.6 s
    # the noise floor before the gap: white noise of RMS 0.01 at 48 kHz keeps a third of its power below 8 kHz
    assert _rms(track, 1.0, 1.9) == pytest.approx(0.01 / np.sqrt(3), rel=0.1)
    assert not track.samples[int((g0 + 1e-3) * SAMPLE_RATE):int((g1 - 1e-3) * SAMPLE_RATE)].any()  # nothing heard


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_frames_in_a_gap_are_invalid_and_the_tone_lands_at_4_5_s(suffix: str, media: dict[str, Path]) -> None:
    """Every frame of the real 23.98 fps video: frames in the gap have no audio (invalid, with the reason), the
    frames after it hold the tone that starts at 4.5 s, those before it do not, and those after 8 s are outside."""
    clip = media[f"gap_{suffix}"]
    track = read_soundtrack(clip)
    t = read_frames(clip, None).timestamps
    ext = get_extractor("fbank", window=0.2)
    inp = AudioInput(track, t)
    feats, valid = ext.extract(inp)
    margin = 3e-3  # s around each boundary (mkv ms rounding); a frame is 42 ms
    before = t < HEARD_UNTIL - margin
    in_gap = (t > HEARD_UNTIL + margin) & (t < HEARD_FROM - margin)
    after = (t > HEARD_FROM + margin) & (t < END - margin)
    beyond = t > END + margin
    assert in_gap.sum() == 59 and before.sum() == 49 and after.sum() == 84  # 2.5 s and 3.5 s of 23.98 fps frames
    assert valid[before].all() and valid[after].all()
    assert not valid[in_gap].any() and not valid[beyond].any()
    assert not feats[~valid].any()
    reason = ext.windows(inp).reason
    n_gap = int((~valid & (t > 2.0) & (t < 4.51)).sum())
    assert n_gap == in_gap.sum()
    assert f"{n_gap} of {len(t)} frames have no audio (gap in the soundtrack at 2.01-4.50 s)" in reason, reason
    assert f"{int(beyond.sum())} of {len(t)} frames outside the soundtrack" in reason
    energy = feats[:, BAND_1K]
    assert energy[before].max() + 5 < energy[after].min()  # > 5 nats (~22 dB): the tone is after the gap only
    first = np.flatnonzero(after)[0]  # the first frame after the gap, at 4.504 s: its window already holds the tone
    assert 4.5 <= t[first] < 4.55 and energy[first] > energy[before].max() + 5
    win = ext.windows(inp)
    lo = win.start[valid] / SAMPLE_RATE + track.start
    assert ((lo + win.length / SAMPLE_RATE <= HEARD_UNTIL + margin) | (lo >= HEARD_FROM - margin)).all()  # no window
    # spans the gap


def test_duplicated_packets_are_heard_once_and_said(media: dict[str, Path]) -> None:
    """Packets 141-149 (3.008-3.2 s) each written twice: the second copy overlaps time already decoded and is
    dropped, so the audio after them still plays at its own time, with nothing missing."""
    track = read_soundtrack(media["overlap"])
    # the tone written from 4.5 s is heard from 4.5 s, not 9 packets (0.192 s) late
    assert _rms(track, 4.35, 4.45) == pytest.approx(0.01 / np.sqrt(3), rel=0.1)
    assert _rms(track, 4.52, 4.6) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    copies = math.ceil(3.2 / PACKET) - math.ceil(3.0 / PACKET)
    assert copies == 9 and track.dropped == pytest.approx(copies * PACKET, abs=2e-3)  # 0.192 s
    assert track.gaps() == [] and abs(track.end - END) < 2e-3 and abs(track.heard - END) < 2e-3
    assert track.notes == [f"{track.dropped:.3f} s of audio dropped: its timestamps overlap audio decoded before "
                           "(the first decoded kept)"]
    win = get_extractor("fbank").windows(AudioInput(track, np.array([1.0, 3.1, 5.0])))
    assert win.valid.all() and win.reason == track.notes[0]  # the clip's reason says it, though all frames are valid


def test_place_rules() -> None:
    sr = SAMPLE_RATE
    a, b = np.full(sr, 0.1, np.float32), np.full(sr, 0.2, np.float32)
    p = place([Run(0.0, a), Run(0.5, b)], sr)  # b overlaps a's second half: a keeps it, b's rest follows
    assert p.start == 0.0 and p.dropped == sr // 2 and p.segments.tolist() == [[0, 3 * sr // 2]]
    assert (p.samples[:sr] == np.float32(0.1)).all() and (p.samples[sr:] == np.float32(0.2)).all()
    p = place([Run(2.0, a), Run(1.0, b[:sr // 2])], sr)  # a run earlier than the first: the grid starts there
    assert p.start == 1.0 and p.segments.tolist() == [[0, sr // 2], [sr, 2 * sr]] and p.dropped == 0
    assert not p.samples[sr // 2:sr].any()
    p = place([Run(0.0, a[:100]), Run(0.0063, b[:50], follows=True)], sr)  # a format change: right after its run
    assert p.segments.tolist() == [[0, 150]] and p.samples[100] == np.float32(0.2)
    with pytest.raises(ValueError, match="broken clock"):
        place([Run(0.0, a), Run(MAX_UNCOVERED_S + 2.0, b)], sr)
    with pytest.raises(ValueError, match="zero samples"):
        place([Run(0.0, a[:0])], sr)
    assert tolerance(Fraction(1, 48000)) == 0.001 and tolerance(Fraction(1, 1000)) == 0.002


def test_window_rules_around_gaps() -> None:
    """Stretches 0-1.0 s, 1.5-1.8 s (shorter than the 0.5 s window) and 2.0-3.0 s of noise."""
    sr = SAMPLE_RATE
    x = (np.random.default_rng(0).standard_normal(3 * sr) * 0.1).astype(np.float32)
    seg = np.array([[0, sr], [3 * sr // 2, 9 * sr // 5], [2 * sr, 3 * sr]])
    covered = np.zeros(3 * sr, bool)
    for a, b in seg:
        covered[a:b] = True
    track = Soundtrack(np.where(covered, x, 0).astype(np.float32), sr, 10.0, "synthetic", segments=seg)
    ext = get_extractor("fbank", window=0.5)
    t = 10.0 + np.array([0.0, 0.9, 1.2, 1.6, 1.9, 2.05, 2.5, 3.0, 3.1])
    win = ext.windows(AudioInput(track, t))
    assert win.length == sr // 2
    np.testing.assert_array_equal(win.valid, [True, True, False, False, False, True, True, True, False])
    np.testing.assert_array_equal(win.start[win.valid], np.array([0.0, 0.5, 2.0, 2.25, 2.5]) * sr)
    assert "2 of 9 frames have no audio (gap in the soundtrack at 11.00-11.50 s, 11.80-12.00 s)" in win.reason
    assert "1 of 9 frames in a stretch of sound shorter than the 0.50 s window between gaps" in win.reason
    assert "1 of 9 frames outside the soundtrack" in win.reason
    # the features of a window next to a gap are those of its samples alone: the gap's zeros are never read
    feats, _ = ext.extract(AudioInput(track, t[1:2]))
    alone = ext.filterbank(x[sr // 2:sr])
    np.testing.assert_allclose(feats[0], np.concatenate([alone.mean(0), alone.std(0)]), rtol=1e-5, atol=1e-4)
    # every stretch shorter than the window: windows as long as the longest stretch, frames in shorter ones invalid
    win = get_extractor("fbank", window=1.0).windows(AudioInput(track, t))
    assert win.length == sr and win.valid[[0, 1, 5, 6, 7]].all() and not win.valid[3]


# ------------------------------------------------------------------------------ item 7: several audio streams


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_the_default_audio_stream_is_read_and_named(suffix: str, media: dict[str, Path]) -> None:
    """A silent first stream and a tone in the second, which carries the default disposition: the tone is read."""
    clip = media[f"two_{suffix}"]
    track = read_soundtrack(clip)
    assert _rms(track, 0.5, 2.0) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    ext = get_extractor("fbank")
    inp = AudioInput(track, read_frames(clip, 12).timestamps)
    _, valid = ext.extract(inp)
    assert valid.all()
    assert track.stream["index"] == 1 and track.stream["audio_streams"] == 2
    assert track.stream["chosen"] == "default disposition"
    assert ext.windows(inp).reason == "audio stream a:1 of 2 read (default disposition)"
    # named in the config: that stream, whatever its disposition; it is part of the store's config hash
    first = get_extractor("fbank", audio_stream=0)
    assert first.config_hash != ext.config_hash and first.config["audio_stream"] == 0
    silent = AudioInput(first.read_soundtrack(str(clip)), inp.timestamps)
    assert not first.extract(silent)[1].any()
    assert first.windows(silent).reason == ("audio stream a:0 of 2 read (audio_stream: 0 in the config); "
                                            "12 of 12 frames silent (window RMS < -60 dBFS)")
    with pytest.raises(AudioReadError, match="audio_stream: 2 asked for, the file has 2 audio stream") as info:
        read_soundtrack(clip, stream=2)
    assert str(clip) in str(info.value)


def test_no_default_disposition_reads_the_first(media: dict[str, Path], tmp_path: Path) -> None:
    track = read_soundtrack(media["two_none_default"])
    assert track.stream["index"] == 0 and "none carries the default disposition" in track.stream["chosen"]
    assert _rms(track, 0.5, 2.0) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)  # the tone is the first stream here
    with pytest.raises(ValueError, match="audio_stream"):
        get_extractor("fbank", audio_stream="second")
    with pytest.raises(ValueError, match="audio_stream"):
        get_extractor("fbank", audio_stream=True)


def test_extraction_records_the_stream_and_the_gap(media: dict[str, Path], tmp_path: Path) -> None:
    """One extraction run: each clip's reason in the store index says which stream was read and which frames fell
    in a gap; the store's config holds audio_stream, and naming a stream makes another store."""
    from datamodules.feature_store import FeatureStore
    from datamodules.sources import ManifestSource
    from fer_zoo.extraction.run import ExtractorSpec, extract_modality

    names = ["two_mp4", "gap_mp4"]
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(f"{media[n]},neutral" for n in names) + "\n")
    src = ManifestSource(tmp_path / "m.csv", root="/")
    kw = {"frame_cap": 16, "num_workers": 0, "trainer_kwargs": {"enable_progress_bar": False}, "log": lambda *_: None}
    auto = extract_modality(src, src.clips(), tmp_path / "f", "audio", ExtractorSpec("fbank"), **kw)
    first = extract_modality(src, src.clips(), tmp_path / "f", "audio", ExtractorSpec("fbank", {"audio_stream": 0}),
                             **kw)
    store = FeatureStore(auto.path)
    idx = store.index.set_index("clip_id")
    two = next(c.clip_id for c in src.clips() if c.path.endswith("two.mp4"))
    gap = next(c.clip_id for c in src.clips() if c.path.endswith("gap.mp4"))
    assert idx.valid_count[two] == 16 and idx.reason[two] == "audio stream a:1 of 2 read (default disposition)"
    assert auto.path != first.path and not auto.failed
    assert store.meta["config"]["audio_stream"] == "auto" and store.meta["config"]["decoding"]["version"] == 2
    t = store.frames(gap)[1]
    in_gap = (t > HEARD_UNTIL) & (t < HEARD_FROM)
    heard = (t < HEARD_UNTIL) | ((t > HEARD_FROM) & (t < END))
    assert in_gap.sum() >= 1 and idx.valid_count[gap] == heard.sum()
    assert f"{int(in_gap.sum())} of 16 frames have no audio (gap in the soundtrack at 2.01-4.50 s)" in idx.reason[gap]
    np.testing.assert_array_equal(store.clip(gap)[1], heard)
    idx0 = FeatureStore(first.path).index.set_index("clip_id")
    assert idx0.valid_count[two] == 0 and "a:0 of 2 read (audio_stream: 0 in the config)" in idx0.reason[two]
    assert "silent" in idx0.reason[two]
    assert idx0.reason[gap] == idx.reason[gap]  # one audio stream: audio_stream 0 reads it as auto does
