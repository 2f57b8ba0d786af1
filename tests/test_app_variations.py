"""The app's velocity layers and round robins: controls, background rendering, the mixer, export."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QSettings, Qt

from app.settings import AppSettings
from app.variations_panel import VariationsPanel
from engine.instrument import EngineConfig
from engine.key_cache import PLAIN, Variations
from tests.test_app import CountingEngine, drop, make_window, sounds, wait_rendered  # noqa: F401 - fixture
from tests.test_engine_fakes import FAKE_CLASSES, write_fake_weights
from tests.test_engine_variations import write_tiny_velocity
from tests.test_export import read_sfz

LAYERED = Variations(round_robins=2, velocity_layers=2)


@pytest.fixture(scope="module")
def layered_engine(tmp_path_factory) -> CountingEngine:
    weights = write_tiny_velocity(write_fake_weights(tmp_path_factory.mktemp("weights")), h_dim=8, n_mels=48)
    return CountingEngine(weights, device="cpu", vocoder="griffinlim", num_threads=1, classes=FAKE_CLASSES,
                          cfg=EngineConfig(max_batch=16, griffin_lim_iters=4))


def test_panel_emits_variations_and_the_random_order(qtbot) -> None:
    panel = VariationsPanel()
    qtbot.addWidget(panel)
    assert panel.variations() == Variations()
    with qtbot.waitSignal(panel.variationsChanged) as got:
        panel.round_robins.setValue(5)
    assert got.args[0] == Variations(round_robins=5, velocity_layers=3)
    panel.layers.setValue(99)
    assert panel.variations().velocity_layers == 5           # the spin box's range is the engine's
    with qtbot.waitSignal(panel.randomChanged) as toggled:
        panel.random.setChecked(True)
    assert toggled.args == [True]


def test_settings_keep_the_variations(tmp_path: Path) -> None:
    settings = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    assert settings.variations == Variations() and settings.random_round_robin is False
    settings.variations, settings.random_round_robin = LAYERED, True
    again = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    assert again.variations == LAYERED and again.random_round_robin is True


class RecordingEngine:
    """What RenderWorker asks of an engine, recorded: the sound arguments of each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def render(self, *sounds, **kwargs) -> dict:
        self.calls.append(("render", sounds))
        return {}

    def render_variations(self, *sounds, **kwargs) -> dict:
        self.calls.append(("variations", sounds))
        return {}


def test_a_pad_job_renders_the_variations_of_its_whole_mix(qtbot) -> None:
    from app.render_worker import RenderJob, RenderWorker
    from engine.mix import Mix

    sounds = tuple(SimpleNamespace(name=n, root_note=60) for n in "abc")
    engine = RecordingEngine()
    worker = RenderWorker(engine)
    with qtbot.waitSignal(worker.jobDone) as done:
        worker.run(RenderJob(1, sounds, (0.5, 0.3, 0.2), 16000, fresh=True, variations=LAYERED))
    assert done.args == [1, True, ""]
    assert [name for name, _ in engine.calls] == ["render", "variations"]
    assert engine.calls[1][1] == engine.calls[0][1] == (Mix.of(sounds, (0.5, 0.3, 0.2)),)
    engine.calls.clear()
    worker.run(RenderJob(2, sounds[:2], (0.7, 0.3), 16000, fresh=False, variations=LAYERED))
    assert engine.calls[1][1] == engine.calls[0][1] == (sounds[0], sounds[1], 0.3)


@pytest.mark.slow
def test_layers_render_after_the_keys_reach_the_mixer_and_the_export(qtbot, tmp_path, layered_engine, sounds):
    window = make_window(qtbot, tmp_path, layered_engine, variations=LAYERED)
    try:
        window.sound.set_refine(0.0)                           # quick: no refinement pass
        window.instrument.refine_strength = 0.0
        assert window.variations.variations() == LAYERED and window.instrument.variations == LAYERED
        drop(window.slots["A"], sounds["c4"])
        wait_rendered(qtbot, window)
        inst = window.instrument
        assert len(inst.variants) == 88 * (LAYERED.count - 1)
        assert "layer and round-robin samples" in window.progress.message.text()
        bank = window.audio.mixer.bank
        assert len(bank.layers[60]) == 2 and all(len(row) == 2 for row in bank.layers[60])
        window.variations.random.setChecked(True)
        assert window.audio.mixer.random_round_robin and window.settings.random_round_robin
        packs = tmp_path / "packs"
        window.exporter.choose_folder = lambda parent, start: packs
        with qtbot.waitSignal(window.exporter.exported, timeout=60_000) as done:
            qtbot.mouseClick(window.export_button, Qt.LeftButton)
        regions = read_sfz(Path(done.args[0]) / "c4.sfz")
        assert len(regions) == 88 * LAYERED.count and {r["seq_length"] for r in regions} == {"2"}
        window.variations.set_variations(PLAIN)               # back to one sample a key: re-rendered
        wait_rendered(qtbot, window)
        assert inst.variants == {} and window.audio.mixer.bank.layers[60] is None
    finally:
        window.shutdown()
