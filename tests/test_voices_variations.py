"""Velocity layers and round robins in the voice mixer: which sample a note-on plays."""
from __future__ import annotations

import numpy as np
import pytest

from engine.key_bank import KeyBank
from engine.key_cache import PLAIN, Variations
from models.errors import UserError
from tests.test_voices import BLOCK, SR, callback_allocation, busy_feed, make_mixer, pull, sine_key

AMPS = {(0, 0): 0.1, (0, 1): 0.15, (1, 0): 0.2, (1, 1): 0.25, (2, 0): 0.3, (2, 1): 0.35}
VARIATIONS = Variations(round_robins=2, velocity_layers=3)


def layered_keys(notes=(60,), variations: Variations = VARIATIONS) -> tuple[dict, dict]:
    """Main keys and variants whose amplitude names them (``AMPS``)."""
    keys = {n: sine_key(n, amplitude=AMPS[(variations.main_layer, 0)]) for n in notes}
    variants = {(n, layer, rr): sine_key(n, amplitude=AMPS[(layer, rr)]) for n in notes
                for layer, rr in variations.passes()}
    return keys, variants


def played(mixer, note: int, velocity: int) -> float:
    """The sample amplitude one note-on plays, with the velocity gain taken out."""
    q = mixer.queue(0)
    q.note_on(note, velocity)
    block = pull(mixer, 6)
    q.note_off(note)
    pull(mixer, 8)
    return float(np.abs(block[-BLOCK:]).max()) / (velocity / 127.0) ** 2


def test_layers_split_velocity_and_round_robins_cycle_per_note() -> None:
    mixer = make_mixer(velocity_crossfade=False)
    keys, variants = layered_keys((60, 64))
    mixer.set_keys(keys, variants, VARIATIONS)
    assert [played(mixer, 60, 120) for _ in range(3)] == pytest.approx([0.3, 0.35, 0.3], abs=1e-3)
    assert played(mixer, 64, 120) == pytest.approx(0.3, abs=1e-3)     # its own cycle
    # The cycle is per note, whatever the layer: the next note-on on 60 is round robin 1.
    assert [played(mixer, 60, 30) for _ in range(2)] == pytest.approx([0.15, 0.1], abs=1e-3)
    assert played(mixer, 60, 64) == pytest.approx(0.25, abs=1e-3)
    assert mixer.errors == 0


def test_layer_of_velocity_and_ranges() -> None:
    v = Variations(velocity_layers=3)
    assert [v.layer_range(layer) for layer in range(3)] == [(1, 42), (43, 84), (85, 127)]
    assert (v.layer_of(0), v.layer_of(42), v.layer_of(43), v.layer_of(127)) == (0, 0, 1, 2)
    assert v.main_layer == 2 and v.layer_velocity(0) == 22 and v.layer_velocity(2) == 100
    assert [v.layer_blend(x) for x in (0, 22, 43, 64, 82, 100, 127)] == [
        (0, 0, 0.0), (0, 1, 0.0), (0, 1, 0.5), (1, 2, 0.0), (1, 2, 0.5), (2, 2, 0.0), (2, 2, 0.0)]
    assert Variations(velocity_layers=1).layer_blend(64) == (0, 0, 0.0)
    assert (1, 0) == v.passes()[0] and (2, 0) not in v.passes() and len(v.passes()) == v.count - 1
    with pytest.raises(UserError):
        Variations(round_robins=9)
    with pytest.raises(UserError):
        Variations(velocity_layers=6)


def test_missing_variants_fall_back_and_missing_keys_use_the_nearest_layers() -> None:
    keys, variants = layered_keys((60,))
    partial = {k: ks for k, ks in variants.items() if k[1] == 0}
    bank = KeyBank.build(keys, SR, variants=partial, variations=VARIATIONS)
    assert len(bank.layers[60][0]) == 2 and len(bank.layers[60][2]) == 1    # main only, no rr 1 yet
    assert bank.layers[60][1][0] is bank.entries[60]                          # an empty layer plays the main
    assert bank.layers[62][0][1][1] == pytest.approx(2 ** (2 / 12))            # a neighbour, stepped
    assert KeyBank.build(keys, SR).layers[60] is None and KeyBank.build(keys, SR, variations=PLAIN).layer_of[0] == 0


def test_a_rebuild_keeps_the_velocity_tables_of_the_same_variations() -> None:
    keys, variants = layered_keys((60, 64))
    bank = KeyBank.build(keys, SR, variants=variants, variations=VARIATIONS)
    grown = KeyBank.build({**keys, 67: sine_key(67)}, SR, bank, variants, VARIATIONS)
    assert grown.blend is bank.blend and grown.layer_of is bank.layer_of
    other = Variations(round_robins=2, velocity_layers=2)
    changed = KeyBank.build(keys, SR, grown, variants, other)
    assert changed.blend == tuple(other.layer_blend(v) for v in range(128))
    assert changed.layer_of == tuple(other.layer_of(v) for v in range(128))


def test_velocity_crossfade_blends_the_two_nearest_layers_on_two_voices() -> None:
    mixer = make_mixer()
    keys, variants = layered_keys((60,))
    mixer.set_keys(keys, variants, VARIATIONS)
    # Render velocities 22, 64, 100: 43 is half layer 0, half layer 1, the same round robin in both.
    assert played(mixer, 60, 43) == pytest.approx(0.5 * 0.1 + 0.5 * 0.2, abs=1e-3)
    assert played(mixer, 60, 43) == pytest.approx(0.5 * 0.15 + 0.5 * 0.25, abs=1e-3)
    assert played(mixer, 60, 91) == pytest.approx(0.25 * 0.2 + 0.75 * 0.3, abs=1e-3)   # rr 0 again
    assert played(mixer, 60, 120) == pytest.approx(0.35, abs=1e-3)                       # above 100: one layer
    q = mixer.queue(0)
    q.note_on(60, 43)
    pull(mixer, 2)
    assert mixer.active_notes() == [60, 60]
    q.note_off(60)
    pull(mixer, 8)
    assert mixer.active_notes() == [] and mixer.errors == 0
    mixer.set_keys(keys, {}, VARIATIONS)            # no variants yet: both layers are the main, one voice
    q.note_on(60, 43)
    pull(mixer, 2)
    assert mixer.active_notes() == [60]


def test_random_round_robins_never_repeat_and_cover_every_variant() -> None:
    v = Variations(round_robins=3, velocity_layers=1)
    mixer = make_mixer(random_round_robin=True)
    keys = {60: sine_key(60, amplitude=0.1)}
    variants = {(60, 0, 1): sine_key(60, amplitude=0.2), (60, 0, 2): sine_key(60, amplitude=0.3)}
    mixer.set_keys(keys, variants, v)
    got = [round(played(mixer, 60, 127), 2) for _ in range(12)]
    assert all(a != b for a, b in zip(got, got[1:]))
    assert set(got) == {0.1, 0.2, 0.3}


@pytest.mark.parametrize("crossfade", [False, True])
def test_callback_with_variations_allocates_no_buffers(crossfade: bool) -> None:
    v = Variations(round_robins=3, velocity_layers=3)
    mixer = make_mixer(random_round_robin=True, velocity_crossfade=crossfade)
    notes = range(21, 109, 4)
    keys = {n: sine_key(n, loop=(4800, 4800 + 100 * (1 + n % 5))) for n in notes}
    variants = {(n, layer, rr): sine_key(n, amplitude=0.3) for n in notes for layer, rr in v.passes()}
    mixer.set_keys(keys, variants, v)
    busy, q = busy_feed(mixer), mixer.queue(0)

    def feed(i: int) -> None:   # and notes at every velocity, cross-fades stealing voices
        busy(i)
        q.note_on(21 + 4 * (i % 22), 1 + (37 * i) % 127)
    net, transient = callback_allocation(mixer, feed, n_blocks=400)
    assert mixer.errors == 0 and net < 1024 and transient < 1024
