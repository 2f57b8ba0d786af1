import numpy as np
import pytest

from models.signal.audio import Audio
from models.signal.pitch import PitchEstimate, estimate_pitch
from models.units import hz_to_midi, midi_to_hz
from models.signal.tones import additive_tone, noisy_pluck, plucked_string

SR = 16000
KEYS = range(21, 109)

TIMBRES = {
    "harmonic": lambda m: additive_tone(m, duration_s=0.6),
    "decaying": lambda m: additive_tone(m, duration_s=0.6, decay_s=0.2),
    "pluck": lambda m: plucked_string(m, duration_s=0.5),
    "noisy_attack": lambda m: noisy_pluck(m, duration_s=0.6),
    "sawtooth": lambda m: additive_tone(m, duration_s=0.6, n_harmonics=400),
    "square": lambda m: additive_tone(m, duration_s=0.6, n_harmonics=200, step=2),
    "stretched": lambda m: additive_tone(m, duration_s=0.6, stretch=3e-4, decay_s=0.5),
    # Partials 2, 3, ...: at least three must fit below Nyquist, so keys up to 95 (f0 < 2 kHz).
    "missing_fundamental": lambda m: additive_tone(m, duration_s=0.6, first=2),
}


@pytest.mark.parametrize("name", sorted(TIMBRES))
def test_every_key_within_half_a_semitone(name):
    keys = [k for k in KEYS if name != "missing_fundamental" or k <= 95]
    errors = {}
    for key in keys:
        est = estimate_pitch(Audio(TIMBRES[name](key), SR))
        errors[key] = est.midi - key
        assert est.confidence > 0.8, (key, est)
    wrong = {k: round(e, 2) for k, e in errors.items() if abs(e) > 0.5}
    assert not wrong, wrong


def test_weak_fundamental_is_not_heard_an_octave_up():
    t = np.arange(SR) / SR
    for key in (30, 52, 76):
        f0 = midi_to_hz(key)
        amps = {1: 0.1, 2: 1.0, 3: 0.3, 4: 0.5}  # even partials dominate
        wave = sum(a * np.sin(2 * np.pi * k * f0 * t + k) for k, a in amps.items())
        est = estimate_pitch(Audio((0.5 * wave / np.abs(wave).max()).astype(np.float32), SR))
        assert abs(est.midi - key) < 0.5, (key, est)


def test_noise_in_the_recording_does_not_move_the_pitch():
    rng = np.random.default_rng(3)
    for key in (24, 47, 70, 84, 101):
        wave = plucked_string(key, duration_s=0.6).astype(np.float64)
        wave += 0.1 * np.sqrt(np.mean(wave[: SR // 2] ** 2)) * rng.standard_normal(wave.size)  # 20 dB SNR
        est = estimate_pitch(Audio(wave.astype(np.float32), SR))
        assert abs(est.midi - key) < 0.5, (key, est)


@pytest.mark.parametrize("rate", [8000, 44100, 96000])
def test_any_sample_rate_and_channel_count(rate):
    for key in (33, 69, 90):
        if midi_to_hz(key) * 3 > rate / 2:
            continue
        wave = additive_tone(key, sample_rate=rate, duration_s=0.5)
        stereo = np.stack([wave, 0.5 * wave, wave])
        est = estimate_pitch(Audio(stereo, rate))
        assert abs(est.midi - key) < 0.1, (rate, key, est)


def test_noise_and_silence_have_low_confidence():
    rng = np.random.default_rng(0)
    white = (0.3 * rng.standard_normal(SR)).astype(np.float32)
    brown = np.cumsum(rng.standard_normal(SR))
    brown = (0.5 * brown / np.abs(brown).max()).astype(np.float32)
    low_passed = np.convolve(rng.standard_normal(SR), np.ones(8) / 8, "same").astype(np.float32)
    for wave in (white, brown, low_passed, np.zeros(SR, np.float32), np.zeros(0, np.float32)):
        est = estimate_pitch(Audio(wave, SR))
        assert est.confidence < 0.2, est
        assert 21 <= est.midi_note <= 108


def test_estimate_fields_agree():
    est = estimate_pitch(Audio(additive_tone(57, duration_s=0.5), SR))
    assert isinstance(est, PitchEstimate)
    assert est.midi_note == 57
    assert abs(hz_to_midi(est.hz) - est.midi) < 1e-9
    assert abs(midi_to_hz(69) - 440.0) < 1e-12


def test_refine_period_refines_and_terminates_on_degenerate_periods():
    import math

    import numpy as np

    from models.signal.pitch import _refine_period

    lags = np.arange(2048)
    periodic = np.cos(2 * np.pi * lags / 10.25) * np.exp(-lags / 3000)  # a period between lags
    assert abs(_refine_period(periodic, 10.0, 1500) - 10.25) < 1e-3
    nsdf = np.zeros(2048)
    nsdf[0] = 1.0
    # Periods below one sample (or NaN) come back as they are; 1.0 on a flat NSDF must return, not
    # loop forever or overflow, with a finite positive period.
    assert _refine_period(nsdf, 0.0, 1500) == 0.0 and _refine_period(nsdf, 0.3, 1500) == 0.3
    assert math.isnan(_refine_period(nsdf, float("nan"), 1500))
    assert 0.0 < _refine_period(nsdf, 1.0, 1500) <= 1.0
