"""Spectrogram "extractors": log-mel (``logmel``) and MFCC (``mfcc``) matrices, cached once so that
CNNs train on them without decoding, resampling or STFTs (issue #19).

No model runs: each row is librosa's own computation on the waveform the stage decodes, framed
on an exact per-second grid. ``hop`` must divide ``sample_rate``, so each second holds exactly
``F = sample_rate // hop`` frames, and frame ``j`` (centred at ``j * hop / sample_rate`` s, as
librosa frames with ``center=True``) belongs to second ``j // F``. A row is ``[S, F, M]``: the
dataset's S seconds, F frames each, M bands (mfcc: ``n_mfcc x (1 + len(deltas))``). librosa
gives ``1 + S * F`` frames for ``S`` seconds of samples; the last one, centred on the clip's end,
is dropped. The exact calls are in ``LogMel.spectrogram`` / ``MFCC.spectrogram`` and
docs/extractors.md; the tests check the cached rows against them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from avcache.contract.cache import TIME_FREQUENCY
from avcache.contract.params import ParamsError
from avcache.extraction.extractors.base import AudioExtractor


def suggest_hops(sample_rate: int, hop: int, k: int = 3) -> list[int]:
    """The divisors of ``sample_rate`` nearest ``hop`` (ties: the smaller first)."""
    divisors = [d for d in range(1, sample_rate + 1) if sample_rate % d == 0]
    return sorted(sorted(divisors, key=lambda d: (abs(d - hop), d))[:k])


class LogMel(AudioExtractor):
    """``librosa.feature.melspectrogram`` then ``power_to_db`` (``scale: db``), ``log(S + log_offset)``
    (``scale: log``) or the mel power itself (``scale: power``)."""

    name = "logmel"
    fp32_only = "librosa computes the spectrogram in float32 numpy on the CPU"

    def __init__(
        self,
        sample_rate: int = 22050,
        n_fft: int = 1024,
        hop: int = 441,
        win_length: int | None = None,
        window: str = "hann",
        n_mels: int = 128,
        fmin: float = 0.0,
        fmax: float | None = None,
        power: float = 2.0,
        scale: Literal["db", "log", "power"] = "db",
        ref: float | Literal["max"] = 1.0,
        top_db: float | None = 80.0,
        amin: float = 1e-10,
        log_offset: float = 1e-6,
        resampler: Literal["soxr_hq", "kaiser_best", "ffmpeg"] = "soxr_hq",
        **kw,
    ):
        where = f"extractors.{self.name}"
        self.sample_rate, self.resampler = sample_rate, resampler
        super().__init__(**kw)
        self.device = "cpu"  # numpy on the CPU whatever extract.device says: the rows do not depend on it
        if sample_rate <= 0 or hop <= 0 or n_fft <= 0:
            raise ParamsError(f"params.yaml: {where}: sample_rate, n_fft and hop must be positive")
        if sample_rate % hop:
            near = ", ".join(f"{d} ({sample_rate // d} frames/s)" for d in suggest_hops(sample_rate, hop))
            raise ParamsError(
                f"params.yaml: {where}.hop {hop} does not divide sample_rate {sample_rate}, so seconds would not "
                f"hold whole frames; use a divisor near it: {near}"
            )
        if win_length is not None and not 0 < win_length <= n_fft:
            raise ParamsError(f"params.yaml: {where}.win_length must be in 1..n_fft ({n_fft}), got {win_length}")
        nyquist = sample_rate / 2
        if not 0 <= fmin < (fmax if fmax is not None else nyquist) <= nyquist:
            raise ParamsError(
                f"params.yaml: {where}: need 0 <= fmin < fmax <= sample_rate / 2 ({nyquist:g}), got fmin {fmin}, "
                f"fmax {fmax}"
            )
        if ref != "max" and ref <= 0 or amin <= 0 or log_offset <= 0 or (top_db is not None and top_db < 0):
            raise ParamsError(
                f"params.yaml: {where}: ref ({ref}), amin ({amin}) and log_offset ({log_offset}) must be > 0 "
                f"and top_db ({top_db}) >= 0 or null"
            )
        self.n_fft, self.hop, self.win_length, self.window = n_fft, hop, win_length, window
        self.n_mels, self.fmin, self.fmax, self.power = n_mels, float(fmin), fmax, float(power)
        self.scale, self.ref, self.top_db, self.amin, self.log_offset = scale, ref, top_db, amin, log_offset
        self.frames_per_second = sample_rate // hop
        self._check_window()

    def _check_window(self) -> None:
        import librosa

        try:
            librosa.filters.get_window(self.window, self.win_length or self.n_fft)
        except Exception as e:
            raise ParamsError(f"params.yaml: extractors.{self.name}.window {self.window!r}: {e}") from None

    def mel(self, samples: np.ndarray) -> np.ndarray:
        """The mel power (``power: 1`` magnitude) [n_mels, 1 + len // hop], float32."""
        import librosa

        return librosa.feature.melspectrogram(
            y=samples.astype(np.float32, copy=False),
            sr=self.sample_rate,
            n_fft=self.n_fft,
            hop_length=self.hop,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            power=self.power,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
        )

    def spectrogram(self, samples: np.ndarray) -> np.ndarray:
        """[bands, 1 + len // hop] as librosa computes it (before the last frame is dropped)."""
        import librosa

        s = self.mel(samples)
        if self.scale == "db":
            ref = np.max if self.ref == "max" else self.ref
            return librosa.power_to_db(s, ref=ref, amin=self.amin, top_db=self.top_db)
        if self.scale == "log":
            return np.log(s + np.float32(self.log_offset))
        return s

    def bands(self) -> int:
        return self.n_mels

    def embed(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One "frame" per second, [S, F, bands], at the second's centre (pooling keeps it as is)."""
        f = self.frames_per_second
        seconds = len(samples) // self.sample_rate
        if seconds * self.sample_rate != len(samples):
            raise ValueError(f"{self.name}: {len(samples)} samples is not a whole number of seconds")
        spec = self.spectrogram(samples)[:, : seconds * f].T.astype(np.float32)
        return spec.reshape(seconds, f, -1), np.arange(seconds) + 0.5

    def options(self) -> dict:
        return {
            "n_fft": self.n_fft,
            "hop": self.hop,
            "win_length": self.win_length,
            "window": self.window,
            "n_mels": self.n_mels,
            "fmin": self.fmin,
            "fmax": self.fmax,
            "power": self.power,
        }

    def scaling(self) -> dict:
        return {
            "scale": self.scale,
            "ref": self.ref,
            "top_db": self.top_db,
            "amin": self.amin,
            "log_offset": self.log_offset,
        }

    def describe(self) -> dict:
        import librosa

        return {
            "extractor": self.name,
            "weights": "none (librosa)",
            "layer": self.name,
            "layout": TIME_FREQUENCY,
            "sample_rate": self.sample_rate,
            "frames_per_second": self.frames_per_second,
            "bands": self.bands(),
            **self.options(),
            **self.scaling(),
            "framing": "librosa center=True (constant padding); frame j centred at j*hop/sample_rate s, in second "
            "j // frames_per_second; the last frame (centred on the clip's end) is dropped",
            "versions": {"librosa": librosa.__version__},
        }


class MFCC(LogMel):
    """``librosa.feature.mfcc`` (power_to_db with ref 1.0, amin 1e-10, top_db 80; DCT-II, ortho)
    and, per order in ``deltas``, ``librosa.feature.delta(mfcc, width=delta_width, order=k)``,
    stacked along the coefficient axis."""

    name = "mfcc"

    def __init__(
        self,
        sample_rate: int = 22050,
        n_fft: int = 1024,
        hop: int = 441,
        win_length: int | None = None,
        window: str = "hann",
        n_mels: int = 128,
        fmin: float = 0.0,
        fmax: float | None = None,
        n_mfcc: int = 40,
        lifter: float = 0.0,
        deltas: list[int] | None = None,
        delta_width: int = 9,
        resampler: Literal["soxr_hq", "kaiser_best", "ffmpeg"] = "soxr_hq",
        **kw,
    ):
        super().__init__(sample_rate, n_fft, hop, win_length, window, n_mels, fmin, fmax, resampler=resampler, **kw)
        where = f"params.yaml: extractors.{self.name}"
        if not 0 < n_mfcc <= n_mels:
            raise ParamsError(f"{where}.n_mfcc must be in 1..n_mels ({n_mels}), got {n_mfcc}")
        deltas = list(deltas or [])
        if any(k not in (1, 2) for k in deltas) or len(set(deltas)) != len(deltas):
            raise ParamsError(f"{where}.deltas must list distinct orders among [1, 2], got {deltas}")
        if delta_width < 3 or delta_width % 2 == 0 or delta_width > self.frames_per_second + 1:
            raise ParamsError(
                f"{where}.delta_width must be odd, >= 3 and at most 1 + frames_per_second "
                f"({self.frames_per_second + 1}: a 1-s clip's frames), got {delta_width}"
            )
        self.n_mfcc, self.lifter, self.deltas, self.delta_width = n_mfcc, float(lifter), deltas, delta_width

    def spectrogram(self, samples: np.ndarray) -> np.ndarray:
        import librosa

        m = librosa.feature.mfcc(
            y=samples.astype(np.float32, copy=False),
            sr=self.sample_rate,
            n_mfcc=self.n_mfcc,
            dct_type=2,
            norm="ortho",
            lifter=self.lifter,
            n_fft=self.n_fft,
            hop_length=self.hop,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            power=2.0,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
        )
        parts = [m] + [librosa.feature.delta(m, width=self.delta_width, order=k, axis=-1) for k in self.deltas]
        return np.concatenate(parts, 0)

    def bands(self) -> int:
        return self.n_mfcc * (1 + len(self.deltas))

    def scaling(self) -> dict:
        return {
            "scale": "librosa.feature.mfcc: power_to_db(ref=1.0, amin=1e-10, top_db=80), DCT-II ortho",
            "n_mfcc": self.n_mfcc,
            "lifter": self.lifter,
            "deltas": self.deltas,
            "delta_width": self.delta_width,
        }
