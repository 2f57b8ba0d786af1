"""The key cache as the audio callback reads it: per MIDI note, the samples to play and how fast."""
from __future__ import annotations

import sys
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from engine.key_cache import PLAIN, KeySample, VariantKey, Variations


@dataclass(frozen=True)
class KeyBank:
    """The key cache as the callback reads it: for each MIDI note 0..127, what to play and how fast.

    ``entries[note]`` is ``(samples, step, loop_start, loop_len, loop_end, last_index)`` (numbers as
    Python floats, ready for the callback) or None when nothing is rendered. A note without its own
    KeySample uses the nearest rendered key (``nearest_key``), stepped by the semitone ratio.
    ``sources`` keeps each rendered key with its finite-checked samples, so rebuilding the bank as
    keys land one by one checks each key once.

    With variations, ``layers[note]`` is a tuple over velocity layers of tuples over round robins of
    such entries (the same key as ``entries[note]``; a variant not rendered yet is left out, and a
    layer with none plays the main sample), ``layer_of[velocity]`` names the layer a note-on
    plays, and ``blend[velocity]`` the two layers a velocity cross-fade plays and the upper one's
    share (``Variations.layer_blend``); without, ``layers[note]`` is None. Both tables depend on
    ``variations`` alone and are the previous bank's when it had the same (computing them was a
    third of a rebuild).
    """

    entries: tuple
    sources: dict
    layers: tuple = (None,) * 128
    layer_of: tuple = (0,) * 128
    variant_sources: dict | None = None
    blend: tuple = ((0, 0, 0.0),) * 128
    variations: Variations = PLAIN

    @property
    def rendered(self) -> frozenset:
        return frozenset(self.sources)

    @classmethod
    def build(cls, keys: dict[int, KeySample], out_rate: int, previous: "KeyBank | None" = None,
              variants: Mapping[VariantKey, KeySample] | None = None, variations: Variations = PLAIN) -> "KeyBank":
        keys = {k: ks for k, ks in keys.items() if 0 <= k <= 127}
        sources = _checked(keys, previous.sources if previous is not None else {})
        clean = {id(ks): samples for ks, samples in sources.values()}
        variants = {k: ks for k, ks in (variants or {}).items() if k[0] in keys}
        old = previous.variant_sources if previous is not None and previous.variant_sources else {}
        variant_sources = _checked(variants, old)
        clean.update({id(ks): samples for ks, samples in variant_sources.values()})
        entries, layers = [], []
        main_layer = variations.main_layer
        for note, midi in enumerate(_nearest_keys(sorted(keys))):
            entry = None if midi is None else _entry(keys[midi], clean, note, out_rate)
            entries.append(entry)
            plain = variations.count == 1 or midi is None
            layers.append(None if plain else
                          _layers(midi, entry, variants, variations, main_layer, clean, note, out_rate))
        if previous is not None and previous.variations == variations:
            layer_of, blend = previous.layer_of, previous.blend
        else:
            layer_of, blend = _layer_table(variations), tuple(variations.layer_blend(v) for v in range(128))
        return cls(tuple(entries), sources, tuple(layers), layer_of, variant_sources, blend, variations)


def _checked(keys: Mapping, old: Mapping) -> dict:
    """``{name: (KeySample, finite samples)}``, reusing ``old``'s check of the same KeySample."""
    return {k: old[k] if k in old and old[k][0] is ks else (ks, _finite(ks.samples)) for k, ks in keys.items()}


def _entry(ks: KeySample, clean: dict, note: int, out_rate: int) -> tuple:
    step = 2.0 ** ((note - ks.root_note) / 12.0) * ks.sample_rate / out_rate
    return (clean[id(ks)], float(step), float(ks.loop_start), float(ks.loop_end - ks.loop_start),
            float(ks.loop_end), float(len(ks.samples) - 1))


def _nearest_keys(rendered: list[int]) -> list[int | None]:
    """For each MIDI note 0..127, the ``rendered`` (sorted) key closest to it (ties: the lower key), as
    ``nearest_key`` picks; all None when nothing is rendered.

    A bisection per note, not a search of every key: the bank is rebuilt on the GUI thread as each
    key lands, and every millisecond of Python there is one the audio thread may wait for the GIL.
    """
    if not rendered:
        return [None] * 128
    out = []
    for note in range(128):
        i = bisect_left(rendered, note)
        below = rendered[i - 1] if i > 0 else None
        above = rendered[i] if i < len(rendered) else None
        out.append(below if above is None or (below is not None and note - below <= above - note) else above)
    return out


def _layer_table(variations: Variations) -> tuple[int, ...]:
    """The velocity layer of each note-on velocity 0..127 (``Variations.layer_of``, by bisection)."""
    tops = [variations.layer_range(layer)[1] for layer in range(variations.velocity_layers)]
    return tuple(bisect_left(tops, max(v, 1)) for v in range(128))


def _layers(midi: int, main_entry: tuple, variants: Mapping[VariantKey, KeySample], variations: Variations,
            main_layer: int, clean: dict, note: int, out_rate: int) -> tuple:
    """Per layer, the round-robin entries of key ``midi`` played at ``note`` (see :class:`KeyBank`)."""
    out = []
    for layer in range(variations.velocity_layers):
        row = []
        for rr in range(variations.round_robins):
            if layer == main_layer and rr == 0:
                row.append(main_entry)
                continue
            ks = variants.get((midi, layer, rr))
            if ks is not None:
                row.append(_entry(ks, clean, note, out_rate))
        out.append(tuple(row) if row else (main_entry,))
    return tuple(out)


def _finite(samples: np.ndarray) -> np.ndarray:
    """``samples`` with NaN/inf zeroed (copied only when needed): the callback must stay finite."""
    return samples if np.isfinite(samples).all() else np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)


class RetiredSamples:
    """Sample arrays a bank swap let go of, freed a few at a time once nothing else holds them.

    Freeing is work under the GIL (numpy's dealloc, the allocator returning pages to the OS): the
    352 arrays of an instrument with 2 x 2 variations took 12-38 ms at once on the 2-core dev box,
    all of it time the audio callback may wait for the GIL, and a voice letting go of the last
    reference would free its array inside the callback. Held here, each array is freed by
    ``release`` (a background thread's, at its own pace) once this is its only holder.
    """

    def __init__(self) -> None:
        self._held: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._held)

    def add(self, arrays: Iterable[np.ndarray]) -> None:
        for a in arrays:
            self._held[id(a)] = a

    def release(self, limit: int | None = None) -> int:
        """Free up to ``limit`` (None: all) of the arrays nothing else holds; how many were freed."""
        freed = 0
        for key in list(self._held):
            if limit is not None and freed >= limit:
                break
            a = self._held.get(key)
            # Held by the dict, ``a`` and getrefcount's argument: by nothing else.
            if a is not None and sys.getrefcount(a) <= 3:
                del self._held[key]
                del a
                freed += 1
        return freed


def retired(old: KeyBank, new: KeyBank) -> list[np.ndarray]:
    """The sample arrays ``old`` plays that ``new`` does not (keys and variants replaced or dropped)."""
    gone = [a for k, (_, a) in old.sources.items() if new.sources.get(k, (None, None))[1] is not a]
    if old.variant_sources:
        kept = new.variant_sources or {}
        gone += [a for k, (_, a) in old.variant_sources.items() if kept.get(k, (None, None))[1] is not a]
    return gone
