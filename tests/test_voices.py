"""The voice mixer, driven the way the audio thread drives it: pull blocks from its callback."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from engine.key_cache import KeySample
from engine.envelope import Envelope
from engine.voice_events import EventQueue
from engine.voices import MixerConfig, VoiceMixer

SR = 48000
BLOCK = 512
F_ROOT = 480.0  # period of exactly 100 samples at 48 kHz: loops can be period-aligned


def sine_key(root_note: int = 60, freq: float = F_ROOT, duration_s: float = 0.25, amplitude: float = 0.5,
             loop: tuple[int, int] = (4800, 9600), sample_rate: int = SR) -> KeySample:
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    wave = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return KeySample(wave, sample_rate, root_note, *loop)


def make_mixer(n_voices: int = 32, envelope: Envelope = Envelope(attack_s=0.001, decay_s=0.05, sustain=1.0,
                                                                 release_s=0.05), volume: float = 1.0,
               **cfg) -> VoiceMixer:
    mixer = VoiceMixer(MixerConfig(sample_rate=SR, block_size=BLOCK, n_voices=n_voices, **cfg), envelope)
    mixer.set_volume(volume)
    return mixer


def pull(mixer: VoiceMixer, n_blocks: int, channels: int = 2) -> np.ndarray:
    """``n_blocks`` blocks from the callback, channel 0, concatenated."""
    out = np.zeros((BLOCK, channels), np.float32)
    blocks = []
    for _ in range(n_blocks):
        mixer.callback(out, BLOCK, None, None)
        blocks.append(out[:, 0].copy())
    return np.concatenate(blocks)


def frequency(wave: np.ndarray, sample_rate: int = SR) -> float:
    """Frequency from rising zero crossings (interpolated), for a clean periodic signal."""
    s = np.signbit(wave)
    idx = np.nonzero(s[:-1] & ~s[1:])[0]
    exact = idx + wave[idx] / (wave[idx] - wave[idx + 1])
    return float(sample_rate * (len(exact) - 1) / (exact[-1] - exact[0]))


def blocks_for(seconds: float) -> int:
    return int(np.ceil(seconds * SR / BLOCK))


def test_note_plays_its_key_and_a_missing_key_plays_the_nearest_resampled():
    mixer = make_mixer()
    mixer.set_keys({60: sine_key(60)})
    q = mixer.queue(0)
    q.note_on(60, 127)
    assert frequency(pull(mixer, 10)[BLOCK:]) == pytest.approx(F_ROOT, rel=1e-3)
    q.note_off(60)
    pull(mixer, 20)
    q.note_on(67, 127)  # not rendered: C4's sample a fifth up
    assert frequency(pull(mixer, 10)[BLOCK:]) == pytest.approx(F_ROOT * 2 ** (7 / 12), rel=1e-3)


def test_key_at_another_rate_plays_at_its_pitch():
    mixer = make_mixer()
    mixer.set_keys({60: sine_key(60, freq=400.0, sample_rate=16000, loop=(1600, 3200))})
    mixer.queue(0).note_on(60, 127)
    assert frequency(pull(mixer, 10)[BLOCK:]) == pytest.approx(400.0, rel=1e-3)


def test_pitch_bend_covers_two_semitones():
    mixer = make_mixer()
    mixer.set_keys({60: sine_key(60)})
    q = mixer.queue(1)
    q.note_on(60, 127)
    q.pitch_bend(1.0)
    assert frequency(pull(mixer, 10)[BLOCK:]) == pytest.approx(F_ROOT * 2 ** (2 / 12), rel=1e-3)
    q.pitch_bend(-1.0)
    assert frequency(pull(mixer, 10)[BLOCK:]) == pytest.approx(F_ROOT * 2 ** (-2 / 12), rel=1e-3)


def test_velocity_scales_the_level():
    levels = []
    for velocity in (127, 64):
        mixer = make_mixer()
        mixer.set_keys({60: sine_key(60, amplitude=0.3)})
        mixer.queue(0).note_on(60, velocity)
        levels.append(np.abs(pull(mixer, 12)[-2 * BLOCK:]).max())
    assert levels[0] == pytest.approx(0.3, rel=0.02)   # below the limiter: passed through untouched
    assert levels[1] / levels[0] == pytest.approx((64 / 127) ** 2, rel=0.02)


@pytest.mark.parametrize("loop", [(4800, 9600), (4800, 4900)], ids=["long-loop", "loop-shorter-than-a-block"])
def test_held_note_loops_past_the_sample_end_without_discontinuity(loop):
    key = sine_key(60, duration_s=0.25, loop=loop)
    mixer = make_mixer()
    mixer.set_keys({60: key})
    mixer.queue(0).note_on(60, 127)
    held = pull(mixer, blocks_for(1.5))            # six times the sample's length
    steady = held[blocks_for(0.3) * BLOCK:]
    max_step = 2 * np.pi * F_ROOT / SR * 0.5       # steepest slope of the sine, per sample
    assert np.abs(np.diff(steady)).max() <= max_step * 1.01
    periods = steady[: len(steady) // 100 * 100].reshape(-1, 100)   # whole periods of the sine
    rms = np.sqrt(np.mean(periods ** 2, axis=1))
    assert rms.min() == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    assert rms.max() == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_released_note_plays_into_its_tail_then_frees_the_voice():
    mixer = make_mixer()
    mixer.set_keys({60: sine_key(60)})
    q = mixer.queue(0)
    q.note_on(60, 127)
    pull(mixer, 5)
    q.note_off(60)
    tail = pull(mixer, blocks_for(0.2))
    assert np.abs(tail[:BLOCK]).max() > 0.2           # release starts from the held level
    assert np.abs(tail[-BLOCK:]).max() == 0.0
    assert mixer.active_notes() == []


def test_sustain_pedal_keeps_released_notes_until_lifted():
    mixer = make_mixer()
    mixer.set_keys({60: sine_key(60), 64: sine_key(64)})
    q = mixer.queue(1)
    q.note_on(60, 127)
    q.sustain(True)
    q.note_off(60)
    held = pull(mixer, blocks_for(0.5))               # ten release times later
    assert np.abs(held[-BLOCK:]).max() == pytest.approx(0.5, rel=0.02)
    assert mixer.active_notes() == [60]
    q.sustain(False)
    after = pull(mixer, blocks_for(0.2))
    assert np.abs(after[-BLOCK:]).max() == 0.0
    assert mixer.active_notes() == []


def test_oldest_voice_is_stolen_when_the_pool_is_full():
    mixer = make_mixer(n_voices=4)
    mixer.set_keys({n: sine_key(n) for n in range(60, 66)})
    q = mixer.queue(0)
    for note in (60, 61, 62, 63):
        q.note_on(note, 100)
        pull(mixer, 1)
    q.note_on(64, 100)
    pull(mixer, 2)  # the stolen voice fades out over one block, the new note starts on the next
    assert sorted(mixer.active_notes()) == [61, 62, 63, 64]
    q.note_off(62)  # a releasing voice goes before older held ones
    q.note_on(65, 100)
    pull(mixer, 2)
    assert sorted(mixer.active_notes()) == [61, 63, 64, 65]


def test_all_notes_off_releases_and_all_sound_off_silences_at_once():
    mixer = make_mixer(envelope=Envelope(attack_s=0.001, decay_s=0.05, sustain=1.0, release_s=1.0))
    mixer.set_keys({60: sine_key(60)})
    q = mixer.queue(1)
    for note in (60, 64, 67):
        q.note_on(note, 127)
    pull(mixer, 5)
    q.all_notes_off()
    released = pull(mixer, 5)
    assert 0.0 < np.abs(released[-BLOCK:]).max() < np.abs(released[:BLOCK]).max()  # a slow release
    q.all_sound_off()
    silenced = pull(mixer, 2)
    assert np.abs(silenced[BLOCK:]).max() == 0.0
    assert mixer.active_notes() == []


def test_limiter_keeps_32_loud_voices_below_full_scale_without_flat_tops():
    mixer = make_mixer(volume=2.0)
    keys = {n: sine_key(n, freq=F_ROOT * (1 + 0.01 * (n - 40)), amplitude=1.0) for n in range(40, 72)}
    mixer.set_keys(keys)
    for note in keys:
        mixer.queue(0).note_on(note, 127)
    out = pull(mixer, 40)
    assert np.isfinite(out).all()
    assert np.abs(out).max() <= mixer.cfg.limiter_threshold + 1e-6 < 1.0
    top = np.abs(out).max()
    assert np.count_nonzero(np.abs(out) > top - 1e-4) < 10   # limited, not clipped to a plateau
    assert mixer.read_peak() == pytest.approx(top)


def test_swapping_the_key_cache_keeps_sounding_voices_on_their_sample():
    mixer = make_mixer()
    mixer.set_keys({60: sine_key(60, amplitude=0.5)})
    q = mixer.queue(0)
    q.note_on(60, 127)
    pull(mixer, 8)
    mixer.set_keys({60: sine_key(60, amplitude=0.2), 62: sine_key(62, amplitude=0.2)})
    assert np.abs(pull(mixer, 4)).max() == pytest.approx(0.5, rel=0.02)
    q.note_off(60)
    pull(mixer, blocks_for(0.2))
    q.note_on(60, 127)
    assert np.abs(pull(mixer, 8)[-BLOCK:]).max() == pytest.approx(0.2, rel=0.02)
    assert mixer.bank.rendered == frozenset({60, 62})


def test_callback_never_raises_and_writes_silence_on_bad_input():
    mixer = make_mixer()
    nan_key = sine_key(60)
    nan_key.samples[100:200] = np.nan   # a broken render must not poison the bus
    mixer.set_keys({60: nan_key})
    mixer.queue(0).note_on(60, 127)
    assert np.isfinite(pull(mixer, 4)).all()
    wrong_size = np.ones((BLOCK // 2, 2), np.float32)
    mixer.callback(wrong_size, BLOCK // 2, None, None)
    assert not wrong_size.any()
    wrong_dtype = np.ones((BLOCK, 2), np.float64)
    mixer.callback(wrong_dtype, BLOCK, None, None)
    assert not wrong_dtype.any() and mixer.errors == 1


def test_event_queue_is_a_bounded_ring_that_keeps_order():
    q = EventQueue()
    for i in range(EventQueue.CAPACITY - 1):
        assert q.note_on(i % 128, 100)
    assert not q.note_on(1, 100) and q.dropped == 1
    mixer = make_mixer()
    mixer.set_keys({60: sine_key(60)})
    q = mixer.queue(0)
    for _ in range(3):  # wrap the ring several times; the last event of each burst is a note-off
        for i in range(200):
            q.note_on(60, 100) if i % 2 == 0 else q.note_off(60)
        pull(mixer, 1)
        assert q._read == q._write
    pull(mixer, blocks_for(0.2))
    assert mixer.active_notes() == []
    q.note_off(60)
    q.note_on(60, 100)   # order kept: on after off leaves the note sounding
    pull(mixer, blocks_for(0.2))
    assert mixer.active_notes() == [60]


def callback_allocation(mixer: VoiceMixer, feed, n_blocks: int) -> tuple[int, int]:
    """(net bytes kept, largest transient bytes) over ``n_blocks`` callbacks, measured by tracemalloc.

    ``feed(i)`` pushes events before block ``i``; only the callback itself is inside the window.
    """
    out = np.zeros((mixer.cfg.block_size, mixer.cfg.channels), np.float32)
    for i in range(n_blocks):       # warm-up: NumPy caches its loops on first use of each path
        feed(i)
        mixer.callback(out, mixer.cfg.block_size, None, None)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        worst = 0
        for i in range(n_blocks):
            feed(i)
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            mixer.callback(out, mixer.cfg.block_size, None, None)
            _, peak = tracemalloc.get_traced_memory()
            worst = max(worst, peak - before)
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return end - start, worst


def busy_feed(mixer: VoiceMixer):
    """Notes on and off, pedal, bend and voice stealing (40 notes over 32 voices)."""
    q = mixer.queue(1)

    def feed(i: int) -> None:
        q.note_on(30 + i % 40, 100)
        if i % 3 == 0:
            q.note_off(30 + (i - 7) % 40)
        if i % 17 == 0:
            q.sustain(i % 34 == 0)
        q.pitch_bend(((i % 9) - 4) / 4)
    return feed


def test_callback_allocates_no_buffers():
    mixer = make_mixer()
    mixer.set_keys({n: sine_key(n, loop=(4800, 4800 + 100 * (1 + n % 5))) for n in range(21, 109, 4)})
    net, transient = callback_allocation(mixer, busy_feed(mixer), n_blocks=400)
    assert len(mixer.active_notes()) >= 30 and mixer.errors == 0   # a full pool, stealing
    # Nothing accumulates: a leak of 3 bytes per block would show (a few floats may stay boxed).
    assert net < 1024
    # Only short-lived Python objects (an iterator, a float boxed for a ufunc) remain; one block
    # buffer alone would be 2048 bytes.
    assert transient < 1024


def test_allocation_measurement_catches_an_allocating_callback():
    class Allocating(VoiceMixer):
        def _render_voices(self) -> None:
            super()._render_voices()
            self._mix[:] = self._mix * 1.0   # a temporary the size of a block

    mixer = Allocating(MixerConfig(sample_rate=SR, block_size=BLOCK))
    mixer.set_keys({60: sine_key(60)})
    _, transient = callback_allocation(mixer, busy_feed(mixer), n_blocks=20)
    assert transient >= BLOCK * 4


def test_key_bank_maps_missing_notes_to_the_nearest_key_and_checks_each_key_once():
    from engine.key_bank import KeyBank

    keys = {60: sine_key(60), 64: sine_key(64)}
    bank = KeyBank.build(keys, SR)
    assert bank.entries[62][1] == pytest.approx(2 ** (2 / 12))   # a tie goes to the lower key
    assert bank.entries[63][0] is keys[64].samples and bank.entries[63][1] == pytest.approx(2 ** (-1 / 12))
    assert bank.entries[0][0] is keys[60].samples and bank.entries[127][0] is keys[64].samples
    grown = KeyBank.build({**keys, 67: sine_key(67)}, SR, previous=bank)
    assert grown.sources[60][1] is bank.sources[60][1] and grown.rendered == frozenset({60, 64, 67})
    assert KeyBank.build({}, SR).entries[60] is None


def test_a_bank_swap_retires_the_arrays_it_let_go_and_frees_them_once_nothing_holds_them():
    mixer = make_mixer()
    old, kept = sine_key(60), sine_key(64)
    mixer.set_keys({60: old, 64: kept})
    mixer.queue(0).note_on(60, 100)
    pull(mixer, 2)                                      # a voice plays the old key's samples
    mixer.set_keys({60: sine_key(60), 64: kept})        # the old key is replaced
    assert len(mixer.retired) == 1 and mixer.retired.release() == 0   # still held: the test, the voice
    samples = old.samples
    del old
    assert mixer.retired.release() == 0                 # the voice still plays it
    mixer.queue(0).note_off(60)
    pull(mixer, 40)                                     # released and faded out: the voice let go
    assert mixer.retired.release() == 0                 # ``samples`` here still holds it
    del samples
    assert mixer.retired.release(limit=5) == 1 and len(mixer.retired) == 0
    mixer.set_keys({})
    assert len(mixer.retired) == 2 and mixer.retired.release(limit=1) == 1   # ``kept`` is held here
    del kept
    assert mixer.retired.release() == 1


def test_key_bank_picks_the_nearest_key_and_the_velocity_layer_as_their_definitions_do():
    import random

    from engine.key_bank import KeyBank
    from engine.key_cache import Variations, nearest_key

    rng = random.Random(0)
    for _ in range(40):
        keys = {n: sine_key(n) for n in rng.sample(range(21, 109), rng.randint(1, 88))}
        v = Variations(round_robins=2, velocity_layers=rng.randint(1, 5), reference_velocity=rng.randint(1, 127))
        bank = KeyBank.build(keys, SR, variations=v)
        assert [e[0] for e in bank.entries] == [nearest_key(keys, n).samples for n in range(128)]
        assert bank.layer_of == tuple(v.layer_of(velocity) for velocity in range(128))
