"""Audio front-end in torch (so it runs on a GPU too): PCM WAV reading, resampling, log-mel
filterbanks (Kaldi's conventions), MFCC, global CMVN and SpecAugment.

Shapes: T samples, F frames, M mel bands.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import torch

from t2t.errors import DataError


def read_wav(path: Path) -> tuple[torch.Tensor, int]:
    """A PCM WAV file -> (samples (T,) float32 in [-1, 1], sample rate); channels are averaged."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, width, channels, n = w.getframerate(), w.getsampwidth(), w.getnchannels(), w.getnframes()
            raw = w.readframes(n)
    except FileNotFoundError:
        raise DataError(f"{path}: no such audio file") from None
    except (wave.Error, EOFError) as e:
        raise DataError(f"{path}: not a readable PCM WAV file ({e})") from None
    if n == 0 or not raw:
        raise DataError(f"{path}: the audio is empty (0 samples)")
    if width == 1:
        x = (torch.frombuffer(bytearray(raw), dtype=torch.uint8).float() - 128.0) / 128.0
    elif width in (2, 4):
        dtype = torch.int16 if width == 2 else torch.int32
        x = torch.frombuffer(bytearray(raw), dtype=dtype).float() / float(2 ** (8 * width - 1))
    elif width == 3:
        b = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, 3).long()
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = torch.where(v >= 2 ** 23, v - 2 ** 24, v).float() / 2 ** 23
    else:
        raise DataError(f"{path}: {8 * width}-bit samples are not supported (use 8, 16, 24 or 32-bit PCM)")
    return x.view(-1, channels).mean(dim=1), rate


def resample(x: torch.Tensor, orig: int, new: int, zeros: int = 16) -> torch.Tensor:
    """Band-limited resampling by a Hann-windowed sinc kernel; x (T,) -> (round(T * new / orig),)."""
    if orig == new:
        return x
    g = math.gcd(orig, new)
    up, down = new // g, orig // g
    cutoff = min(up, down)                                  # the lower of the two Nyquist rates
    width = int(math.ceil(zeros * down / cutoff))
    # output sample j (within a period of `up`) sits at input position j * down / up
    t = torch.arange(-width, width + down, dtype=torch.float64)[None, :] - \
        (torch.arange(up, dtype=torch.float64)[:, None] * down / up)             # (up, K)
    t = t * cutoff / down
    window = torch.where(t.abs() <= zeros, torch.cos(t * math.pi / zeros / 2) ** 2, torch.zeros_like(t))
    kernel = (torch.special.sinc(t) * window * cutoff / down).to(x.dtype)       # (up, K)
    padded = torch.nn.functional.pad(x[None, None], (width, width + down))
    out = torch.nn.functional.conv1d(padded, kernel[:, None, :], stride=down)    # (1, up, frames)
    out = out[0].t().reshape(-1)
    return out[: int(math.ceil(x.shape[0] * up / down))]


def hz_to_mel(f):
    return 1127.0 * torch.log1p(torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * torch.expm1(torch.as_tensor(m, dtype=torch.float64) / 1127.0)


def mel_edges(n_mels: int, rate: int, low: float = 20.0, high: float = 0.0) -> torch.Tensor:
    """(M + 2,) the bands' edges in mel, equally spaced from `low` to `high` Hz (high <= 0: that far
    below Nyquist); band i rises from edge i, peaks at edge i + 1 and falls to edge i + 2."""
    high = high if high > 0 else rate / 2 + high
    mel_lo, mel_hi = hz_to_mel(low), hz_to_mel(high)
    return mel_lo + (mel_hi - mel_lo) * torch.arange(n_mels + 2, dtype=torch.float64) / (n_mels + 1)


def mel_filters(n_mels: int, n_fft: int, rate: int, low: float = 20.0, high: float = 0.0) -> torch.Tensor:
    """(n_fft // 2 + 1, M) triangular filters, equally spaced on the mel scale (Kaldi's layout:
    the triangles are computed in mel, and the Nyquist bin gets no weight)."""
    edges = mel_edges(n_mels, rate, low, high)
    freqs = hz_to_mel(torch.arange(n_fft // 2, dtype=torch.float64) * rate / n_fft)     # (bins,)
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - left) / (center - left)
    down = (right - freqs[:, None]) / (right - center)
    weights = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.nn.functional.pad(weights, (0, 0, 0, 1)).float()                        # Nyquist row


def fbank(x: torch.Tensor, rate: int, n_mels: int = 80, frame_ms: float = 25.0, hop_ms: float = 10.0,
          preemphasis: float = 0.97, dither: float = 0.0, window: str = "povey", low: float = 20.0,
          high: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Log mel filterbank energies (F, M) of samples x (T,), as Kaldi computes them: frames without
    padding (snip edges), per-frame DC removal, pre-emphasis, window, power spectrum, mel filters,
    log with a floor. `dither` adds Gaussian noise of that standard deviation (training only)."""
    length, hop = int(rate * frame_ms / 1000), int(rate * hop_ms / 1000)
    if x.shape[0] < length:
        x = torch.nn.functional.pad(x, (0, length - x.shape[0]))
    n_fft = 1 << (length - 1).bit_length()
    frames = x.unfold(0, length, hop).double()                                           # (F, L)
    if dither:
        frames = frames + dither * torch.randn(frames.shape, generator=generator, dtype=frames.dtype)
    frames = frames - frames.mean(dim=1, keepdim=True)
    if preemphasis:
        frames = torch.cat([frames[:, :1] * (1 - preemphasis), frames[:, 1:] - preemphasis * frames[:, :-1]], dim=1)
    frames = frames * window_function(window, length)
    power = torch.fft.rfft(frames, n=n_fft).abs() ** 2                                   # (F, n_fft/2+1)
    energies = power @ mel_filters(n_mels, n_fft, rate, low, high).double()
    return torch.log(torch.clamp(energies, min=torch.finfo(torch.float32).eps)).float()


def window_function(kind: str, length: int) -> torch.Tensor:
    n = torch.arange(length, dtype=torch.float64)
    hann = 0.5 - 0.5 * torch.cos(2 * math.pi * n / (length - 1))
    if kind == "povey":
        return hann ** 0.85
    if kind == "hann":
        return hann
    if kind == "hamming":
        return 0.54 - 0.46 * torch.cos(2 * math.pi * n / (length - 1))
    raise ValueError(f"unknown window '{kind}'; use povey, hann or hamming")


def mfcc(log_mel: torch.Tensor, n_mfcc: int = 13) -> torch.Tensor:
    """Cepstra (F, n_mfcc) from log mel energies (F, M): an orthonormal DCT-II."""
    m = log_mel.shape[1]
    k = torch.arange(n_mfcc, dtype=torch.float64)[:, None]
    n = torch.arange(m, dtype=torch.float64)[None, :]
    dct = torch.cos(math.pi / m * (n + 0.5) * k) * math.sqrt(2.0 / m)
    dct[0] /= math.sqrt(2.0)
    return (log_mel.double() @ dct.t()).float()


def mel_centers(n_mels: int, rate: int, low: float = 20.0) -> torch.Tensor:
    """(M,) centre frequencies in Hz of `mel_filters`' bands (high edge at Nyquist)."""
    return mel_to_hz(mel_edges(n_mels, rate, low)[1:-1])


def vtlp(feats: torch.Tensor, low_factor: float, high_factor: float, rate: int, low: float = 20.0,
         bend: float = 0.85, generator: torch.Generator | None = None) -> torch.Tensor:
    """Vocal tract length perturbation (Jaitly and Hinton 2013) of log-mel frames (B, F, M): per
    utterance a factor a drawn uniformly from [low_factor, high_factor] moves the spectrum's
    frequencies f to a * f (a > 1: a shorter vocal tract, formants up), bent above `bend` * Nyquist
    * min(a, 1) / a into a line that keeps Nyquist in place. Each band takes the value the input had
    at its centre's source frequency, interpolated linearly between neighbouring bands."""
    b, frames, m = feats.shape
    nyq = rate / 2
    edges = mel_edges(m, rate, low)
    centres = mel_to_hz(edges[1:-1])                                                  # (M,) Hz
    a = low_factor + (high_factor - low_factor) * torch.rand(b, 1, generator=generator, dtype=torch.float64)
    knee = bend * nyq * torch.clamp(a, max=1.0) / a                                   # (B, 1) source Hz
    source = torch.where(centres <= a * knee, centres / a,                             # invert the warp
                         knee + (centres - a * knee) * (nyq - knee) / (nyq - a * knee))
    pos = ((hz_to_mel(source) - edges[1]) / (edges[1] - edges[0])).clamp(0, m - 1)   # (B, M) band index
    left = pos.floor().long().clamp(max=m - 2)
    w = (pos - left).to(feats.device, feats.dtype)[:, None, :]
    left = left.to(feats.device)[:, None, :].expand(-1, frames, -1)
    return feats.gather(2, left) * (1 - w) + feats.gather(2, left + 1) * w


def spec_augment(feats: torch.Tensor, lengths: torch.Tensor, freq_masks: int, freq_width: int,
                 time_masks: int, time_width: int, max_time_ratio: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) on a batch (B, F, M): per utterance, `freq_masks` bands of up to
    `freq_width` mel bins and `time_masks` spans of up to `time_width` frames (at most
    `max_time_ratio` of the utterance each) are set to zero, the mean of normalised features."""
    out = feats.clone()
    b, _, m = feats.shape
    for i in range(b):
        frames = int(lengths[i])
        for _ in range(freq_masks):
            w = int(torch.randint(0, freq_width + 1, (1,), generator=generator))
            f0 = int(torch.randint(0, max(1, m - w + 1), (1,), generator=generator))
            out[i, :, f0: f0 + w] = 0.0
        limit = min(time_width, int(max_time_ratio * frames))
        for _ in range(time_masks):
            w = int(torch.randint(0, limit + 1, (1,), generator=generator))
            t0 = int(torch.randint(0, max(1, frames - w + 1), (1,), generator=generator))
            out[i, t0: t0 + w, :] = 0.0
    return out
