"""The audio modality: soundtrack decoding, the audio extractors' contract, alignment with the stored frames, and
clips without usable audio; test clips are built here from the real face videos (see ``tests/audio_data.py``)."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datamodules.audio import SAMPLE_RATE, AudioReadError, read_soundtrack
from datamodules.feature_store import FeatureStore
from datamodules.frames import read_frames
from extractors import get_extractor, list_extractors
from extractors.audio_base import NO_AUDIO, AudioInput

sys.path.insert(0, str(Path(__file__).parent))
from audio_data import have_espeak, mux, read_wav, resample_linear, speak, tone_track, write_wav  # noqa: E402

AUDIO = list_extractors(kind="audio")
needs_espeak = pytest.mark.skipif(not have_espeak(), reason="espeak-ng not installed (apt-get install espeak-ng)")


@pytest.fixture(scope="module")
def clips(face_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Audio-visual clips on the real single_face.mp4 (2.4 s, 30 fps, 640x360)."""
    tmp = tmp_path_factory.mktemp("av_clips")
    video = face_videos / "single_face.mp4"
    out = {"silent_video": mux(video, tmp / "no_audio.mp4")}
    tone = tone_track(2.4, 44100, tone_start=1.0)
    out["tone"] = mux(video, tmp / "tone.mp4", tone, 44100)
    out["short"] = mux(video, tmp / "short.mp4", tone_track(1.0, 44100, tone_start=0.0), 44100)
    out["corrupt"] = mux(video, tmp / "corrupt.mp4", tone, 44100, corrupt=True)
    out["zeros"] = mux(video, tmp / "zeros.mp4", np.zeros((1, 44100 * 2), np.float32), 44100)
    if have_espeak():
        voice, rate = read_wav(speak("I am so happy to see you again, this is wonderful news!", tmp / "speech.wav"))
        stereo = np.concatenate([voice, 0.5 * voice])
        out["speech_wav"] = tmp / "speech.wav"
        for r in (8000, 44100, 48000):
            out[f"speech_{r}"] = mux(video, tmp / f"speech_{r}.mp4", resample_linear(stereo, rate, r), r)
    return out


@pytest.fixture(scope="module")
def tiny_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny wav2vec2 (random weights) saved with save_pretrained, as a user's local checkpoint folder would be."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    folder = tmp_path_factory.mktemp("tiny_wav2vec2")
    Wav2Vec2Model(cfg).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, sampling_rate=16000).save_pretrained(folder)
    return folder


def _config(name: str, tiny: Path) -> dict:
    return {"checkpoint": str(tiny), "precision": "fp32"} if name.startswith("speech") else {}


def _input(path: Path, frames: int = 12) -> AudioInput:
    fr = read_frames(path, frames)
    return AudioInput(read_soundtrack(path), fr.timestamps)


# ------------------------------------------------------------------------------------------------------- decoding


@needs_espeak
@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_stereo_tracks_decode_to_mono_16k_on_the_clip_clock(rate: int, clips: dict[str, Path]) -> None:
    track = read_soundtrack(clips[f"speech_{rate}"])
    assert track.sample_rate == SAMPLE_RATE and track.samples.dtype == np.float32 and track.samples.ndim == 1
    assert track.stream["rate"] == rate and track.stream["channels"] == 2
    voice, vr = read_wav(clips["speech_wav"])
    assert abs(track.duration - voice.shape[1] / vr) < 0.15  # AAC pads to whole 1024-sample frames
    assert abs(track.start) < 0.05
    assert np.abs(track.samples).max() > 0.05  # speech, not silence


def test_downmix_is_the_channel_mean(tmp_path: Path) -> None:
    """L = a signal, R = silence in a lossless 16 kHz WAV: mono is exactly half the signal (not 1/sqrt(2))."""
    x = tone_track(0.5, 16000, 0.0)[0]
    stereo = np.stack([x, np.zeros_like(x)])
    track = read_soundtrack(tmp_path / "clip.jpg", write_wav(tmp_path / "s.wav", stereo, 16000))
    expected = np.clip(x * 32767, -32768, 32767).astype(np.int16) / 32768.0 / 2
    np.testing.assert_allclose(track.samples[:len(x)], expected, atol=2e-4)
    assert track.start == 0.0


def test_clips_without_a_soundtrack(clips: dict[str, Path], face_photos: Path, tmp_path: Path) -> None:
    assert read_soundtrack(clips["silent_video"]) is None
    assert read_soundtrack(next(face_photos.rglob("*.jpg"))) is None
    with pytest.raises(AudioReadError, match="audio file not found"):
        read_soundtrack(clips["tone"], tmp_path / "missing.wav")


def test_corrupt_audio_stream_raises_naming_the_file(clips: dict[str, Path]) -> None:
    with pytest.raises(AudioReadError, match="cannot decode audio") as info:
        read_soundtrack(clips["corrupt"])
    assert str(clips["corrupt"]) in str(info.value)
    assert len(read_frames(clips["corrupt"], 4)) == 4  # the video stream itself still reads


# ------------------------------------------------------------------------------------------------------- contract


@needs_espeak
@pytest.mark.parametrize("name", AUDIO)
def test_audio_extractor_contract(name: str, clips: dict[str, Path], tiny_speech: Path) -> None:
    ext = get_extractor(name, **_config(name, tiny_speech))
    inp = _input(clips["speech_48000"])
    feats, valid = ext.extract(inp)
    assert feats.shape == (12, ext.dim) and feats.dtype == np.float32
    assert valid.dtype == np.bool_ and valid.shape == (12,)
    assert np.isfinite(feats).all() and valid.sum() >= 8  # speech fills most of the 2.4 s
    assert np.abs(feats[valid]).sum() > 0 and not feats[~valid].any()
    assert len(ext.schema) == ext.dim == len(set(ext.schema))
    assert isinstance(ext.describe()["weights_source"], str)
    again, v2 = ext.extract(inp)
    np.testing.assert_array_equal(feats, again)
    np.testing.assert_array_equal(valid, v2)
    shipped, v3 = pickle.loads(pickle.dumps(ext)).extract(inp)  # a loader worker's copy computes the same
    np.testing.assert_array_equal(feats, shipped)
    assert get_extractor(name, **_config(name, tiny_speech), window=0.5).config_hash != ext.config_hash
    # rebuilt from the config a store records (as predict-video does): the same extractor, the same hash
    import json

    rebuilt = get_extractor(ext.name, **json.loads(json.dumps(ext.config)))
    assert rebuilt.config_hash == ext.config_hash and rebuilt.name == ext.name
    with pytest.raises(TypeError, match="AudioInput"):
        ext.extract(np.zeros((2, 8, 8, 3), np.uint8))


@pytest.mark.parametrize("name", AUDIO)
def test_no_audio_stream_is_invalid_never_zero_heard(name: str, clips: dict[str, Path], tiny_speech: Path) -> None:
    ext = get_extractor(name, **_config(name, tiny_speech))
    inp = _input(clips["silent_video"])
    assert ext.windows(inp).reason == NO_AUDIO
    feats, valid = ext.extract(inp)
    assert feats.shape == (12, ext.dim) and not valid.any()


@pytest.mark.parametrize("name", AUDIO)
def test_shorter_silent_and_tiny_soundtracks(name: str, clips: dict[str, Path], tiny_speech: Path,
                                             tmp_path: Path) -> None:
    ext = get_extractor(name, **_config(name, tiny_speech))
    inp = _input(clips["short"])  # 1.0 s of sound on a 2.4 s video
    _, valid = ext.extract(inp)
    times = inp.timestamps
    assert valid[times <= 0.95].all() and not valid[times >= 1.1].any()
    assert "outside the soundtrack" in ext.windows(inp).reason
    silent = _input(clips["zeros"])
    assert not ext.extract(silent)[1].any() and "silent" in ext.windows(silent).reason
    # 10 ms of sound: shorter than the receptive field (25 ms fbank frame, 400-sample wav2vec2 conv stack)
    tiny = write_wav(tmp_path / "tiny.wav", tone_track(0.01, 16000, 0.0), 16000)
    inp = AudioInput(read_soundtrack(tmp_path / "x.jpg", tiny), np.zeros(1), seconds=True)
    assert not ext.extract(inp)[1].any() and "receptive field" in ext.windows(inp).reason
    # 0.5 s of sound with a 1 s window: every frame sees the whole soundtrack (documented), and is valid
    half = write_wav(tmp_path / "half.wav", tone_track(0.5, 16000, 0.0), 16000)
    inp = AudioInput(read_soundtrack(tmp_path / "x.jpg", half), np.array([0.0, 0.25, 0.5]))
    win = ext.windows(inp)
    assert win.valid.all() and win.length == 8000 and (win.start == 0).all() and "whole soundtrack" in win.reason


def test_tone_lights_up_the_frames_at_its_time(clips: dict[str, Path]) -> None:
    """A 1 kHz tone from 1.0 s (AAC in the mp4, decoded through the container's clock): the fbank windows of frames
    after 1.0 s hold it, those before do not (0.2 s windows: frames within 0.1 s of the onset straddle it)."""
    ext = get_extractor("fbank", window=0.2)
    fr = read_frames(clips["tone"], None)  # every frame, 30 fps
    feats, valid = ext.extract(AudioInput(read_soundtrack(clips["tone"]), fr.timestamps))
    assert valid.all()
    mel_hz = 700 * (np.exp(np.linspace(1127 * np.log(1 + 40 / 700), 1127 * np.log(1 + 8000 / 700), 130)[1:-1] / 1127)
                    - 1)
    band = int(np.argmin(np.abs(mel_hz - 1000)))
    energy = feats[:, band]
    t = fr.timestamps
    before, after = energy[t < 0.88], energy[t > 1.12]
    assert before.max() + 5 < after.min(), (before.max(), after.min())  # > 5 nats (~22 dB) apart
    onset = t[np.argmax(energy > (before.max() + after.min()) / 2)]
    assert 0.88 <= onset <= 1.1, onset


def test_speech_encoder_layers_precision_and_random_naming(clips: dict[str, Path], tiny_speech: Path) -> None:
    inp = _input(clips["tone"], 6)
    last = get_extractor("speech", checkpoint=str(tiny_speech), precision="fp32")
    mean = get_extractor("speech", checkpoint=str(tiny_speech), precision="fp32", layer="mean")
    bf16 = get_extractor("speech", checkpoint=str(tiny_speech), precision="bf16")
    a, b, c = last.extract(inp)[0], mean.extract(inp)[0], bf16.extract(inp)[0]
    assert not np.allclose(a, b) and last.config_hash != mean.config_hash
    cos = (a * c).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(c, axis=1)
    assert cos.min() > 0.98, cos  # bf16 autocast stays close to fp32
    assert last.name == "speech" and "local folder" in last.describe()["weights_source"]
    assert last.min_samples == 400
    rnd = get_extractor("speech", checkpoint=str(tiny_speech), random_init=True)
    assert rnd.name == "speech_random" and "NOT pretrained" in rnd.describe()["weights_source"]
    with pytest.raises(ValueError, match="layer"):
        get_extractor("speech", checkpoint=str(tiny_speech), layer=7)


def test_unavailable_checkpoint_says_how_to_fetch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants as hfc

    from extractors.weights import WeightsUnavailableError

    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)  # hermetic and quick, with or without a network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match="fetch-weights"):
        get_extractor("speech", checkpoint="facebook/wav2vec2-base")


# ------------------------------------------------------------------------------------------------ extraction run


@needs_espeak
def test_audio_store_rows_match_the_visual_store(clips: dict[str, Path], tmp_path: Path) -> None:
    """One extraction over audio-visual clips: the audio store holds the visual store's frames (indices and times),
    the corrupt soundtrack fails only the audio store, and the reasons are in the index."""
    from datamodules.sources import ManifestSource
    from fer_zoo.extraction.run import ExtractorSpec, extract_modality

    names = ["speech_44100", "speech_8000", "silent_video", "short", "corrupt"]
    rows = [f"{clips[n]},{'happiness' if i % 2 else 'neutral'}" for i, n in enumerate(names)]
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    src = ManifestSource(tmp_path / "m.csv", root="/")
    kw = {"frame_cap": 16, "num_workers": 0, "trainer_kwargs": {"enable_progress_bar": False}, "log": lambda *_: None}
    vis = extract_modality(src, src.clips(), tmp_path / "f", "resnet", ExtractorSpec("resnet18", {"weights": "none"}),
                           **kw)
    aud = extract_modality(src, src.clips(), tmp_path / "f", "audio", ExtractorSpec("fbank"), **kw)
    assert not vis.failed
    assert list(aud.failed) == [c.clip_id for c in src.clips() if c.path.endswith("corrupt.mp4")]
    v, a = FeatureStore(vis.path), FeatureStore(aud.path)
    idx = a.index.set_index("clip_id")
    for c in src.clips():
        if c.path.endswith("corrupt.mp4"):
            assert "cannot decode audio" in idx.reason[c.clip_id] and str(c.path) in idx.reason[c.clip_id]
            continue
        for x, y in zip(v.frames(c.clip_id), a.frames(c.clip_id)):
            np.testing.assert_array_equal(x, y)
        assert len(a.clip(c.clip_id)[0]) == len(v.clip(c.clip_id)[0]) == 16
    silent = next(c.clip_id for c in src.clips() if c.path.endswith("no_audio.mp4"))
    assert idx.reason[silent] == NO_AUDIO and idx.valid_count[silent] == 0
    short = next(c.clip_id for c in src.clips() if c.path.endswith("short.mp4"))
    assert "outside the soundtrack" in idx.reason[short] and 0 < idx.valid_count[short] < 16
    meta = a.meta
    assert meta["config"]["decoding"]["sample_rate"] == 16000 and "fbank" in meta["preprocessing"]
    assert "kaldi-native-fbank" in meta["libraries"]
    assert isinstance(pd.read_parquet(aud.path / "index.parquet"), pd.DataFrame)


def test_manifest_audio_column_and_audio_root(tmp_path: Path) -> None:
    from datamodules.sources import DFEWSource, ManifestSource  # noqa: F401

    (tmp_path / "m.csv").write_text("path,label,audio\na.mp4,happy,snd/a.wav\nb.mp4,sad,\n")
    recs = {r.clip_id: r for r in ManifestSource(tmp_path / "m.csv").clips()}
    assert recs["a"].audio == str(tmp_path / "snd" / "a.wav") and recs["b"].audio is None
    recs = {r.clip_id: r for r in ManifestSource(tmp_path / "m.csv", audio_root=tmp_path / "wav").clips()}
    assert recs["a"].audio == str(tmp_path / "snd" / "a.wav")  # the column wins
    assert recs["b"].audio == str(tmp_path / "wav" / "b.wav")


def test_fetch_weights_covers_the_speech_checkpoint(tiny_speech: Path) -> None:
    from fer_zoo.extraction.fetch_weights import fetch_speech, needed_weights

    assert ("speech", "facebook/wav2vec2-base") in needed_weights(["configs/extract/speech.yaml"])
    assert not any(arch == "speech" for arch, _ in needed_weights(["configs/extract.yaml"]))  # fbank: no weights
    assert fetch_speech(str(tiny_speech))  # a local folder is not downloaded


def test_audio_root_names_a_wav_per_clip_id(tmp_path: Path) -> None:
    from datamodules.records import ClipRecord
    from datamodules.sources import _with_audio

    recs = [ClipRecord("00001", "/d/Clip/clip_224x224/00001", "happy", None, 1)]
    assert _with_audio(recs, None) == recs
    assert _with_audio(recs, tmp_path)[0].audio == str(tmp_path / "00001.wav")
