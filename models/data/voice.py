"""Source-filter voices: a glottal (or synthetic) source through moving formant filters.

Sung vowels, choirs and formant synths, the timbres General MIDI fonts barely have. Additive like
procedural.py: each harmonic's amplitude is the source's spectrum at that harmonic times the
formant filter's gain at the harmonic's *instantaneous* frequency, evaluated on a 250 Hz control
grid (formants move, vibrato and jitter move the harmonics under them) and interpolated to audio
rate. Aspiration noise is shaped by the same formants, frame by frame.

- Source: a Rosenberg glottal pulse (open quotient, speed quotient) differentiated for lip
  radiation, or a saw / pulse wave for synths.
- Filter: five formants in parallel (band-pass magnitude, peak 1 at the formant), levels and
  bandwidths from the Csound manual's formant table (bass, tenor, countertenor, alto, soprano x
  a, e, i, o, u). The table's levels are output levels that already contain a voice's source
  slope, so they are raised by 6 dB per octave above F1 before the pulse's own slope is applied.
- A vowel path moves the formants within the note; a formant LFO sweeps them (talk-box / wah).
- Per voice: vibrato (delayed, rate and phase of its own), jitter and shimmer (low-pass noise on
  f0 and level), detune; a choir is several such voices with their own formant scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.data.procedural import MAX_PARTIALS, NYQUIST_GUARD, midi_to_hz
from models.data.render import NoteTiming

VOICE_TYPES = ("bass", "tenor", "countertenor", "alto", "soprano")
VOWELS = ("a", "e", "i", "o", "u")
CONTROL_HOP = 64  # audio samples per control frame (250 Hz at 16 kHz)

# Csound manual, "Formant values": (Hz, dB, bandwidth Hz) x 5 formants, per voice type and vowel.
_TABLE = {
    "soprano": {"a": ((800, 1150, 2900, 3900, 4950), (0, -6, -32, -20, -50), (80, 90, 120, 130, 140)),
                "e": ((350, 2000, 2800, 3600, 4950), (0, -20, -15, -40, -56), (60, 100, 120, 150, 200)),
                "i": ((270, 2140, 2950, 3900, 4950), (0, -12, -26, -26, -44), (60, 90, 100, 120, 120)),
                "o": ((450, 800, 2830, 3800, 4950), (0, -11, -22, -22, -50), (70, 80, 100, 130, 135)),
                "u": ((325, 700, 2700, 3800, 4950), (0, -16, -35, -40, -60), (50, 60, 170, 180, 200))},
    "alto": {"a": ((800, 1150, 2800, 3500, 4950), (0, -4, -20, -36, -60), (80, 90, 120, 130, 140)),
             "e": ((400, 1600, 2700, 3300, 4950), (0, -24, -30, -35, -60), (60, 80, 120, 150, 200)),
             "i": ((350, 1700, 2700, 3700, 4950), (0, -20, -30, -36, -60), (50, 100, 120, 150, 200)),
             "o": ((450, 800, 2830, 3500, 4950), (0, -9, -16, -28, -55), (70, 80, 100, 130, 135)),
             "u": ((325, 700, 2530, 3500, 4950), (0, -12, -30, -40, -64), (50, 60, 170, 180, 200))},
    "countertenor": {"a": ((660, 1120, 2750, 3000, 3350), (0, -6, -23, -24, -38), (80, 90, 120, 130, 140)),
                     "e": ((440, 1800, 2700, 3000, 3300), (0, -14, -18, -20, -20), (70, 80, 100, 120, 120)),
                     "i": ((270, 1850, 2900, 3350, 3590), (0, -24, -24, -36, -36), (40, 90, 100, 120, 120)),
                     "o": ((430, 820, 2700, 3000, 3300), (0, -10, -26, -22, -34), (40, 80, 100, 120, 120)),
                     "u": ((370, 630, 2750, 3000, 3400), (0, -20, -23, -30, -34), (40, 60, 100, 120, 120))},
    "tenor": {"a": ((650, 1080, 2650, 2900, 3250), (0, -6, -7, -8, -22), (80, 90, 120, 130, 140)),
              "e": ((400, 1700, 2600, 3200, 3580), (0, -14, -12, -14, -20), (70, 80, 100, 120, 120)),
              "i": ((290, 1870, 2800, 3250, 3540), (0, -15, -18, -20, -30), (40, 90, 100, 120, 120)),
              "o": ((400, 800, 2600, 2800, 3000), (0, -10, -12, -12, -26), (40, 80, 100, 120, 120)),
              "u": ((350, 600, 2700, 2900, 3300), (0, -20, -17, -14, -26), (40, 60, 100, 120, 120))},
    "bass": {"a": ((600, 1040, 2250, 2450, 2750), (0, -7, -9, -9, -20), (60, 70, 110, 120, 130)),
             "e": ((400, 1620, 2400, 2800, 3100), (0, -12, -9, -12, -18), (40, 80, 100, 120, 120)),
             "i": ((250, 1750, 2600, 3050, 3340), (0, -30, -16, -22, -28), (60, 90, 100, 120, 120)),
             "o": ((400, 750, 2400, 2600, 2900), (0, -11, -21, -20, -40), (40, 80, 100, 120, 120)),
             "u": ((350, 600, 2400, 2675, 2950), (0, -20, -32, -28, -36), (40, 80, 100, 120, 120))},
}
# Usual sung range (MIDI) of each voice type; the register decides how the formants follow f0.
VOICE_RANGE = {"bass": (40, 64), "tenor": (48, 72), "countertenor": (55, 76), "alto": (53, 77), "soprano": (60, 84)}

Formants = tuple[tuple[float, float, float], ...]  # (Hz, dB, bandwidth Hz) per formant


def vowel_formants(voice_type: str, vowel: str) -> Formants:
    """The table's five (Hz, dB, bandwidth) formants of ``vowel`` sung by ``voice_type``."""
    hz, db, bw = _TABLE[voice_type][vowel]
    return tuple(zip(map(float, hz), map(float, db), map(float, bw)))


@dataclass(frozen=True)
class VoiceTimbre:
    """Everything that makes one source-filter instrument sound like itself."""

    recipe: str
    family: str
    path: tuple[Formants, ...]                 # formant sets the note moves through (>= 1)
    path_times: tuple[float, ...] = (0.0,)     # when each set is reached, in fractions of the held part
    source: str = "glottal"                    # glottal | saw | pulse
    open_quotient: float = 0.6                 # glottal: open phase / period (higher: breathier, darker)
    speed_quotient: float = 2.5                # glottal: opening / closing time (higher: brighter)
    pulse_width: float = 0.5                   # pulse source: duty cycle
    formant_scale: float = 1.0                 # vocal-tract length: all formants x this
    track_f0: bool = True                      # F1 follows f0 upwards at high notes (as singers do)
    shift_lfo_hz: float = 0.0                  # formants swept by an LFO (wah, talk-box)
    shift_lfo_octaves: float = 0.0
    breath: float = 0.05                       # aspiration noise RMS relative to the voiced part
    jitter: float = 0.004                      # f0 perturbation, relative standard deviation
    shimmer_db: float = 0.4                    # level perturbation, standard deviation
    vibrato_hz: float = 5.5
    vibrato_cents: float = 30.0
    vibrato_delay_s: float = 0.2
    voices: int = 1                            # a choir / unison: voices with their own detune and vibrato
    detune_cents: float = 0.0                  # spread of the voices' tuning (standard deviation)
    voice_spread: float = 0.03                 # spread of the voices' formant scales (relative)
    attack_s: float = 0.08
    decay_s: float = 0.4
    sustain: float = 1.0
    release_s: float = 0.2
    velocity_brightness: float = 0.5           # loud notes: more closed glottis, brighter
    seed: int = 0


def glottal_harmonics(open_quotient: float, speed_quotient: float, n: int) -> np.ndarray:
    """Magnitudes of harmonics 1..n of a Rosenberg pulse's derivative, ``[n]`` (max 1)."""
    points = 4096
    t = np.arange(points) / points
    t_open = open_quotient * speed_quotient / (1 + speed_quotient)
    t_close = open_quotient / (1 + speed_quotient)
    flow = np.where(t < t_open, 0.5 * (1 - np.cos(np.pi * t / t_open)),
                    np.where(t < t_open + t_close, np.cos(0.5 * np.pi * (t - t_open) / t_close), 0.0))
    spec = np.abs(np.fft.rfft(flow))[1:n + 1] * np.arange(1, n + 1)  # d/dt: x k
    return spec / spec.max()


def _source(tb: VoiceTimbre, n: int, bright: float) -> np.ndarray:
    k = np.arange(1, n + 1)
    if tb.source == "saw":
        return 1.0 / k ** (1.0 / bright)
    if tb.source == "pulse":
        return (np.abs(np.sin(np.pi * k * tb.pulse_width)) + 0.05) / k ** (1.0 / bright)
    oq = float(np.clip(tb.open_quotient / bright, 0.3, 0.95))  # loud: shorter open phase, brighter
    return glottal_harmonics(oq, tb.speed_quotient * bright, n)


def _formant_track(tb: VoiceTimbre, n_ctl: int, hold_ctl: int, ctl_rate: float, rng) -> np.ndarray:
    """Formants along the note, ``[n_ctl, F, 3]`` (Hz, linear gain, bandwidth Hz)."""
    path = np.array(tb.path, np.float64)                       # [P, F, 3]
    times = np.asarray(tb.path_times) * max(hold_ctl, 1)
    c = np.arange(n_ctl)
    track = np.empty((n_ctl, *path.shape[1:]))
    for f in range(path.shape[1]):
        track[:, f, 0] = np.exp(np.interp(c, times, np.log(path[:, f, 0])))
        track[:, f, 1] = np.interp(c, times, path[:, f, 1])
        track[:, f, 2] = np.interp(c, times, path[:, f, 2])
    scale = tb.formant_scale * np.ones(n_ctl)
    if tb.shift_lfo_octaves:
        phase = rng.uniform(0, 2 * np.pi)
        scale = scale * 2.0 ** (tb.shift_lfo_octaves * np.sin(2 * np.pi * tb.shift_lfo_hz * c / ctl_rate + phase))
    track[:, :, 0] *= scale[:, None]
    track[:, :, 2] *= np.sqrt(scale)[:, None]
    # Levels in dB -> gain, raised 6 dB/octave above F1 (the table's levels contain a source slope).
    tilt = np.maximum(track[:, :, 0] / track[:, :1, 0], 1.0)
    track[:, :, 1] = 10.0 ** (track[:, :, 1] / 20.0) * tilt
    return track


def formant_gain(freqs: np.ndarray, track: np.ndarray) -> np.ndarray:
    """Parallel band-pass formants at ``freqs`` ``[K, C]`` for formants ``[C, F, 3]`` -> ``[K, C]``."""
    f = np.maximum(freqs[:, :, None], 1.0)                            # [K, C, 1]
    hz, gain, bw = track[None, :, :, 0], track[None, :, :, 1], track[None, :, :, 2]
    q = hz / bw
    return (gain / np.sqrt(1.0 + q ** 2 * (f / hz - hz / f) ** 2)).sum(axis=2)


def _lowpass_noise(rng, n: int, cutoff_frames: float) -> np.ndarray:
    """Unit-variance noise ``[n]`` low-passed to about 1/``cutoff_frames`` of the frame rate."""
    spec = np.fft.rfft(rng.standard_normal(n))
    spec *= 1.0 / (1.0 + (np.arange(len(spec)) / max(n / cutoff_frames, 1.0)) ** 2)
    out = np.fft.irfft(spec, n)
    return out / (out.std() + 1e-12)


def _voice_partials(tb: VoiceTimbre, f0: float, track: np.ndarray, bright: float, n: int, sr: int,
                    rng, voice: int) -> np.ndarray:
    """One voice of the ensemble, ``[n]`` samples."""
    n_ctl = track.shape[0]
    t_ctl = np.arange(n_ctl) * CONTROL_HOP / sr
    detune = tb.detune_cents * rng.standard_normal() if tb.voices > 1 else 0.0
    vib_hz = tb.vibrato_hz * rng.uniform(0.92, 1.08)
    fade = np.clip((t_ctl - tb.vibrato_delay_s) / 0.3, 0.0, 1.0)
    cents = detune + tb.vibrato_cents * fade * np.sin(2 * np.pi * vib_hz * t_ctl + rng.uniform(0, 2 * np.pi))
    cents = cents + 1200 * np.log2(1 + tb.jitter * _lowpass_noise(rng, n_ctl, 4.0))
    f0_ctl = f0 * 2.0 ** (cents / 1200)                                 # [C]
    k_max = int(min(MAX_PARTIALS, NYQUIST_GUARD * sr / f0_ctl.max()))
    if k_max < 1:
        return np.zeros(n)
    k = np.arange(1, k_max + 1)
    scale = 1.0 + tb.voice_spread * rng.standard_normal() if tb.voices > 1 else 1.0
    voice_track = track.copy()
    voice_track[:, :, 0] *= scale
    amp = _source(tb, k_max, bright)[:, None] * formant_gain(k[:, None] * f0_ctl[None, :], voice_track)
    shimmer = 10.0 ** (tb.shimmer_db * _lowpass_noise(rng, n_ctl, 4.0) / 20.0)
    amp = amp * shimmer[None, :]                                         # [K, C]
    # Harmonic k is Im(e^(i phi_k) z^k), z = e^(2 pi i cycles): each power from the last by one
    # complex product (float32 drift over 96 products ~1e-5 rad), no K x T sines; amplitudes move
    # linearly within each control block of CONTROL_HOP samples.
    n_blocks = n_ctl - 1
    pos = np.arange(n_blocks * CONTROL_HOP) / CONTROL_HOP
    cycles = np.cumsum(np.interp(pos, np.arange(n_ctl), f0_ctl)) / sr   # fundamental's phase, in cycles
    z = np.exp(2j * np.pi * (cycles % 1.0)).astype(np.complex64)
    offsets = np.exp(2j * np.pi * rng.uniform(0, 1, k_max)).astype(np.complex64)
    ramp = (np.arange(CONTROL_HOP) / CONTROL_HOP).astype(np.float32)[None, :]
    amp32 = amp.astype(np.float32)
    out = np.zeros((n_blocks, CONTROL_HOP), np.float32)
    zk = np.ones_like(z)
    for j in range(k_max):
        zk *= z
        a = amp32[j, :n_blocks, None] + (amp32[j, 1:, None] - amp32[j, :n_blocks, None]) * ramp  # [blocks, hop]
        out += a * (zk * offsets[j]).imag.reshape(n_blocks, CONTROL_HOP)
    return out.reshape(-1)[:n].astype(np.float64)


def _breath(track: np.ndarray, n: int, sr: int, rng) -> np.ndarray:
    """Aspiration noise shaped by the formants frame by frame (windowed overlap-add), unit RMS."""
    n_fft, hop = 512, 128
    n_frames = n // hop + 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    ctl = np.minimum(np.arange(n_frames) * hop // CONTROL_HOP, track.shape[0] - 1)
    shape = formant_gain(np.broadcast_to(freqs[:, None], (len(freqs), n_frames)), track[ctl])  # [bins, frames]
    shape = shape * (freqs / (freqs + 1000.0))[:, None]                  # aspiration is weak below ~1 kHz
    spec = (rng.standard_normal(shape.shape) + 1j * rng.standard_normal(shape.shape)) * shape
    frames = np.fft.irfft(spec, n_fft, axis=0) * np.hanning(n_fft)[:, None]  # [n_fft, frames]
    out = np.zeros((n_frames + 3) * hop)
    for j in range(n_fft // hop):  # overlap-add as 4 strided sums (no per-frame loop)
        seg = frames[j * hop:(j + 1) * hop].T.reshape(-1)
        out[j * hop: j * hop + len(seg)] += seg
    out = out[n_fft // 2: n_fft // 2 + n]
    return out / (np.sqrt(np.mean(out ** 2)) + 1e-12)


def _envelope(tb: VoiceTimbre, t: np.ndarray, hold_s: float) -> np.ndarray:
    env = np.clip(t / max(tb.attack_s, 1e-3), 0.0, 1.0)
    env = env * (tb.sustain + (1.0 - tb.sustain) * np.exp(-np.maximum(t - tb.attack_s, 0) / tb.decay_s))
    return env * np.exp(-np.maximum(t - hold_s, 0.0) / max(tb.release_s, 1e-3))


def render_voice(tb: VoiceTimbre, midi: int, velocity: int, timing: NoteTiming, rng) -> np.ndarray:
    """One note -> float32 ``[timing.num_samples]``, peak 1."""
    sr, n = timing.sample_rate, timing.num_samples
    f0 = midi_to_hz(midi)
    bright = 2.0 ** (tb.velocity_brightness * (velocity / 127.0 - 0.75))
    n_ctl = n // CONTROL_HOP + 2
    track = _formant_track(tb, n_ctl, timing.hold_samples // CONTROL_HOP, sr / CONTROL_HOP, rng)
    if tb.track_f0:
        # Sopranos raise F1 to the fundamental on high notes rather than let it fall between harmonics.
        track[:, 0, 0] = np.maximum(track[:, 0, 0], 1.1 * f0)
    wave = sum(_voice_partials(tb, f0, track, bright, n, sr, rng, v) for v in range(tb.voices))
    if tb.breath:
        rms = np.sqrt(np.mean(wave ** 2)) + 1e-12
        wave = wave + tb.breath / bright * rms * _breath(track, n, sr, rng)
    t = np.arange(n) / sr
    wave = wave * _envelope(tb, t, timing.hold_samples / sr)
    peak = np.abs(wave).max()
    return (wave / peak if peak > 0 else wave).astype(np.float32)
