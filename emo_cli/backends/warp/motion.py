"""Per-frame motion curves for a whole track: mouth from the audio, blinks and head pose.

Everything here is computed once per job from the audio and a seeded RNG, a few floats per
frame (10 minutes at 25 fps is 15,000 frames), so rendering any chunk is a pure function of
the frame index and a resumed render is identical to an uninterrupted one.

The mouth drive is language independent: loudness opens the jaw, voicing and the first formant
(F1, from LPC) say how far, the second formant (F2) spreads the lips (high F2: "ee") or rounds
them (low F2: "oo"). Lip closures come from the acoustics of bilabials, not from a recogniser:
a stop's closure is a sudden quiet gap inside speech, a nasal (and a voiced stop's closure) a
murmur with its energy under 400 Hz and almost none above 2.5 kHz, quieter than the vowels
around it. A frame is read as three 20 ms windows and shuts when two of them are closures: a
30 ms closure still shuts the lips for a frame, a single quiet window between two sounds does
not. That works for every language and for singing alike.

Every analysis window has its mean removed first (a high-pass at about 1 / 50 ms): a recording
with a DC offset, or a constant, is silence like any other, never a held-open mouth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOW_S = 0.05  # analysis window: 50 ms, centred on each video frame
SILENCE_BELOW_PEAK_DB = 32.0  # quieter than the track's loud level by this much: silence
ABSOLUTE_SILENCE_DB = -60.0  # dBFS
PITCH_RANGE_HZ = (60.0, 600.0)  # speech and most singing
CUE_WINDOW_S = 0.02  # the closure cues look at 20 ms windows, three per video frame
MURMUR_BELOW_HZ, MURMUR_QUIET_ABOVE_HZ = 400.0, 2500.0  # a nasal murmur's bands
LIP_SEAL = 0.04  # of a wide-open jaw: the lips part only beyond it


@dataclass(frozen=True)
class AudioFeatures:
    """Per-frame measurements of the audio; all arrays have one value per video frame."""

    level_db: np.ndarray  # RMS level in dBFS
    loudness: np.ndarray  # 0 (silence) .. 1 (the track's loud level)
    voicing: np.ndarray  # 0 .. 1, normalised autocorrelation peak in the pitch range
    pitch_hz: np.ndarray  # fundamental where voiced, nan elsewhere
    f1_hz: np.ndarray  # first formant where voiced and found, nan elsewhere
    f2_hz: np.ndarray  # second formant where voiced and found, nan elsewhere
    closure: np.ndarray  # 0 .. 1, how surely the lips are shut (a bilabial closure or murmur)


@dataclass(frozen=True)
class MotionCurves:
    """What the renderer animates, one value per frame."""

    jaw: np.ndarray  # 0 closed .. ~1 wide open (times the `expression` scale)
    width: np.ndarray  # -1 rounded .. +1 spread lips
    blink: np.ndarray  # 0 open .. 1 closed eyelids
    roll: np.ndarray  # head tilt, radians
    shift_x: np.ndarray  # head shift, fractions of the face height
    shift_y: np.ndarray

    def as_array(self) -> np.ndarray:
        """(frames, 6) float64 in the order jaw, width, blink, roll, shift_x, shift_y."""
        return np.stack([self.jaw, self.width, self.blink, self.roll, self.shift_x, self.shift_y], axis=1)


def analyse_audio(audio: np.ndarray, sample_rate: int, fps: int, num_frames: int) -> AudioFeatures:
    """Loudness, voicing, pitch and the first two formants at the centre of every video frame."""
    audio = np.asarray(audio, dtype=np.float64)
    win = max(64, int(round(WINDOW_S * sample_rate)))
    # Long enough that autocorrelation lags up to the lowest pitch do not wrap around.
    nfft = 2 * ((win + int(sample_rate / PITCH_RANGE_HZ[0]) + 2) // 2)
    window = np.hanning(win)
    # Autocorrelation of the window itself, to unbias the normalised autocorrelation.
    window_ac = np.fft.irfft(np.abs(np.fft.rfft(window, nfft)) ** 2)[:win]
    window_ac = window_ac / window_ac[0]
    # Padded with the first and last samples, not zeros: a recording that starts or ends on a DC
    # offset must not step from zero to it at the ends.
    padded = np.pad(audio, win, mode="edge") if audio.size else np.zeros(2 * win)
    centres = ((np.arange(num_frames) + 0.5) * sample_rate / fps).astype(np.int64) + win
    lag_lo = int(sample_rate / PITCH_RANGE_HZ[1])
    lag_hi = min(win - 1, int(sample_rate / PITCH_RANGE_HZ[0]))
    order = 2 + sample_rate // 1000

    level = np.empty(num_frames)
    voicing = np.zeros(num_frames)
    pitch = np.full(num_frames, np.nan)
    f1 = np.full(num_frames, np.nan)
    f2 = np.full(num_frames, np.nan)
    # Pre-emphasis (1 - 0.97 z^-1) applied in the power spectrum: LPC sees a flattened tilt.
    emphasis = np.abs(1 - 0.97 * np.exp(-1j * np.pi * np.arange(nfft // 2 + 1) / (nfft // 2))) ** 2
    block = 1024
    for lo in range(0, num_frames, block):
        idx = centres[lo : lo + block, None] + (np.arange(win) - win // 2)[None, :]
        idx = np.clip(idx, 0, padded.size - 1)
        frames = padded[idx]
        frames = frames - frames.mean(axis=1, keepdims=True)  # no DC drives anything
        level[lo : lo + block] = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        power = np.abs(np.fft.rfft(frames * window, nfft, axis=1)) ** 2
        ac = np.fft.irfft(power, nfft, axis=1)[:, :win]
        energy = ac[:, 0] + 1e-12
        norm = ac[:, lag_lo : lag_hi + 1] / energy[:, None] / window_ac[lag_lo : lag_hi + 1]
        best = np.argmax(norm, axis=1)
        voicing[lo : lo + block] = np.clip(norm[np.arange(norm.shape[0]), best], 0, 1)
        pitch[lo : lo + block] = sample_rate / (best + lag_lo)
        sounding = np.flatnonzero(
            (level[lo : lo + block] > ABSOLUTE_SILENCE_DB) & (voicing[lo : lo + block] > 0.3)
        )
        if sounding.size:
            r = np.fft.irfft(power[sounding] * emphasis, nfft, axis=1)[:, : order + 1]
            r[:, 0] *= 1.0001  # a little white noise keeps Levinson stable on pure tones
            f1[lo + sounding], f2[lo + sounding] = _formants(_levinson(r, order), sample_rate)
    loud_level = np.percentile(level, 95) if num_frames else 0.0
    floor = max(loud_level - SILENCE_BELOW_PEAK_DB, ABSOLUTE_SILENCE_DB)
    loudness = np.clip((level - floor) / max(loud_level - floor, 1e-6), 0.0, 1.0)
    voiced = voicing > 0.45
    pitch[~voiced | (loudness <= 0)] = np.nan
    closure = _closure_cues(padded, win, centres, level, sample_rate, fps)
    return AudioFeatures(level, loudness, voicing, pitch, f1, f2, closure)


def _closure_cues(
    padded: np.ndarray, pad: int, centres: np.ndarray, level: np.ndarray, sample_rate: int, fps: int
) -> np.ndarray:
    """How surely the lips are shut in each frame, 0 .. 1, from 20 ms windows across it.

    A window is a closure when it is far quieter (15-21 dB) than the loudest speech within
    120 ms (a stop's closure silence before its burst), or when it is a murmur: energy below
    400 Hz, next to none above 2.5 kHz, and at least 4 dB under that loudest speech (a nasal,
    or the voicing of a voiced stop's closure). Vowels, even "oo", keep energy between the
    bands or are the loudest sound around. Only next to speech: in silence the jaw is shut by
    the loudness alone. A frame takes the median of its three windows' scores.
    """
    num_frames = centres.size
    if num_frames == 0:
        return np.zeros(0)
    scores = []
    sub = max(32, int(round(CUE_WINDOW_S * sample_rate)))
    nfft = 1 << int(np.ceil(np.log2(sub)))
    hz = np.arange(nfft // 2 + 1) * sample_rate / nfft
    low_band, high_band = hz < MURMUR_BELOW_HZ, hz > MURMUR_QUIET_ABOVE_HZ
    window = np.hanning(sub)
    reach = max(1, int(round(0.12 * fps)))
    padded_level = np.concatenate([np.full(reach, -120.0), level, np.full(reach, -120.0)])
    peak = np.max(np.lib.stride_tricks.sliding_window_view(padded_level, 2 * reach + 1), axis=1)
    speech_near = np.clip((peak - ABSOLUTE_SILENCE_DB - 20) / 10, 0, 1)
    step = sample_rate / fps / 3
    for offset in (-step, 0.0, step):
        start = np.clip(centres + int(round(offset)) - sub // 2, 0, padded.size - sub)
        frames = padded[start[:, None] + np.arange(sub)[None, :]]
        frames = frames - frames.mean(axis=1, keepdims=True)
        sub_level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        power = np.abs(np.fft.rfft(frames * window, nfft, axis=1)) ** 2
        total = power.sum(axis=1) + 1e-20
        low = power[:, low_band].sum(axis=1) / total
        high = power[:, high_band].sum(axis=1) / total
        gap = np.clip((peak - 15 - sub_level) / 6, 0, 1)
        murmur = (np.clip((low - 0.75) / 0.12, 0, 1) * np.clip((0.05 - high) / 0.03, 0, 1)
                  * np.clip((peak - 4 - sub_level) / 3, 0, 1))  # fmt: skip
        scores.append(np.maximum(gap, murmur) * speech_near)
    return np.median(np.stack(scores), axis=0)


def _levinson(r: np.ndarray, order: int) -> np.ndarray:
    """LPC coefficients (frames, order + 1), a[0] = 1, for many autocorrelations at once."""
    n = r.shape[0]
    a = np.zeros((n, order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        acc = r[:, i] + np.sum(a[:, 1:i] * r[:, i - 1 : 0 : -1], axis=1)
        k = -acc / np.maximum(err, 1e-12)
        a[:, 1:i] = a[:, 1:i] + k[:, None] * a[:, i - 1 : 0 : -1]
        a[:, i] = k
        err = err * (1 - k**2)
    return a


def _formants(lpc: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """F1 and F2 (Hz) of many frames from their LPC polynomials' narrow-band roots; nan if none."""
    n, p = lpc.shape[0], lpc.shape[1] - 1
    ok = np.all(np.isfinite(lpc), axis=1)
    companion = np.zeros((n, p, p))
    companion[:, 0, :] = -np.where(ok[:, None], lpc[:, 1:], 0.0)
    companion[:, np.arange(1, p), np.arange(p - 1)] = 1.0
    roots = np.linalg.eigvals(companion)
    freqs = np.angle(roots) * sample_rate / (2 * np.pi)
    bands = -np.log(np.maximum(np.abs(roots), 1e-9)) * sample_rate / np.pi
    keep = (np.imag(roots) > 0) & (freqs > 150) & (freqs < sample_rate / 2 - 200) & (bands < 500)
    freqs = np.where(keep & ok[:, None], freqs, np.inf)
    first = np.min(np.where((freqs >= 200) & (freqs <= 1100), freqs, np.inf), axis=1)
    second = np.min(np.where((freqs > first[:, None] + 250) & (freqs <= 3000), freqs, np.inf), axis=1)
    first_ok = np.isfinite(first)
    return np.where(first_ok, first, np.nan), np.where(first_ok & np.isfinite(second), second, np.nan)


def mouth_curves(features: AudioFeatures, fps: int, expression: float) -> tuple[np.ndarray, np.ndarray]:
    """Jaw opening and lip width per frame, with coarticulation smoothing.

    The opening leads the sound by about one frame (lips part before the sound starts), opens
    with a short attack and closes quickly; silence gives a closed mouth.
    """
    loud = features.loudness
    f1 = _fill(features.f1_hz, 500.0)
    f2 = _fill(features.f2_hz, 1500.0)
    voiced = np.clip((features.voicing - 0.3) / 0.4, 0.0, 1.0)
    openness = np.clip((f1 - 250.0) / 600.0, 0.0, 1.0)
    # Voiced sounds open by loudness and F1; unvoiced ones (fricatives) only a little.
    drive = loud**0.8 * (voiced * (0.65 + 0.35 * openness) + (1 - voiced) * 0.35)
    spread = np.clip((f2 - 1000.0) / 1200.0, 0.0, 1.0) * 2 - 1
    width_drive = spread * voiced * np.minimum(loud * 2, 1.0)

    lead = np.concatenate([drive[1:], drive[-1:]]) if drive.size else drive
    # A closure shuts the lips completely and at once, even just before a vowel opens them.
    shut = features.closure
    target = np.maximum(drive, 0.7 * lead) * (1 - shut)
    jaw = _follow(target, attack=_alpha(0.025, fps), release=np.maximum(_alpha(0.03, fps), shut))
    # Lips stay sealed through the first few percent of an opening (as the jaw starts to move
    # before they part), so a closure the follower has not quite reached still reads as shut.
    jaw = np.maximum(jaw - LIP_SEAL, 0) / (1 - LIP_SEAL)
    width = _follow(width_drive, attack=_alpha(0.05, fps), release=_alpha(0.05, fps))
    return _soft_knee(jaw * expression), width * min(expression, 1.5)


def _soft_knee(jaw: np.ndarray) -> np.ndarray:
    """Openings up to a natural wide open (1) as they are; beyond it, a 40% slope, so a high
    `expression` opens wider without stretching the face into a cartoon."""
    return np.where(jaw <= 1, jaw, 1 + 0.4 * (jaw - 1))


def blink_curve(num_frames: int, fps: int, seed: int, per_minute: float) -> np.ndarray:
    """Eyelid closure per frame: blinks at random times, `per_minute` on average (seeded)."""
    closure = np.zeros(num_frames)
    if per_minute <= 0 or num_frames == 0:
        return closure
    rng = np.random.default_rng([seed, 0xB11C])
    duration = num_frames / fps
    mean_gap = 60.0 / per_minute
    times = []
    t = rng.uniform(0.3, min(1.0, mean_gap) + 0.3)
    while t < duration:
        times.append(t)
        if rng.random() < 0.08:  # now and then a double blink
            times.append(t + rng.uniform(0.35, 0.5))
        # Gamma-distributed gaps: irregular but never absurdly close together.
        t = times[-1] + max(0.6, rng.gamma(4.0, mean_gap / 4.0))
    frame_times = (np.arange(num_frames) + 0.5) / fps
    for start in times:
        tau = frame_times - start
        closure = np.maximum(closure, _blink_profile(tau))
    return closure


def _blink_profile(tau: np.ndarray) -> np.ndarray:
    """A blink: lids close in 70 ms, stay shut 60 ms, reopen in 150 ms."""
    closing = np.clip(tau / 0.07, 0.0, 1.0)
    opening = np.clip(1.0 - (tau - 0.13) / 0.15, 0.0, 1.0)
    shape = np.where(tau < 0.07, closing, np.where(tau < 0.13, 1.0, opening))
    shape = shape * shape * (3 - 2 * shape)  # ease in and out
    return np.where((tau >= 0) & (tau <= 0.28), shape, 0.0)


def head_curves(
    features: AudioFeatures, fps: int, seed: int, amount: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head roll (radians) and shift (face heights) per frame, following energy and pitch.

    Slow seeded wander, more lively while speaking; a rising pitch lifts the head a little.
    `amount` scales everything; 0 keeps the head exactly still.
    """
    n = features.loudness.size
    if amount <= 0 or n == 0:
        return np.zeros(n), np.zeros(n), np.zeros(n)
    t = np.arange(n) / fps
    rng = np.random.default_rng([seed, 0x4EAD])
    wander = []
    for _ in range(3):
        freqs = rng.uniform(0.07, 0.45, 3)
        phases = rng.uniform(0, 2 * np.pi, 3)
        weights = rng.uniform(0.5, 1.0, 3)
        wave = np.sum(weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None]), axis=0)
        wander.append(wave / weights.sum())
    energy = _follow(features.loudness, attack=_alpha(0.3, fps), release=_alpha(0.6, fps))
    pitch = features.pitch_hz
    voiced = np.isfinite(pitch)
    if voiced.sum() >= 3:
        semis = 12 * np.log2(pitch / np.median(pitch[voiced]))
        semis = np.clip(_fill(np.where(voiced, semis, np.nan), 0.0), -6, 6) / 6
    else:
        semis = np.zeros(n)
    lift = _follow(semis * energy, attack=_alpha(0.25, fps), release=_alpha(0.25, fps))
    liveliness = 0.45 + 0.55 * energy
    roll = np.deg2rad(1.1) * wander[0] * liveliness
    shift_x = 0.007 * wander[1] * liveliness
    shift_y = 0.005 * wander[2] * liveliness - 0.008 * lift + 0.003 * energy
    return roll * amount, shift_x * amount, shift_y * amount


def _alpha(tau_s: float, fps: int) -> float:
    """One-pole smoothing factor for a time constant."""
    return float(1.0 - np.exp(-1.0 / (tau_s * fps)))


def _follow(x: np.ndarray, attack: float | np.ndarray, release: float | np.ndarray) -> np.ndarray:
    """Asymmetric one-pole follower: `attack` while rising, `release` while falling (either a
    constant or one factor per sample)."""
    out = np.empty_like(x, dtype=np.float64)
    rise = np.broadcast_to(np.asarray(attack, dtype=np.float64), x.shape).tolist()
    fall = np.broadcast_to(np.asarray(release, dtype=np.float64), x.shape).tolist()
    y = 0.0
    for i, v in enumerate(x.tolist()):
        y += (rise[i] if v > y else fall[i]) * (v - y)
        out[i] = y
    return out


def _fill(values: np.ndarray, default: float) -> np.ndarray:
    """Linear interpolation across nans; `default` where there is nothing to interpolate."""
    values = np.asarray(values, dtype=np.float64)
    good = np.isfinite(values)
    if not good.any():
        return np.full(values.shape, default)
    idx = np.arange(values.size)
    return np.interp(idx, idx[good], values[good])


def motion_curves(
    audio: np.ndarray,
    sample_rate: int,
    fps: int,
    num_frames: int,
    seed: int,
    *,
    expression: float,
    blink_rate: float,
    head_motion: float,
) -> MotionCurves:
    """Every per-frame motion curve of a job."""
    features = analyse_audio(audio, sample_rate, fps, num_frames)
    jaw, width = mouth_curves(features, fps, expression)
    roll, shift_x, shift_y = head_curves(features, fps, seed, head_motion)
    blink = blink_curve(num_frames, fps, seed, blink_rate)
    return MotionCurves(jaw, width, blink, roll, shift_x, shift_y)
