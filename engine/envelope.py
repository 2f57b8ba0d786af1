"""The amplitude envelope of a voice: the ADSR a player sets, and the same as per-block steps.

The voice mixer (``engine/voices.py``) moves each voice's level once per audio block through the
stages below; ``BlockRates`` holds the per-block increments, computed off the audio thread.
"""
from __future__ import annotations

from dataclasses import dataclass

# Voice stages.
IDLE, ATTACK, DECAY, SUSTAINING, RELEASE, KILL = 0, 1, 2, 3, 4, 5
SILENT = 1e-3  # -60 dB: an envelope below this is finished


@dataclass(frozen=True)
class Envelope:
    """ADSR: linear attack, exponential decay/release (times to fall 60 dB), sustain level 0..1."""

    attack_s: float = 0.005
    decay_s: float = 1.0
    sustain: float = 0.7
    release_s: float = 0.4


@dataclass(frozen=True)
class BlockRates:
    """An Envelope as per-block increments: attack step, decay / release factors, sustain level."""

    attack_inc: float
    decay_coef: float
    sustain: float
    release_coef: float

    @classmethod
    def build(cls, env: Envelope, block_s: float) -> "BlockRates":
        def t60(seconds: float) -> float:
            return 10.0 ** (-3.0 * block_s / max(seconds, 1e-6))
        # An attack shorter than a block still ramps over one block: no click at note-on.
        return cls(min(1.0, block_s / max(env.attack_s, 1e-6)), t60(env.decay_s),
                   min(max(env.sustain, 0.0), 1.0), t60(env.release_s))
