"""``fbank``: Kaldi log-mel filterbank of the soundtrack, summarised per frame window (mean and std per mel bin).

The filterbank is Kaldi's ``compute-fbank-feats`` as implemented by kaldi-native-fbank (k2-fsa), the input the
audio transformers of the audio-visual FER papers take (AST: Gong et al., Interspeech 2021, 128 bins, 25 ms / 10 ms):

- samples scaled to the 16-bit range (x 32768, as Kaldi reads a 16-bit WAV), 16 kHz;
- 25 ms frames every 10 ms, ``snip_edges`` (only whole frames), no dither (deterministic), DC offset removed per
  frame, pre-emphasis 0.97, Hanning window (AST's choice; Kaldi's default is Povey), FFT padded to 512;
- ``num_bins`` (128) triangular filters on Kaldi's (HTK) mel scale from ``low_freq`` to 8 kHz, power spectrum,
  natural log (floored at float epsilon). ``low_freq`` is 40 Hz, not Kaldi/AST's 20 Hz: with 128 filters at this FFT
  size Kaldi refuses 20 Hz because filter 3 (63-93 Hz) covers no FFT bin (torchaudio's copy, used by AST, leaves that
  filter empty: a constant log floor).

The filterbank runs once over the whole soundtrack; a frame's window takes the 10 ms filterbank frames lying wholly
inside it (identical to running Kaldi on the window alone when the window starts on the 10 ms grid: every Kaldi
step is per frame) and stores their per-bin mean and standard deviation: ``2 x num_bins`` values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from extractors.audio_base import AudioExtractor, Windows
from extractors.registry import register_extractor

FRAME_LEN, FRAME_SHIFT = 400, 160  # samples at 16 kHz: 25 ms, 10 ms


@register_extractor("fbank")
class FbankExtractor(AudioExtractor):
    """Config: ``num_bins`` (128), ``low_freq`` (Hz, 40) and the audio window options of
    :class:`~extractors.audio_base.AudioExtractor`. Output float32 ``[T, 2 * num_bins]``: per bin mean, then std."""

    version = "1"

    def __init__(self, num_bins: int = 128, low_freq: float = 40.0, **config: Any) -> None:
        if not (isinstance(num_bins, int) and num_bins > 0):
            raise ValueError(f"fbank: num_bins must be a positive integer, got {num_bins!r}")
        super().__init__(num_bins=num_bins, low_freq=float(low_freq), **config)
        self._options()  # bad combinations (too many bins for the band) fail here, naming the keys

    def _options(self) -> Any:
        import kaldi_native_fbank as knf

        o = knf.FbankOptions()
        f = o.frame_opts
        f.samp_freq, f.frame_length_ms, f.frame_shift_ms = 16000, 25.0, 10.0
        f.dither, f.preemph_coeff, f.remove_dc_offset, f.window_type = 0.0, 0.97, True, "hanning"
        f.snip_edges, f.round_to_power_of_two = True, True
        m = o.mel_opts
        m.num_bins, m.low_freq, m.high_freq = self.config["num_bins"], self.config["low_freq"], 0.0
        m.use_slaney_mel_scale, m.is_librosa = False, False
        o.use_energy, o.use_log_fbank, o.use_power = False, True, True
        try:
            knf.OnlineFbank(o)
        except Exception as err:  # kaldi's own check: a filter with no FFT bin in it
            raise ValueError(f"fbank: num_bins={m.num_bins} with low_freq={m.low_freq} Hz leaves a mel filter "
                             f"empty at 16 kHz / 25 ms ({err}); change num_bins or low_freq") from err
        return o

    @property
    def dim(self) -> int:
        return 2 * self.config["num_bins"]

    @property
    def schema(self) -> list[str]:
        b = self.config["num_bins"]
        return [f"fbank_mean_{i:03d}" for i in range(b)] + [f"fbank_std_{i:03d}" for i in range(b)]

    @property
    def min_samples(self) -> int:
        return FRAME_LEN

    def describe(self) -> dict[str, Any]:
        import kaldi_native_fbank as knf

        return {"weights_source": "none (signal processing: kaldi-native-fbank "
                                  f"{getattr(knf, '__version__', '?')})",
                "preprocessing": {"fbank": str(self._options()).strip(), "input_scale": "x32768 (16-bit range)",
                                  "summary": "per-bin mean and std over the 10 ms frames inside each window"}}

    def filterbank(self, samples: np.ndarray) -> np.ndarray:
        """float32 ``[F, num_bins]`` log-mel frames of ``samples`` (float32 in [-1, 1] at 16 kHz)."""
        import kaldi_native_fbank as knf

        fb = knf.OnlineFbank(self._options())
        fb.accept_waveform(16000, (np.asarray(samples, np.float32) * 32768.0))
        fb.input_finished()
        n = fb.num_frames_ready
        if not n:
            return np.zeros((0, self.config["num_bins"]), np.float32)
        return np.stack([np.asarray(fb.get_frame(i), np.float32) for i in range(n)])

    def features(self, win: Windows) -> np.ndarray:
        fb = self.filterbank(win.samples)
        frame_start = np.arange(len(fb)) * FRAME_SHIFT
        out = np.zeros((len(win.start), self.dim), np.float32)
        for i, s in enumerate(win.start):
            if not win.valid[i]:
                continue
            inside = fb[(frame_start >= s) & (frame_start + FRAME_LEN <= s + win.length)]
            if not len(inside):  # a window shorter than one frame cannot happen (min_samples), but never NaN
                continue
            out[i] = np.concatenate([inside.mean(0), inside.std(0)])
        return out
