"""Units and ranges every layer shares: the piano's keys, pitch in MIDI and Hz, the output rate.

Plain Python (no torch, no numpy), so the app, the engine, the networks and the data tools can all
import it. ``midi_to_hz`` and ``hz_to_midi`` are plain arithmetic: they work on floats, NumPy arrays
and torch tensors alike (pass a float64 tensor where the precision matters).
"""
from __future__ import annotations

import math

LOWEST_KEY = 21                       # A0, the piano's lowest key (MIDI)
HIGHEST_KEY = 108                     # C8, its highest
ALL_KEYS = range(LOWEST_KEY, HIGHEST_KEY + 1)
N_KEYS = len(ALL_KEYS)                # 88: the classes of every pitch head
A4_MIDI, A4_HZ = 69.0, 440.0          # concert pitch

# Keys are stored at the audio device's rate; this is the rate used until a device says otherwise
# (and the default rate of exported packs).
OUTPUT_SAMPLE_RATE = 48000


def midi_to_hz(midi):
    """Frequency in Hz of a (fractional) MIDI note: 69 -> 440.0."""
    return A4_HZ * 2.0 ** ((midi - A4_MIDI) / 12.0)


def hz_to_midi(hz: float) -> float:
    """Fractional MIDI note of a frequency in Hz: 440.0 -> 69.0."""
    return A4_MIDI + 12.0 * math.log2(hz / A4_HZ)


def clamp_key(midi: float) -> int:
    """The piano key nearest a fractional MIDI note, within ``LOWEST_KEY..HIGHEST_KEY``."""
    return int(min(max(round(midi), LOWEST_KEY), HIGHEST_KEY))
