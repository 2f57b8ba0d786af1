"""The soak (bench/soak.py) runs end to end for a few seconds on the small stand-in networks: its
counters move, nothing raises, the round trip holds. Its timings are not tested."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app.midi_input import MidiRouter
from bench.soak import Soak, SoakConfig
from bench.soak_devices import SoakKeyboard
from engine.envelope import Envelope
from engine.instrument import EngineConfig
from engine.key_cache import Variations
from engine.voices import MixerConfig, VoiceMixer
from models.signal.tones import harmonic_tone, plucked_string
from tests.test_app import CountingEngine
from tests.test_engine_fakes import FAKE_CLASSES, TEST_MEL, write_fake_weights
from tests.test_engine_variations import write_tiny_velocity
from tests.test_voices import sine_key

RATE = 16000


def test_garbage_midi_never_raises_and_valid_messages_are_taken() -> None:
    mixer = VoiceMixer(MixerConfig(sample_rate=RATE, block_size=256), Envelope())
    mixer.set_keys({60: sine_key(60)})
    router = MidiRouter(lambda: mixer.queue(1))
    keyboard = SoakKeyboard(router.handle, seed=3, garbage_share=0.5)
    out = np.zeros((256, 2), np.float32)
    for i in range(4000):
        keyboard.step()
        if i % 4 == 0:
            mixer.callback(out, 256)
    c = keyboard.counts
    assert c["garbage"] > 1500 and c["garbage_rejected_by_mido"] > 0 and c["note_on"] > 100
    assert c["handler_raised"] == 0 and c["valid_ignored"] == 0
    assert mixer.errors == 0 and np.isfinite(out).all()


@pytest.mark.slow
def test_a_short_soak_counts_and_passes(qapp, tmp_path: Path) -> None:
    weights = write_tiny_velocity(write_fake_weights(tmp_path / "weights"), h_dim=8, n_mels=TEST_MEL.n_mels)
    engine = CountingEngine(weights, device="cpu", vocoder="griffinlim", num_threads=1, classes=FAKE_CLASSES,
                            cfg=EngineConfig(max_batch=16, griffin_lim_iters=4))
    paths = []
    for i, (name, wave) in enumerate({"c4": harmonic_tone(60, duration_s=1.0, decay_s=0.8),
                                      "e3": plucked_string(52, duration_s=1.0),
                                      "g4": harmonic_tone(67, duration_s=1.0, n_harmonics=3)}.items()):
        paths.append(tmp_path / f"{i}_{name}.wav")
        sf.write(paths[-1], wave, RATE)
    cfg = SoakConfig(minutes=0.06, block_size=256, sample_rate=RATE, move_every_s=0.5, settle_every=3,
                     save_every_s=1.2, variations=Variations(round_robins=2, velocity_layers=2), seed=1)
    report = Soak(cfg, engine, paths, tmp_path).run()
    assert not report["failed"], report["exception_texts"]
    assert report["blocks"]["blocks"] > 0.5 * cfg.minutes * 60 * RATE / 256
    midi = report["midi"]
    assert midi["note_on"] > 100 and midi["garbage"] > 10 and midi["pitchwheel"] > 0
    assert midi["handler_raised"] == 0 and midi["valid_ignored"] == 0 and report["router_ignored"] > 0
    assert report["moves"] >= 2 and report["keys_landed"] > 0 and report["round_trips"] >= 1
    assert report["round_trip_problems"] == [] and report["exceptions"] == 0 and report["mixer_errors"] == 0
    assert report["memory"]["start"]["rss_kb"] > 0 and "traced_kb" in report["memory"]["end"]
    assert report["voices"]["max"] == cfg.n_voices
    assert not [t for t in threading.enumerate() if t.name.startswith("soak-")]
