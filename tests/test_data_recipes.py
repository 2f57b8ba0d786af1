"""The recipes added for timbres the General MIDI fonts lack: voices, formant synths, sweeps, chorus
pads, short hits, bells and metal. Each plays its key (by models.signal.pitch), sounds, and is
deterministic by seed; the vocal source and formant filter behave as their docstrings say."""
from __future__ import annotations

import numpy as np
import pytest

from models.data.families import FAMILIES
from models.data.procedural import render_note
from models.data.recipes import CYCLE, RECIPES, draw_timbre, make_timbre, recipe_of
from models.data.render import NoteTiming
from models.data.voice import VOICE_TYPES, VOWELS, VoiceTimbre, formant_gain, glottal_harmonics, vowel_formants
from models.signal.audio import Audio
from models.signal.pitch import estimate_pitch

TIMING = NoteTiming(16000, 16000)
NEW = [r for r in RECIPES[17:]]


def _draws(name: str, n: int = 2) -> list[int]:
    return [i for i in range(200) if recipe_of(i).name == name][:n]


@pytest.mark.parametrize("recipe", [r for r in NEW if r.pitched], ids=lambda r: r.name)
def test_new_pitched_recipes_play_their_key(recipe):
    for index in _draws(recipe.name):
        tb = make_timbre(index, seed=0)
        for key in (45, 69, 93):
            est = estimate_pitch(Audio(render_note(tb, key, 100, TIMING), 16000))
            assert est.confidence >= 0.5 and abs(est.midi - key) < 0.5, (recipe.name, index, key, est)


@pytest.mark.parametrize("recipe", NEW, ids=lambda r: r.name)
def test_new_recipes_sound_and_are_deterministic_by_seed(recipe):
    index = _draws(recipe.name, 1)[0]
    a = render_note(make_timbre(index, seed=5), 57, 90, TIMING)
    assert a.dtype == np.float32 and a.shape == (TIMING.num_samples,)
    assert np.isclose(np.abs(a).max(), 1.0) and np.sqrt(np.mean(a ** 2)) > 0.01
    assert np.array_equal(a, render_note(make_timbre(index, seed=5), 57, 90, TIMING))
    assert not np.array_equal(a, render_note(make_timbre(index, seed=6), 57, 90, TIMING))
    assert recipe.family in FAMILIES


def test_families_and_pitchedness_of_the_new_recipes():
    by_name = {r.name: r for r in RECIPES}
    assert {by_name[n].family for n in ("voice", "voice_glide", "choir")} == {"vocal"}
    assert by_name["formant_pad"].family == by_name["chorus_pad"].family == "synth_pad"
    assert by_name["fm_bell"].family == by_name["tubular"].family == by_name["mallet_hit"].family == "mallet"
    assert by_name["metal"].family == "percussive" and not by_name["metal"].pitched
    assert all(by_name[n].voice for n in ("voice", "voice_glide", "choir", "formant_lead", "formant_pad"))
    assert isinstance(make_timbre(_draws("choir", 1)[0], 0), VoiceTimbre)
    # The cycle holds each recipe `weight` times; voices get three slots, so a build is ~21 % vocal.
    assert len(CYCLE) == sum(r.weight for r in RECIPES)
    assert sum(r.family == "vocal" for r in CYCLE) == 10


def test_old_recipe_draws_are_unchanged_by_the_cycle():
    # draw_timbre(recipe, i, seed) is what instrument i of the old 17-recipe rotation drew.
    tb = draw_timbre(RECIPES[3], 3, seed=0)
    assert tb.recipe == "brass" and tb == draw_timbre(RECIPES[3], 3, seed=0)


def test_glottal_pulse_spectrum_falls_and_a_longer_open_phase_darkens_it():
    pressed, breathy = glottal_harmonics(0.4, 3.0, 40), glottal_harmonics(0.9, 3.0, 40)
    assert pressed.max() == 1.0 and pressed[30:].mean() < pressed[:5].mean()
    assert breathy[10:].sum() / breathy[:3].sum() < pressed[10:].sum() / pressed[:3].sum()


@pytest.mark.parametrize("voice_type", VOICE_TYPES)
def test_formant_filter_peaks_at_the_table_formants(voice_type):
    for vowel in VOWELS:
        formants = vowel_formants(voice_type, vowel)
        track = np.array([[(hz, 10 ** (db / 20), bw) for hz, db, bw in formants]])   # [1, F, 3]
        freqs = np.arange(100.0, 6000.0, 5.0)
        gain = formant_gain(freqs[:, None], track)[:, 0]
        f1 = freqs[np.argmax(gain)]
        assert abs(f1 - formants[0][0]) < 30, (voice_type, vowel, f1)


def test_a_vowel_glide_moves_the_spectrum_within_the_note():
    a, i = vowel_formants("tenor", "a"), vowel_formants("tenor", "i")
    tb = VoiceTimbre("voice_glide", "vocal", path=(a, i), path_times=(0.0, 1.0), vibrato_cents=0.0, jitter=0.0,
                     shimmer_db=0.0, breath=0.0)
    x = render_note(tb, 48, 100, TIMING)
    seg = TIMING.hold_samples // 4
    early, late = (np.abs(np.fft.rfft(x[k * seg: k * seg + 2048] * np.hanning(2048))) for k in (1, 3))
    freqs = np.fft.rfftfreq(2048, 1 / 16000)
    band = (freqs > 1600) & (freqs < 2200)  # /i/'s second formant (1870 Hz); /a/ has none there
    assert late[band].sum() / late.sum() > 2 * early[band].sum() / early.sum()
