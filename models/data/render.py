"""Offline note rendering from SoundFonts with tinysoundfont (no audio device, no fluidsynth needed).

A note is held for ``NoteTiming.hold_samples`` then released, and the clip is cut at
``num_samples`` so that attack, sustain and release all fit in one training clip.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.data.soundfont import FontError, Preset


@dataclass(frozen=True)
class NoteTiming:
    """Where the note-off falls inside a clip of ``num_samples`` at ``sample_rate``."""

    sample_rate: int
    num_samples: int
    hold_fraction: float = 0.75

    @property
    def hold_samples(self) -> int:
        return int(round(self.num_samples * self.hold_fraction))


def distinct_velocities(preset: Preset, key: int, velocities: tuple[int, ...]) -> list[int]:
    """The velocities of ``velocities`` that select a new set of zones for ``key``.

    tinysoundfont maps velocity to gain only (no velocity->filter modulator), so two velocities that
    trigger the same samples give identical notes after peak normalisation; rendering both would
    only duplicate data. The highest velocity of each distinct zone set is kept.
    """
    chosen: dict[frozenset, int] = {}
    for v in sorted(velocities, reverse=True):
        zones = frozenset(z for z in preset.zones if z.key_lo <= key <= z.key_hi and z.vel_lo <= v <= z.vel_hi)
        if zones and zones not in chosen:
            chosen[zones] = v
    return sorted(chosen.values())


class FontRenderer:
    """One loaded font, rendering single notes of any of its presets. Load once per process."""

    def __init__(self, font_path: str, timing: NoteTiming) -> None:
        try:
            import tinysoundfont  # imported here: only a build needs the renderer
        except ImportError as exc:
            raise FontError("rendering SoundFonts needs the 'tinysoundfont' package "
                            "(pip install --no-deps tinysoundfont)") from exc
        self.font_path = font_path
        self.timing = timing
        self._synth = tinysoundfont.Synth(samplerate=timing.sample_rate)
        try:
            self._sfid = self._synth.sfload(font_path)
        except Exception as exc:  # the extension raises plain RuntimeError/ValueError on bad data
            raise FontError(f"{font_path}: the renderer could not load this font ({exc})") from exc

    def _generate(self, n: int) -> np.ndarray:
        """``n`` mono float32 samples (the stereo output averaged)."""
        stereo = np.frombuffer(self._synth.generate(n), dtype=np.float32)
        return stereo.reshape(n, 2).mean(axis=1)

    def _silence(self) -> None:
        """Cut every voice and run the synth until its output is exactly zero."""
        self._synth.sounds_off()
        for _ in range(64):
            if not np.any(self._generate(512)):
                return

    def note(self, bank: int, program: int, key: int, velocity: int) -> np.ndarray:
        """Render one note of preset ``bank:program`` -> float32 ``[num_samples]`` (not normalised)."""
        t = self.timing
        self._silence()
        self._synth.program_select(0, self._sfid, bank, program)
        self._synth.noteon(0, key, velocity)
        held = self._generate(t.hold_samples)
        self._synth.noteoff(0, key)
        released = self._generate(t.num_samples - t.hold_samples)
        return np.concatenate([held, released])
