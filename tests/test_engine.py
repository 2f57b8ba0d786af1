"""The inference engine on small pitched stand-in networks (tests/test_engine_fakes.py)."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.instrument import Engine, EngineConfig, Sample
from engine.key_cache import KeySample, nearest_key
from engine.keys import loudness_db, progressive_order
from models.units import ALL_KEYS
from engine.loops import seam_jump
from models.signal.audio import Audio
from models.errors import CheckpointError, SilentAudioError, UserError
from models.signal.tones import harmonic_tone, plucked_string
from tests.test_engine_fakes import FAKE_CLASSES, TEST_MEL, write_fake_weights

CFG = EngineConfig(output_rate=32000, max_batch=8, griffin_lim_iters=8)


def make_engine(weights: Path, **kwargs) -> Engine:
    kwargs.setdefault("cfg", CFG)
    kwargs.setdefault("num_threads", 1)
    return Engine(weights, device="cpu", vocoder="griffinlim", classes=FAKE_CLASSES, **kwargs)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture()
def engine(weights: Path) -> Engine:
    return make_engine(weights)


def tone(midi: float, seed: int = 0) -> Audio:
    return Audio(harmonic_tone(midi, duration_s=1.2, decay_s=0.8, seed=seed), TEST_MEL.sample_rate)


class CallCounter:
    """Counts forward calls of a module through a hook (independent of the engine's own counters)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.n = 0
        module.register_forward_hook(self._hook)

    def _hook(self, *_: object) -> None:
        self.n += 1


def test_load_sample_fits_the_clip_and_hashes_content(engine: Engine) -> None:
    long = Audio(harmonic_tone(60, duration_s=3.0), 16000)
    short = Audio(harmonic_tone(60, duration_s=0.3), 16000)
    a, b = engine.load_sample(long, midi=60.4), engine.load_sample(short, name="s", midi=59.6)
    for s in (a, b):
        assert s.audio.samples.shape == (TEST_MEL.num_samples,) and s.audio.sample_rate == 16000
        assert s.root_note == 60
    assert np.all(b.audio.samples[int(0.3 * 16000):] == 0)
    assert a.content_hash != b.content_hash
    assert engine.load_sample(long, midi=50).content_hash == a.content_hash
    assert engine.load_sample(long, midi=5).root_note == 21 and engine.load_sample(long, midi=130).root_note == 108


def test_bad_samples_raise_clear_errors(engine: Engine) -> None:
    with pytest.raises(SilentAudioError):
        engine.load_sample(Audio(np.zeros(16000, np.float32), 16000), midi=60)
    with pytest.raises(ValueError, match="16000"):
        engine.load_sample(Audio(harmonic_tone(60, sample_rate=22050), 22050), midi=60)
    with pytest.raises(UserError, match="mono"):
        engine.load_sample(Audio(np.stack([harmonic_tone(60)] * 2), 16000), midi=60)


def test_render_is_progressive_and_keys_are_usable(engine: Engine) -> None:
    sample = engine.load_sample(tone(64), midi=64)
    order: list[int] = []
    keys = engine.render(sample, on_key=lambda midi, key: order.append(midi))
    assert sorted(keys) == list(ALL_KEYS)
    assert order == progressive_order(ALL_KEYS, 64)
    assert order[:5] == [64, 65, 63, 66, 62]
    levels = []
    for midi, key in keys.items():
        assert isinstance(key, KeySample) and key.root_note == midi and key.sample_rate == 32000
        assert len(key.samples) == round(TEST_MEL.num_samples * 2)  # 16 kHz -> 32 kHz
        assert 0 < key.loop_start < key.loop_end <= len(key.samples)
        assert np.abs(key.samples).max() <= 10 ** (-1 / 20) + 1e-6
        seam, typical = seam_jump(key.samples, key.loop_start, key.loop_end)
        assert seam <= 2 * typical + 1e-6, (midi, seam, typical)
        levels.append(loudness_db(Audio(key.samples, key.sample_rate)))
    # Loudness matched across the keyboard (keys that hit the peak ceiling may sit lower).
    assert np.median(levels) == pytest.approx(-20.0, abs=0.5)
    assert np.percentile(levels, 90) - np.percentile(levels, 10) < 1.0


def test_every_key_reaches_G_with_its_own_pitch(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """G sees each key's MIDI note (z = 0, the sample's h); the root key's offsets come from p_in."""
    seen: list[tuple[list[int], float]] = []
    real_forward = type(engine.nets.G).forward

    def recording(self, h, z, midi, deltas=None):
        seen.append((midi.tolist(), float(z.abs().max())))
        return real_forward(self, h, z, midi, deltas)

    monkeypatch.setattr(type(engine.nets.G), "forward", recording)
    sample = engine.load_sample(tone(57), midi=57)
    keys = engine.render(sample, keys=[45, 57, 69, 81])
    assert seen[0] == ([57], 0.0)                        # x_init = G(h, 0, p_in) for H
    rendered = [m for batch, _ in seen[1:] for m in batch]
    assert rendered == progressive_order([45, 57, 69, 81], 57) and all(z == 0 for _, z in seen)
    assert {m: k.root_note for m, k in keys.items()} == {45: 45, 57: 57, 69: 69, 81: 81}


def test_second_render_skips_f_and_H(engine: Engine) -> None:
    f_calls, h_calls, g_calls = (CallCounter(engine.nets.f), CallCounter(engine.nets.H), CallCounter(engine.nets.G))
    sample = engine.load_sample(tone(60), midi=60)
    first = engine.render(sample, keys=range(55, 66))
    assert (f_calls.n, h_calls.n) == (2, 1)      # f(x), f(x_init); H once
    g_first = g_calls.n
    again = engine.load_sample(tone(60), midi=60)  # same content, new object
    second = engine.render(again, keys=range(55, 66))
    assert (f_calls.n, h_calls.n) == (2, 1)
    assert g_calls.n - g_first == g_first - 1    # only the key batches, no x_init
    for midi in first:
        np.testing.assert_array_equal(first[midi].samples, second[midi].samples)
    assert engine.cache.hits >= 1


def test_mix_endpoints_equal_single_renders_and_reuse_timbres(engine: Engine) -> None:
    a = engine.load_sample(tone(60, seed=1), midi=60)
    b = engine.load_sample(Audio(plucked_string(67, duration_s=1.2), 16000), midi=67)
    keys = range(58, 70)
    single_a, single_b = engine.render(a, keys=keys), engine.render(b, keys=keys)
    f_calls = CallCounter(engine.nets.f)
    mix_0 = engine.render(a, b, alpha=0.0, keys=keys)
    mix_1 = engine.render(a, b, alpha=1.0, keys=keys)
    for midi in keys:
        np.testing.assert_allclose(mix_0[midi].samples, single_a[midi].samples, atol=1e-6)
        np.testing.assert_allclose(mix_1[midi].samples, single_b[midi].samples, atol=1e-6)
    assert f_calls.n == 2                          # only f(x_init) of each mix: f(x_A), f(x_B) are cached
    half = engine.render(a, b, alpha=0.5, keys=[64])
    assert f_calls.n == 3
    h_a, h_b = engine.timbre(a), engine.timbre(b)
    cond = engine.conditioning(a, b, 0.5)
    torch.testing.assert_close(cond.h, 0.5 * h_a + 0.5 * h_b)
    assert cond.root_note == 64 and not np.allclose(half[64].samples, single_a[64].samples)
    with pytest.raises(UserError, match="alpha"):
        engine.render(a, b, alpha=1.5)


def test_cancel_event_stops_between_keys(engine: Engine) -> None:
    sample = engine.load_sample(tone(60), midi=60)
    cancel = threading.Event()
    seen: list[int] = []

    def on_key(midi: int, key: KeySample) -> None:
        seen.append(midi)
        if len(seen) == 3:
            cancel.set()

    keys = engine.render(sample, on_key=on_key, cancel=cancel)
    assert sorted(keys) == sorted(seen) == [59, 60, 61]


def test_newer_request_cancels_older(engine: Engine) -> None:
    a = engine.load_sample(tone(60), midi=60)
    b = engine.load_sample(tone(48, seed=3), midi=48)
    started, results = threading.Event(), {}

    def slow_key(midi: int, key: KeySample) -> None:
        started.set()
        threading.Event().wait(0.01)

    worker = threading.Thread(target=lambda: results.update(old=engine.render(a, on_key=slow_key)))
    worker.start()
    assert started.wait(10)
    results["new"] = engine.render(b, keys=range(40, 56))
    worker.join(30)
    assert not worker.is_alive()
    assert 1 <= len(results["old"]) < len(ALL_KEYS)
    assert sorted(results["new"]) == list(range(40, 56))


def test_nearest_key() -> None:
    def key(midi: int) -> KeySample:
        return KeySample(np.zeros(100, np.float32), 16000, midi, 10, 20)

    keys = {60: key(60), 64: key(64)}
    assert nearest_key({}, 60) is None
    assert nearest_key(keys, 61).root_note == 60 and nearest_key(keys, 63).root_note == 64
    assert nearest_key(keys, 62).root_note == 60          # ties: the lower key
    assert nearest_key(keys, 100).root_note == 64


def test_bad_keys_raise(engine: Engine) -> None:
    sample = engine.load_sample(tone(60), midi=60)
    with pytest.raises(UserError, match="21-108"):
        engine.render(sample, keys=[20, 60])
    with pytest.raises(UserError):
        engine.render(sample, keys=[])


def test_without_hypernetwork_G_renders_alone(tmp_path: Path) -> None:
    engine = make_engine(write_fake_weights(tmp_path / "w", hyper=False))
    assert engine.nets.H is None
    sample = engine.load_sample(tone(60), midi=60)
    keys = engine.render(sample, keys=[60, 61])
    assert engine.conditioning(sample).deltas is None and sorted(keys) == [60, 61]


def test_disk_cache_survives_a_restart(weights: Path, tmp_path: Path) -> None:
    first = make_engine(weights, cache_dir=tmp_path / "cache")
    sample = first.load_sample(tone(62), midi=62)
    expected = first.render(sample, keys=[62])
    assert list((tmp_path / "cache").rglob("*.safetensors"))
    second = make_engine(weights, cache_dir=tmp_path / "cache")
    f_calls, h_calls = CallCounter(second.nets.f), CallCounter(second.nets.H)
    got = second.render(second.load_sample(tone(62), midi=62), keys=[62])
    assert (f_calls.n, h_calls.n) == (0, 0) and second.cache.disk_hits >= 1
    np.testing.assert_array_equal(got[62].samples, expected[62].samples)


def test_memory_cache_is_bounded(weights: Path) -> None:
    engine = make_engine(weights, cfg=EngineConfig(cache_bytes=600, output_rate=16000, griffin_lim_iters=2))
    for i in range(6):
        engine.render(engine.load_sample(tone(50 + i, seed=i), midi=50 + i), keys=[60])
        assert engine.cache.nbytes <= 600
    assert 0 < len(engine.cache) < 12


@pytest.mark.parametrize("damage", ["missing_dir", "missing_file", "corrupt", "wrong_class", "mismatch", "mel_mismatch"])
def test_bad_weights_raise_checkpoint_error(weights: Path, tmp_path: Path, damage: str) -> None:
    from models.checkpoint import save
    from tests.test_engine_fakes import HyperNetwork, HyperNetworkConfig

    folder = write_fake_weights(tmp_path / "w")
    if damage == "missing_dir":
        folder = tmp_path / "nowhere"
    elif damage == "missing_file":
        (folder / "generator.safetensors").unlink()
    elif damage == "corrupt":
        (folder / "features.safetensors").write_bytes(b"\x00garbage" * 100)
    elif damage == "wrong_class":
        (folder / "generator.safetensors").write_bytes((folder / "features.safetensors").read_bytes())
    elif damage == "mismatch":  # offsets for a layer shape G does not have
        save(folder / "hyper.safetensors", HyperNetwork(HyperNetworkConfig(n_out=5)), {})
    elif damage == "mel_mismatch":  # f trained on another grid than G
        from dataclasses import replace
        from tests.test_engine_fakes import Generator, GeneratorConfig
        other = replace(TEST_MEL, hop_length=64)
        save(folder / "generator.safetensors", Generator(GeneratorConfig(mel=other)), {"mel": other.to_json()})
    with pytest.raises(CheckpointError) as info:
        make_engine(folder)
    assert str(folder.name) in str(info.value) or "hypernetwork" in str(info.value)


def test_engine_sets_threads_and_device(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.device import available_device

    before = torch.get_num_threads()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    try:
        engine = Engine(weights, device="cpu", vocoder="griffinlim", cfg=CFG, num_threads=3, classes=FAKE_CLASSES)
        assert torch.get_num_threads() == 1 and engine.num_threads == 3 and engine.workers == 3
        engine = Engine(weights, device="auto", vocoder="griffinlim", cfg=CFG, num_threads=2, classes=FAKE_CLASSES)
        assert engine.device == torch.device("cpu") and engine.workers == 2
    finally:
        torch.set_num_threads(before)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert available_device() == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert available_device() == "cuda"   # CUDA first
    with pytest.raises(UserError, match="device"):
        Engine(weights, device="tpu", classes=FAKE_CLASSES)


def test_sample_root_note_rounds_and_clamps() -> None:
    audio = Audio(np.ones(10, np.float32), 16000)
    assert Sample("x", audio, 60.6, 1.0, "h").root_note == 61 and Sample("x", audio, 60.4, 1.0, "h").root_note == 60
    assert Sample("x", audio, 130.0, 1.0, "h").root_note == 108
    assert Sample("x", audio, 0.0, 1.0, "h").root_note == 21


def test_overshooting_generator_still_gives_finite_keys(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """An untrained G can emit log-mels far above any real signal (exp overflows): keys stay finite."""
    real_forward = type(engine.nets.G).forward
    monkeypatch.setattr(type(engine.nets.G), "forward",
                        lambda self, *args, **kwargs: real_forward(self, *args, **kwargs) * 20 + 150)
    keys = engine.render(engine.load_sample(tone(60), midi=60), keys=[60, 72])
    for key in keys.values():
        assert np.isfinite(key.samples).all() and np.abs(key.samples).max() <= 1.0


def test_parallel_render_matches_sequential_and_cleans_up(engine: Engine, weights: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches on two worker threads: same keys, same order, no thread left behind."""
    piped = make_engine(weights, num_threads=2)
    assert piped.workers == 2 and engine.workers == 1
    threads_before = threading.active_count()
    sample = engine.load_sample(tone(60), midi=60)
    order: list[int] = []
    got = piped.render(piped.load_sample(tone(60), midi=60), keys=range(50, 75),
                       on_key=lambda midi, key: order.append(midi))
    expected = engine.render(sample, keys=range(50, 75))
    assert order == progressive_order(range(50, 75), 60)
    for midi in expected:
        np.testing.assert_array_equal(got[midi].samples, expected[midi].samples)
    cancel = threading.Event()
    partial = piped.render(piped.load_sample(tone(61), midi=61), cancel=cancel,
                           on_key=lambda midi, key: cancel.set() if midi == 62 else None)
    assert sorted(partial) == [61, 62]
    real_forward = type(piped.nets.G).forward

    def failing(self, h, z, midi, deltas=None):
        if int(midi.max()) > 70:
            raise RuntimeError("G failed")
        return real_forward(self, h, z, midi, deltas)

    monkeypatch.setattr(type(piped.nets.G), "forward", failing)
    with pytest.raises(RuntimeError, match="G failed"):
        piped.render(piped.load_sample(tone(60), midi=60), keys=range(60, 80))
    assert threading.active_count() == threads_before


def test_ordered_map_keeps_order_first_item_alone() -> None:
    from engine.pipeline import ordered_map

    lock, running, peaks = threading.Lock(), [0], []

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            peaks.append((i, running[0]))
        threading.Event().wait(0.02 if i % 2 else 0.005)   # later items can finish first
        with lock:
            running[0] -= 1
        return i * i

    assert list(ordered_map(work, range(8), workers=3)) == [i * i for i in range(8)]
    assert peaks[0] == (0, 1) and max(p for _, p in peaks) <= 3 and max(p for _, p in peaks) >= 2
    it = ordered_map(work, range(100), workers=2)
    assert next(it) == 0
    it.close()                                              # stops early: only items in flight ran
    assert len(peaks) - 8 <= 3


def test_vocoder_choice(weights: Path, tmp_path: Path) -> None:
    import shutil

    from models.checkpoint import save
    from models.signal.mel import GriffinLim
    from tests.test_engine_fakes import FAKE_CLASSES_WITH_VOCODER, Vocoder, VocoderConfig

    folder = tmp_path / "w"
    shutil.copytree(weights, folder)

    def build(vocoder: str, classes=FAKE_CLASSES_WITH_VOCODER) -> Engine:
        return Engine(folder, device="cpu", vocoder=vocoder, cfg=CFG, num_threads=1, classes=classes)

    assert build("auto").nets.vocoder_name == "griffinlim"           # no vocoder weights yet
    with pytest.raises(CheckpointError, match="vocoder.safetensors"):
        build("neural")
    save(folder / "vocoder.safetensors", Vocoder(VocoderConfig()), {"mel": TEST_MEL.to_json()})
    engine = build("auto")
    assert engine.nets.vocoder_name == "neural" and isinstance(engine.nets.inverter, Vocoder)
    keys = engine.render(engine.load_sample(tone(60), midi=60), keys=[60, 61])
    assert engine.nets.inverter.calls == 2 and sorted(keys) == [60, 61]
    assert isinstance(build("griffinlim").nets.inverter, GriffinLim)
    with pytest.raises(CheckpointError, match="not part of this build"):
        build("neural", classes=FAKE_CLASSES)
    with pytest.raises(UserError, match="unknown vocoder"):
        build("wavenet")
    from dataclasses import replace
    other = replace(TEST_MEL, n_mels=40)
    save(folder / "vocoder.safetensors", Vocoder(VocoderConfig(mel=other)), {"mel": other.to_json()})
    with pytest.raises(CheckpointError, match="mel grid"):
        build("neural")
