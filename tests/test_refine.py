"""Refinement (engine/refine.py through Engine.render) on the real networks at their tiny configs."""
from __future__ import annotations

import math
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.instrument import Engine, EngineConfig
from engine.refine import (DEFAULT_REFINEMENT, FarKeys, MelDetail, RefineConfig, detail_weight, fine_structure,
                           masked_l1, mel_detail, mel_gap, misses_pitch, shift_bins, steadiness, targets)
from models.signal.audio import Audio
from models.signal.mel import SHIPPED_MEL, LogMel
from models.signal.tones import harmonic_tone, plucked_string
from tests.test_engine_real import REAL_MEL, write_tiny_weights

QUICK = replace(DEFAULT_REFINEMENT, steps=6)   # few steps: the tests check behaviour, not quality


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return write_tiny_weights(tmp_path_factory.mktemp("tiny"), steps=10)


@pytest.fixture
def engine(tiny_weights: Path) -> Engine:
    return Engine(tiny_weights, device="cpu", vocoder="griffinlim", num_threads=1,
                  cfg=EngineConfig(output_rate=16000, griffin_lim_iters=4))


def pluck(engine: Engine, midi: int = 52):
    return engine.load_sample(Audio(plucked_string(midi, duration_s=1.0), REAL_MEL.sample_rate), midi=midi)


def tone(engine: Engine, midi: int = 64):
    return engine.load_sample(Audio(harmonic_tone(midi, duration_s=1.0, decay_s=0.5), REAL_MEL.sample_rate),
                              midi=midi)


class StepCounter:
    """An ``on_refine`` callback counting optimisation steps; optionally sets ``cancel`` at a step."""

    def __init__(self, cancel_at: int | None = None) -> None:
        self.steps: list[tuple[int, int]] = []
        self.cancel = threading.Event()
        self.cancel_at = cancel_at

    def __call__(self, step: int, steps: int) -> None:
        self.steps.append((step, steps))
        if step == self.cancel_at:
            self.cancel.set()


def test_strength_scales_the_config_and_zero_turns_it_off() -> None:
    assert not DEFAULT_REFINEMENT.at_strength(0.0).enabled
    assert DEFAULT_REFINEMENT.at_strength(1.0) == DEFAULT_REFINEMENT
    double = DEFAULT_REFINEMENT.at_strength(2.0)
    assert double.steps == 2 * DEFAULT_REFINEMENT.steps and double.mel_correction == DEFAULT_REFINEMENT.mel_correction
    half = DEFAULT_REFINEMENT.at_strength(0.5)
    assert half.enabled and half.steps == round(DEFAULT_REFINEMENT.steps / 2)
    for bad in (-0.1, 2.5):
        with pytest.raises(ValueError, match="strength"):
            DEFAULT_REFINEMENT.at_strength(bad)
    with pytest.raises(ValueError):
        RefineConfig(key_offsets=(-7, 7))          # the root itself must be a target


def test_refinement_is_cached_per_sound_and_config(engine: Engine) -> None:
    sample = pluck(engine)
    first = StepCounter()
    assert not engine.refinement_cached(sample, QUICK)
    keys = engine.render(sample, keys=[52, 53], refine=QUICK, on_refine=first)
    assert set(keys) == {52, 53} and first.steps == [(i, QUICK.steps) for i in range(1, QUICK.steps + 1)]
    assert engine.refinement_cached(sample, QUICK)
    again = StepCounter()
    repeat = engine.render(pluck(engine), keys=[52, 53], refine=QUICK, on_refine=again)
    assert again.steps == []                                       # no optimisation the second time
    for midi in keys:
        np.testing.assert_array_equal(keys[midi].samples, repeat[midi].samples)
    other = StepCounter()
    engine.render(sample, keys=[52], refine=replace(QUICK, steps=4), on_refine=other)
    assert len(other.steps) == 4                                   # another config is refined anew
    moved = engine.load_sample(sample.audio, midi=55)              # so is another root
    assert not engine.refinement_cached(moved, QUICK)


def test_a_refinement_persists_to_the_disk_cache_and_is_read_back(tiny_weights: Path, tmp_path: Path) -> None:
    def make() -> Engine:
        return Engine(tiny_weights, device="cpu", vocoder="griffinlim", num_threads=1, cache_dir=tmp_path / "cache",
                      cfg=EngineConfig(output_rate=16000, griffin_lim_iters=4))
    first = make()
    expected = first.render(pluck(first), keys=[52, 70], refine=QUICK)     # 70: a far key
    second = make()
    counter = StepCounter()
    got = second.render(pluck(second), keys=[52, 70], refine=QUICK, on_refine=counter)
    assert counter.steps == [] and second.cache.disk_hits >= 1
    for midi in expected:
        np.testing.assert_array_equal(got[midi].samples, expected[midi].samples)


def test_a_cancel_from_on_refine_stops_it_and_renders_nothing(engine: Engine) -> None:
    sample = pluck(engine)
    counter = StepCounter(cancel_at=2)
    keys = engine.render(sample, keys=[52, 53], refine=QUICK, on_refine=counter, cancel=counter.cancel)
    assert keys == {} and len(counter.steps) == 2
    assert not engine.refinement_cached(sample, QUICK)             # a cut-short refinement is not kept
    assert engine.refined(sample, QUICK).refined                   # and runs whole next time
    assert engine.refinement_cached(sample, QUICK)


@pytest.mark.parametrize("correction", [0.0, 1.0], ids=["steps only", "with correction"])
def test_refinement_brings_the_root_closer_to_the_sound(engine: Engine, correction: float) -> None:
    sample = pluck(engine)
    cfg = replace(DEFAULT_REFINEMENT, mel_correction=correction)
    wave = torch.from_numpy(sample.audio.samples)
    _, target = targets(wave / wave.abs().max(), sample.root_note, engine._log_mel, cfg, 21, 108)

    def root_l1(cond) -> float:
        return masked_l1(engine.render_mels(cond, [sample.root_note])[0], target[0], cfg.dynamic_range_db).item()

    before, after = root_l1(engine.conditioning(sample)), root_l1(engine.refined(sample, cfg))
    assert after < 0.9 * before, (before, after)


def test_a_mix_of_refined_sounds_at_its_ends_is_each_refined_sound(engine: Engine) -> None:
    a, b = pluck(engine), tone(engine)
    keys = [58, 60]
    only_a = engine.render(a, keys=keys, refine=QUICK)
    only_b = engine.render(b, keys=keys, refine=QUICK)
    at_0 = engine.render(a, b, alpha=0.0, keys=keys, refine=QUICK)
    at_1 = engine.render(a, b, alpha=1.0, keys=keys, refine=QUICK)
    for midi in keys:
        np.testing.assert_allclose(at_0[midi].samples, only_a[midi].samples, atol=1e-5)
        np.testing.assert_allclose(at_1[midi].samples, only_b[midi].samples, atol=1e-5)
    half = engine.conditioning(a, b, 0.5, refine=QUICK)
    ca, cb = engine.refined(a, QUICK), engine.refined(b, QUICK)
    assert half.refined and torch.allclose(half.h, 0.5 * (ca.h + cb.h))
    assert torch.allclose(half.mel_correction, 0.5 * (ca.mel_correction + cb.mel_correction))


def test_the_correction_over_time_follows_each_frame_and_the_static_one_their_mean() -> None:
    n_mels, n_frames = 16, 12
    out = torch.zeros(n_mels, n_frames)
    target = torch.zeros(n_mels, n_frames)
    target[:, 6:] = 1.0                                      # the sound gets louder halfway
    static = replace(DEFAULT_REFINEMENT, correction_smooth_bins=1, correction_over_time=False, correction_harmonics=0.0)
    moving = replace(static, correction_over_time=True, correction_smooth_frames=1)
    assert mel_gap(out, target, static).shape == (n_mels,)
    gap = mel_gap(out, target, moving)
    assert gap.shape == (n_mels, n_frames)
    torch.testing.assert_close(gap[:, :6], torch.zeros(n_mels, 6))
    torch.testing.assert_close(gap[:, 6:], torch.ones(n_mels, 6))
    limited = mel_gap(out, 5.0 * target, moving)            # within the limit either way
    assert limited.max().item() == DEFAULT_REFINEMENT.correction_limit


def test_smoothing_over_the_roots_harmonics_leaves_the_envelope_not_the_harmonics() -> None:
    mel = SHIPPED_MEL
    centres = mel.band_centres_hz()
    assert centres.shape == (mel.n_mels,) and bool((centres.diff() > 0).all())
    root_hz = 220.0
    ripple = torch.cos(2 * torch.pi * centres / root_hz)    # peaks on the root's harmonics
    envelope = torch.linspace(-1.0, 1.0, mel.n_mels)
    gap_in = (envelope + ripple)[:, None].expand(-1, mel.n_frames)
    cfg = replace(DEFAULT_REFINEMENT, correction_limit=10.0, correction_over_time=False, correction_harmonics=0.0)
    narrow = mel_gap(torch.zeros_like(gap_in), gap_in, cfg)
    wide = mel_gap(torch.zeros_like(gap_in), gap_in, replace(cfg, correction_harmonics=2.0), centres, root_hz)
    low = centres < 2000.0                                   # where harmonics are resolved
    residue = lambda g: (g - envelope)[low].abs().mean().item()  # noqa: E731
    assert residue(wide) < 0.3 * residue(narrow), (residue(wide), residue(narrow))


def test_fine_structure_drops_a_smooth_envelope_and_keeps_harmonic_peaks() -> None:
    floor = torch.tensor(-20.0)
    smooth = torch.linspace(-3.0, 3.0, 64)[None, :, None].expand(1, -1, 8)
    assert fine_structure(smooth, 9, floor)[:, 8:-8].abs().max().item() < 1e-5
    peaks = smooth.clone()
    peaks[:, ::8] += 2.0
    assert fine_structure(peaks, 9, floor)[:, 8:-8:8].min().item() > 1.5


def test_the_pitch_term_keeps_other_keys_nearer_hs_notes(engine: Engine) -> None:
    sample = pluck(engine)
    free = replace(DEFAULT_REFINEMENT, steps=8, lr=0.05, mel_correction=0.0, anchor_weight=0.0)
    kept = replace(free, pitch_keys=(-7, 7), pitch_weight=50.0)
    floor = torch.tensor(REAL_MEL.log_min)
    base = engine.conditioning(sample)

    def fine_gap(cfg: RefineConfig) -> float:
        cond = engine.refined(sample, cfg)
        keys = [sample.root_note - 7, sample.root_note + 7]
        refined, reference = engine.render_mels(cond, keys), engine.render_mels(base, keys)
        return (fine_structure(refined, 9, floor) - fine_structure(reference, 9, floor)).abs().mean().item()

    assert fine_gap(kept) < fine_gap(free)


def test_a_correction_over_time_is_added_frame_by_frame(engine: Engine) -> None:
    sample = pluck(engine)
    cfg = replace(QUICK, correction_over_time=True, far_from=float("inf"))   # key 60 is 8 from the root
    cond = engine.refined(sample, cfg)
    assert cond.mel_correction.shape == (REAL_MEL.n_mels, REAL_MEL.n_frames)
    plain = engine.render_mels(replace(cond, mel_correction=None), [60])
    torch.testing.assert_close(engine.render_mels(cond, [60]), plain + cond.mel_correction[None])


def test_correction_and_detail_together_are_the_whole_gap_at_the_root() -> None:
    torch.manual_seed(0)
    out, target = torch.randn(32, 10), torch.randn(32, 10)
    cfg = replace(DEFAULT_REFINEMENT, detail=1.0, detail_limit=10.0, correction_limit=10.0,
                  steady_low=-2.0, steady_high=-1.0)                # every frame counts as steady
    correction = mel_gap(out, target, cfg)
    torch.testing.assert_close(correction + mel_detail(out, target, correction, cfg), target - out)
    assert mel_detail(out, 9.0 * target, correction, replace(cfg, detail_limit=1.0)).abs().max().item() <= 1.0


def test_frames_whose_harmonics_wander_give_only_their_envelope() -> None:
    centres = SHIPPED_MEL.band_centres_hz()
    comb = lambda hz: 3.0 * torch.cos(2 * torch.pi * centres / hz)  # noqa: E731  harmonic ripple at f0 = hz
    target = torch.stack([comb(220.0)] * 8 + [comb(220.0 * 2 ** (4 / 12))] * 2, dim=1)   # two frames a third up
    steady = steadiness(target, DEFAULT_REFINEMENT)
    assert bool((steady[:8] == 1.0).all()) and bool((steady[8:] < 0.5).all()), steady
    cfg = replace(DEFAULT_REFINEMENT, correction_limit=10.0, detail_limit=10.0)
    out = torch.zeros_like(target)
    correction = mel_gap(out, target, cfg, centres, 220.0)
    detail = mel_detail(out, target, correction, cfg, centres, 220.0)
    low = centres < 1500.0
    ripple = lambda x: (x - x.roll(1, 0))[low].abs().mean().item()  # noqa: E731  bin-to-bin change
    assert ripple(detail[:, 9]) < 0.3 * ripple(detail[:, 0]), (ripple(detail[:, 9]), ripple(detail[:, 0]))


def test_detail_moves_a_harmonic_peak_to_the_keys_pitch() -> None:
    centres = SHIPPED_MEL.band_centres_hz()
    peak_at = lambda hz: (centres - hz).abs().argmin().item()  # noqa: E731
    detail = torch.zeros(SHIPPED_MEL.n_mels, 4)
    detail[peak_at(440.0)] = 1.0
    moved = shift_bins(detail, centres, torch.tensor([0, 12, -12]))
    torch.testing.assert_close(moved[0], detail)
    for row, hz in ((1, 880.0), (2, 220.0)):
        assert abs(moved[row, :, 0].argmax().item() - peak_at(hz)) <= 1
        assert moved[row, :, 0].max().item() > 0.4


def test_detail_of_a_sharp_sound_is_moved_into_tune_with_each_key() -> None:
    centres = SHIPPED_MEL.band_centres_hz()
    peak_at = lambda hz: (centres - hz).abs().argmin().item()  # noqa: E731
    sharp = 440.0 * 2 ** (0.45 / 12)                                # the sound sits 45 cents above its key
    mel = torch.zeros(SHIPPED_MEL.n_mels, 2)
    mel[peak_at(sharp * 4)] = 1.0                                   # its 4th harmonic
    detail = MelDetail(mel, span=12.0, fade=12.0, tuning=0.45)
    at = detail.at_keys(69, torch.tensor([69, 81]), centres)
    for row, key_hz in ((0, 440.0), (1, 880.0)):
        assert abs(at[row, :, 0].argmax().item() - peak_at(key_hz * 4)) <= 1


def test_detail_is_full_near_the_root_and_fades_away_from_it() -> None:
    w = detail_weight(torch.tensor([0, -6, 12, 15, 18, 24, -30]), span=12.0, fade=6.0)
    torch.testing.assert_close(w, torch.tensor([1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0]))


def test_detail_reaches_the_root_in_full_and_far_keys_not_at_all(engine: Engine) -> None:
    sample = pluck(engine)
    cond = engine.refined(sample, replace(QUICK, detail=1.0, detail_span=3.0, detail_fade=3.0))
    assert isinstance(cond.mel_detail, MelDetail) and cond.mel_detail.mel.abs().max().item() > 0
    root, far = sample.root_note, sample.root_note + 12
    cond = replace(cond, mel_detail=replace(cond.mel_detail, tuning=0.0))   # in tune: the root gets it unmoved
    plain = engine.render_mels(replace(cond, mel_detail=None), [root, far])
    with_detail = engine.render_mels(cond, [root, far])
    torch.testing.assert_close(with_detail[0], plain[0] + cond.mel_detail.mel)
    torch.testing.assert_close(with_detail[1], plain[1])


def test_a_mix_moves_each_sounds_detail_to_the_mixes_root(engine: Engine) -> None:
    a, b = pluck(engine, 52), tone(engine, 64)
    cfg = replace(QUICK, detail=1.0)
    ca, cb = engine.refined(a, cfg), engine.refined(b, cfg)
    half = engine.conditioning(a, b, 0.5, refine=cfg)
    centres = engine.mel_cfg.band_centres_hz()
    expected = (0.5 * ca.mel_detail.moved_to(52, half.root_note, centres).mel
                + 0.5 * cb.mel_detail.moved_to(64, half.root_note, centres).mel)
    torch.testing.assert_close(half.mel_detail.mel, expected)


def test_far_keys_take_over_from_the_refined_offsets_by_distance_from_the_root() -> None:
    far = FarKeys({}, torch.zeros(4), span=3.0, fade=3.0)
    share = far.share(60, torch.tensor([60, 57, 63, 65, 66, 72, 48]))
    torch.testing.assert_close(share, torch.tensor([0.0, 0.0, 0.0, 2 / 3, 1.0, 1.0, 1.0]))


def test_far_keys_play_hs_offsets_with_the_gap_hs_root_note_leaves(engine: Engine) -> None:
    sample = pluck(engine)
    cfg = replace(QUICK, far_from=3.0, far_fade=3.0, detail=0.0, far_own_gap=True)
    cond = engine.refined(sample, cfg)
    base = engine.conditioning(sample)
    assert isinstance(cond.far, FarKeys) and cond.far.deltas.keys() == base.deltas.keys()
    assert all(torch.equal(cond.far.deltas[n], base.deltas[n]) for n in base.deltas)
    assert engine.refined(sample, replace(cfg, far_from=float("inf"))).far is None
    root = sample.root_note
    keys = [root, root + 3, root + 4, root + 12, root - 9]
    got = engine.render_mels(cond, keys)
    near = engine.render_mels(replace(cond, far=None), keys)                  # the refined offsets everywhere
    far = engine.render_mels(replace(base, mel_correction=cond.far.mel_correction), keys)  # H's offsets
    torch.testing.assert_close(got[:2], near[:2])
    torch.testing.assert_close(got[3:], far[3:], atol=1e-4, rtol=1e-4)
    assert (got[2] - near[2]).abs().max() > 1e-3 and (got[2] - far[2]).abs().max() > 1e-3   # between the two
    # the far correction is the gap H's own root note leaves, as the refined one is the refined note's
    wave = engine._peak_normalised(sample)
    _, target = targets(wave, root, engine._log_mel, cfg, 21, 108)
    h_root = engine.render_mels(replace(base, mel_correction=None), [root])[0]
    centres, root_hz = engine.mel_cfg.band_centres_hz(), 440.0 * 2.0 ** ((root - 69) / 12.0)
    torch.testing.assert_close(cond.far.mel_correction, mel_gap(h_root, target[0], cfg, centres, root_hz),
                               atol=1e-4, rtol=1e-4)
    default = engine.refined(sample, replace(cfg, far_own_gap=False))   # the default: the refined correction
    assert torch.equal(default.far.mel_correction, default.mel_correction)


def test_a_mix_blends_the_far_keys_of_its_sounds(engine: Engine) -> None:
    a, b = pluck(engine, 52), tone(engine, 64)
    cfg = replace(QUICK, far_from=6.0)
    ca, cb = engine.refined(a, cfg), engine.refined(b, cfg)
    half = engine.conditioning(a, b, 0.5, refine=cfg)
    torch.testing.assert_close(half.far.mel_correction, 0.5 * (ca.far.mel_correction + cb.far.mel_correction))
    assert half.far.pitch_check_cents == cfg.pitch_check_cents
    for name, d in half.far.deltas.items():
        torch.testing.assert_close(d, 0.5 * (ca.far.deltas[name] + cb.far.deltas[name]))



def _contour(t: np.ndarray, semitones: float) -> np.ndarray:
    """Speech-like intonation: a rise then a fall of ``semitones`` either side over a second."""
    return semitones * np.sin(np.pi * t)  - semitones * 2 / np.pi


def _glide(midi: float = 52.0, semitones: float = 4.0, duration_s: float = 1.0, rate: int = 16000) -> np.ndarray:
    """A harmonic tone whose pitch follows :func:`_contour` (its median near ``midi``)."""
    t = np.arange(int(duration_s * rate)) / rate
    f0 = 440.0 * 2.0 ** ((midi - 69 + _contour(t, semitones)) / 12.0)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 9))
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


def test_a_moving_pitch_is_followed_frame_by_frame_and_a_held_one_is_not() -> None:
    from engine.refine import moves, pitch_contour, warp_frames
    log_mel, cfg = LogMel(SHIPPED_MEL), replace(DEFAULT_REFINEMENT, contour_semitones=8.0)
    centres = SHIPPED_MEL.band_centres_hz()
    gliding = log_mel(torch.from_numpy(_glide(semitones=4.0)))
    held = log_mel(torch.from_numpy(harmonic_tone(52, duration_s=1.0)).float())
    assert moves(gliding, cfg) and not moves(held, cfg)
    contour = pitch_contour(gliding, cfg, centres)
    frames = torch.arange(contour.shape[0]) * SHIPPED_MEL.hop_length / SHIPPED_MEL.sample_rate
    expected = torch.from_numpy(_contour(frames.numpy(), 4.0)).float()
    expected = expected - expected[frames < 1.0].median()
    inside = (frames > 0.1) & (frames < 0.9)
    assert float((contour - expected)[inside].abs().median()) < 0.5
    torch.testing.assert_close(warp_frames(held[None], torch.zeros(held.shape[1]), centres)[0], held)
    down = warp_frames(held[None], torch.full((held.shape[1],), -3.0), centres)[0]
    assert torch.equal(down[-1], torch.full_like(down[-1], float(held.min())))   # nothing above the top band
    bent = warp_frames(held[None], torch.full((held.shape[1],), 2.0), centres)[0]
    peak = lambda m: centres[m[:40, 100].argmax()]  # noqa: E731  (the fundamental, bands below ~700 Hz)
    assert float(12 * torch.log2(peak(bent) / peak(held))) == pytest.approx(2.0, abs=0.5)


def test_speech_like_sounds_bend_the_near_keys_along_their_contour(engine: Engine) -> None:
    glide = engine.load_sample(Audio(_glide(), REAL_MEL.sample_rate), midi=52)
    assert engine.refined(glide, replace(QUICK, detail=1.0)).mel_detail.contour is None   # 32 bands hide the harmonics
    cfg = replace(QUICK, detail=1.0, contour_below=1.01)     # so count every sound as moving here
    cond = engine.refined(glide, cfg)
    assert cond.mel_detail.contour is not None and cond.mel_detail.contour.shape == (REAL_MEL.n_frames,)
    root, far = glide.root_note, glide.root_note + 24
    still = replace(cond, mel_detail=replace(cond.mel_detail, contour=None))
    got, ref = engine.render_mels(cond, [root, far]), engine.render_mels(still, [root, far])
    assert (got[0] - ref[0]).abs().max() > 1e-3            # the root follows the contour
    torch.testing.assert_close(got[1], ref[1])               # far keys do not
    half = engine.conditioning(glide, pluck(engine), 0.3, refine=cfg)   # a mix keeps the moving sound's
    assert torch.equal(half.mel_detail.contour, cond.mel_detail.contour)


def test_a_note_misses_its_pitch_when_off_key_or_without_pitch() -> None:
    rate = REAL_MEL.sample_rate
    note = harmonic_tone(60, duration_s=0.5, sample_rate=rate)
    assert not misses_pitch(note, rate, 60, 50.0)
    assert misses_pitch(note, rate, 61, 50.0)
    assert not misses_pitch(note, rate, 61, 150.0)
    assert misses_pitch(np.zeros(rate // 2, np.float32), rate, 60, 50.0)      # silence has no pitch


def test_a_refined_key_off_its_pitch_plays_the_far_conditioning_where_that_is_on_pitch(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    sample = pluck(engine)
    cond = engine.refined(sample, replace(QUICK, far_from=3.0, far_fade=3.0, detail=0.0, pitch_check_blend=0.0))
    root, rate = sample.root_note, engine.mel_cfg.sample_rate
    keys = [root, root + 2, root + 5, root + 12]
    unchecked = replace(cond, far=replace(cond.far, pitch_check_cents=math.inf))
    plain = replace(cond, deltas=cond.far.deltas, mel_correction=cond.far.mel_correction, far=None)
    refined_waves, plain_waves = (engine.render_waves(c, keys, rate) for c in (unchecked, plain))
    calls: list[int] = []

    def misses(wave: np.ndarray, wave_rate: int, key: int, cents: float) -> bool:
        """The refined notes of root+2 and root+5 miss (and the root's would); of the far notes, root+5's too."""
        first = key not in calls
        calls.append(key)
        return key in (root, root + 2, root + 5) if first else key == root + 5

    monkeypatch.setattr("engine.instrument.misses_pitch", misses)
    got = engine.render_waves(cond, keys, rate)
    assert calls == [root + 2, root + 5, root + 2, root + 5]   # neither the root (the sound) nor far keys
    np.testing.assert_allclose(got[1], plain_waves[1], atol=2e-4)     # the far note, on pitch
    assert np.abs(got[1] - refined_waves[1]).max() > 1e-2
    for i in (0, 2, 3):                                               # on pitch, or no better
        np.testing.assert_allclose(got[i], refined_waves[i], atol=2e-4)
    calls.clear()
    engine.render_waves(unchecked, keys, rate)
    assert calls == []                                                # inf: no check at all


def test_a_key_off_its_pitch_tries_the_mix_with_its_refined_note_before_the_far_note(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    sample = pluck(engine)
    cond = engine.refined(sample, replace(QUICK, far_from=3.0, far_fade=3.0, detail=0.0))
    assert cond.far.check_blend == DEFAULT_REFINEMENT.pitch_check_blend == 0.5
    root, rate = sample.root_note, engine.mel_cfg.sample_rate
    keys = [root + 1, root + 2]
    refined_mels = engine.render_mels(replace(cond, far=None), keys)
    plain = replace(cond, deltas=cond.far.deltas, mel_correction=cond.far.mel_correction, far=None)
    far_mels = engine.render_mels(plain, keys)
    mixed = engine.invert(0.5 * (refined_mels + far_mels), rate)
    far_waves = engine.invert(far_mels, rate)
    calls: list[int] = []

    def misses(wave: np.ndarray, wave_rate: int, key: int, cents: float) -> bool:
        """Both refined notes miss; the mix misses at root+2 only; the far notes are on pitch."""
        calls.append(key)
        n = calls.count(key)
        return n == 1 or (n == 2 and key == root + 2)

    monkeypatch.setattr("engine.instrument.misses_pitch", misses)
    got = engine.render_waves(cond, keys, rate)
    assert calls == [root + 1, root + 2, root + 1, root + 2, root + 2]
    np.testing.assert_allclose(got[0], mixed[0], atol=2e-4)      # the mix, on pitch
    np.testing.assert_allclose(got[1], far_waves[1], atol=2e-4)  # the mix missed: the far note
