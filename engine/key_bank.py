"""The key cache as the audio callback reads it: per MIDI note, the samples to play and how fast."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.key_cache import KeySample, nearest_key


@dataclass(frozen=True)
class KeyBank:
    """The key cache as the callback reads it: for each MIDI note 0..127, what to play and how fast.

    ``entries[note]`` is ``(samples, step, loop_start, loop_len, loop_end, last_index)`` (numbers as
    Python floats, ready for the callback) or None when nothing is rendered. A note without its own
    KeySample uses the nearest rendered key (``nearest_key``), stepped by the semitone ratio.
    ``sources`` keeps each rendered key with its finite-checked samples, so rebuilding the bank as
    keys land one by one checks each key once.
    """

    entries: tuple
    sources: dict

    @property
    def rendered(self) -> frozenset:
        return frozenset(self.sources)

    @classmethod
    def build(cls, keys: dict[int, KeySample], out_rate: int, previous: "KeyBank | None" = None) -> "KeyBank":
        keys = {k: ks for k, ks in keys.items() if 0 <= k <= 127}
        old = previous.sources if previous is not None else {}
        sources = {k: old[k] if k in old and old[k][0] is ks else (ks, _finite(ks.samples)) for k, ks in keys.items()}
        clean = {id(ks): samples for ks, samples in sources.values()}
        entries = []
        for note in range(128):
            ks = nearest_key(keys, note)
            if ks is None:
                entries.append(None)
                continue
            step = 2.0 ** ((note - ks.root_note) / 12.0) * ks.sample_rate / out_rate
            entries.append((clean[id(ks)], float(step), float(ks.loop_start), float(ks.loop_end - ks.loop_start),
                            float(ks.loop_end), float(len(ks.samples) - 1)))
        return cls(tuple(entries), sources)


def _finite(samples: np.ndarray) -> np.ndarray:
    """``samples`` with NaN/inf zeroed (copied only when needed): the callback must stay finite."""
    return samples if np.isfinite(samples).all() else np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
