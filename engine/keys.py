"""From inverted waves to playable keys: render order, loudness matching, fades and loops."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from engine.key_cache import KeySample
from engine.loops import LoopConfig, make_loop
from models.signal.audio import Audio
from models.units import midi_to_hz

MAX_NEAR_ROOT = 24   # the most semitones around a root that may play the sound itself (Engine.render's near_root)


@dataclass(frozen=True)
class KeyConfig:
    """How a rendered wave becomes a key: level, fades and loop."""

    loudness_db: float = -20.0   # every key's gated RMS level (dBFS), so keys match across the keyboard
    ceiling_db: float = -1.0     # no sample peak above this, even if the key then ends up quieter
    max_gain_db: float = 40.0    # a near-silent render is not blown up into noise
    fade_in_s: float = 0.0015    # removes a click if the render starts off zero
    fade_out_s: float = 0.05     # the sample's last moments, after the loop
    loop: LoopConfig = field(default_factory=LoopConfig)


def progressive_order(keys: Iterable[int], center: int) -> list[int]:
    """``keys`` sorted nearest ``center`` first (ties: the upper neighbour first)."""
    return sorted(set(int(k) for k in keys), key=lambda k: (abs(k - center), k < center))


def batches(keys: list[int], max_batch: int, first: int = 1) -> Iterator[list[int]]:
    """Split ``keys`` into batches of 1, 2, 4, ... up to ``max_batch``: the first key lands quickly."""
    size, i = max(1, min(first, max_batch)), 0
    while i < len(keys):
        yield keys[i: i + size]
        i += size
        size = min(2 * size, max_batch)


def loudness_db(audio: Audio, gate_db: float = -20.0) -> float:
    """Gated RMS level in dBFS of mono ``audio``: mean power of the 20 ms frames within ``gate_db`` of
    the loudest frame.

    Unweighted (no K-filter): a steady estimate of the body of a note that ignores its silent tail.
    """
    samples = audio.samples
    frame = max(1, int(0.02 * audio.sample_rate))
    n = len(samples) // frame
    if n == 0:
        power = np.mean(np.square(samples, dtype=np.float64), keepdims=True)
    else:
        power = np.mean(np.square(samples[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    loudest = power.max()
    if loudest <= 1e-12:
        return -120.0
    gated = power[power >= loudest * 10 ** (gate_db / 10)]
    return float(10 * np.log10(gated.mean()))


def match_loudness(audio: Audio, cfg: KeyConfig) -> Audio:
    """Scaled to ``cfg.loudness_db`` without peaks above ``cfg.ceiling_db`` (new samples)."""
    samples = audio.samples
    level = loudness_db(audio)
    peak = float(np.abs(samples).max()) if len(samples) else 0.0
    if peak <= 1e-9:
        return Audio(samples.astype(np.float32, copy=True), audio.sample_rate)
    gain = min(10 ** ((cfg.loudness_db - level) / 20), 10 ** (cfg.max_gain_db / 20),
               10 ** (cfg.ceiling_db / 20) / peak)
    return Audio((samples * gain).astype(np.float32), audio.sample_rate)


def apply_fades(audio: Audio, cfg: KeyConfig) -> Audio:
    """Raised-cosine fade-in and fade-out (new samples)."""
    y = np.array(audio.samples, dtype=np.float32)
    n_in = min(len(y) // 4, int(cfg.fade_in_s * audio.sample_rate))
    n_out = min(len(y) // 4, int(cfg.fade_out_s * audio.sample_rate))
    if n_in > 0:
        y[:n_in] *= np.sin(0.5 * np.pi * np.arange(n_in) / n_in) ** 2
    if n_out > 0:
        y[-n_out:] *= np.cos(0.5 * np.pi * (np.arange(n_out) + 1) / n_out) ** 2
    return Audio(y, audio.sample_rate)


def finish_key(wave: Audio, midi_note: int, cfg: KeyConfig = KeyConfig()) -> KeySample:
    """One inverted mono wave at the output rate -> a level-matched, looped, faded :class:`KeySample`."""
    looped, loop_start, loop_end = make_loop(wave, midi_to_hz(midi_note), cfg.loop)
    levelled = match_loudness(looped, cfg)   # after the loop's levelling, so the ceiling holds
    key = apply_fades(levelled, cfg)
    return KeySample(samples=key.samples, sample_rate=key.sample_rate, root_note=int(midi_note),
                     loop_start=loop_start, loop_end=loop_end)
