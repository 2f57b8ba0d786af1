"""Saved instruments (.hgi): round trip, and clear errors for corrupt or unsupported files."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import engine.instrument_file as instrument_file
from engine.envelope import Envelope
from engine.instrument_file import SavedInstrument, SavedSound, load_sound, open_instrument, save_instrument
from engine.key_cache import PLAIN, Variations
from models.errors import InstrumentFileError
from models.signal.audio import Audio
from models.signal.tones import harmonic_tone, plucked_string
from tests.test_engine import make_engine
from tests.test_engine_fakes import write_fake_weights


def make_instrument() -> SavedInstrument:
    sounds = (SavedSound("A", "tone", Audio(harmonic_tone(60, duration_s=1.0), 16000), 60.12, 0.97),
              SavedSound("B", "pluck", Audio(plucked_string(52, duration_s=1.0), 16000), 51.8, 0.42, root=40),
              SavedSound("D", "low", Audio(harmonic_tone(45, duration_s=0.5, seed=2), 16000), 45.0, 1.0))
    return SavedInstrument(sounds, alpha=0.25, pad=(0.3, 0.7), envelope=Envelope(0.01, 2.0, 0.5, 1.5), volume=0.3,
                           refine_strength=1.5, near_root=2,
                           variations=Variations(round_robins=3, velocity_layers=2, rr_h_scale=0.2, seed=7))


def assert_same(a: SavedInstrument, b: SavedInstrument) -> None:
    assert [(s.slot, s.name, s.midi, s.confidence, s.root) for s in a.sounds] == \
        [(s.slot, s.name, s.midi, s.confidence, s.root) for s in b.sounds]
    for x, y in zip(a.sounds, b.sounds):
        assert x.audio.sample_rate == y.audio.sample_rate and x.audio.samples.dtype == y.audio.samples.dtype
        np.testing.assert_array_equal(x.audio.samples, y.audio.samples)
    for name in ("alpha", "pad", "envelope", "volume", "refine_strength", "near_root", "variations"):
        assert getattr(a, name) == getattr(b, name), name


def test_round_trip_keeps_settings_and_identical_audio(tmp_path: Path) -> None:
    inst = make_instrument()
    path = save_instrument(tmp_path / "three.hgi", inst)
    assert_same(open_instrument(path), inst)
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert sorted(zf.namelist()) == ["manifest.json", "sounds/A.wav", "sounds/B.wav", "sounds/D.wav"]
    assert manifest["format"] == "hypergan-instrument" and manifest["version"] == 1
    assert manifest["variations"] == {"round_robins": 3, "velocity_layers": 2, "rr_z_scale": 0.0, "rr_h_scale": 0.2,
                                      "velocity_strength": 0.0, "velocity_tilt": 1.0, "velocity_attack": 1.0,
                                      "reference_velocity": 100,
                                      "seed": 7}
    assert sum(manifest["mix"]["weights"].values()) == pytest.approx(1.0)
    assert list(tmp_path.iterdir()) == [path]                       # no temp file left behind


def test_defaults_for_absent_settings_and_weights(tmp_path: Path) -> None:
    one = SavedInstrument((make_instrument().sounds[0],))
    back = open_instrument(save_instrument(tmp_path / "one.hgi", one))
    assert back.variations == PLAIN and back.envelope == Envelope() and back.weights() == {"A": 1.0}
    two = SavedInstrument(make_instrument().sounds[:2], alpha=0.25)
    assert two.weights() == {"A": 0.75, "B": 0.25}


def test_variations_sections_of_older_and_newer_files(tmp_path: Path) -> None:
    from dataclasses import fields

    assert set(instrument_file.VARIATION_LIMITS) == {f.name for f in fields(Variations)}   # every field is checked
    path = save_instrument(tmp_path / "inst.hgi", make_instrument())
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    counts_only = edited(manifest, lambda m: m.update(variations={"round_robins": 2, "velocity_layers": 4,
                                                                 "added_later": "x"}))
    back = open_instrument(rewrite(path, tmp_path / "counts.hgi", manifest=counts_only))
    assert back.variations == Variations(round_robins=2, velocity_layers=4)   # the rest: defaults; unknown: skipped
    older = edited(manifest, lambda m: m.pop("variations"))
    assert open_instrument(rewrite(path, tmp_path / "older.hgi", manifest=older)).variations == PLAIN


def test_reopened_sounds_are_the_same_samples(tmp_path: Path) -> None:
    engine = make_engine(write_fake_weights(tmp_path / "w"))
    original = engine.load_sample(Audio(harmonic_tone(57, duration_s=1.2), 16000), name="a3")
    sound = SavedSound("A", original.name, original.audio, original.midi, original.confidence, root=45)
    saved = open_instrument(save_instrument(tmp_path / "a.hgi", SavedInstrument((sound,)))).sounds[0]
    detected, played = load_sound(engine, saved)
    assert (detected.content_hash, detected.midi, detected.confidence, detected.name) == \
        (original.content_hash, original.midi, original.confidence, "a3")
    assert played.root_note == 45 and played.content_hash == original.content_hash


def rewrite(path: Path, out: Path, manifest: object = None, drop: str | None = None, raw: bytes | None = None,
            replace: dict[str, bytes] | None = None) -> Path:
    """A copy of ``path`` with its manifest (or members) changed."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            if name == drop:
                continue
            data = src.read(name)
            if name == "manifest.json" and (manifest is not None or raw is not None):
                data = raw if raw is not None else json.dumps(manifest).encode()
            dst.writestr(name, (replace or {}).get(name, data))
    return out


def edited(manifest: dict, change) -> dict:
    m = json.loads(json.dumps(manifest))
    change(m)
    return m


CORRUPT = {
    "not_zip": ("not a zip file", None),
    "no_manifest": ("manifest.json is missing", dict(drop="manifest.json")),
    "bad_json": ("not valid JSON", dict(raw=b"{\"format\": ")),
    "other_format": ("not a HyperGAN instrument", dict(manifest=lambda m: m.update(format="other"))),
    "newer": ("newer sampler (format version 2)", dict(manifest=lambda m: m.update(version=2))),
    "older": ("version 0 is no longer supported", dict(manifest=lambda m: m.update(version=0))),
    "version_text": ("unsupported format version '1'", dict(manifest=lambda m: m.update(version="1"))),
    "missing_audio": ("sounds/B.wav is missing", dict(drop="sounds/B.wav")),
    "bad_audio": ("sounds/A.wav is not readable audio", dict(replace={"sounds/A.wav": b"RIFF nonsense"})),
    "root_text": ("sound B: 'root' must be a whole number", dict(manifest=lambda m: m["sounds"][1].update(root="C4"))),
    "slot": ("slot must be one of A, B, C, D", dict(manifest=lambda m: m["sounds"][0].update(slot="E"))),
    "same_slot": ("two sounds share a slot", dict(manifest=lambda m: m["sounds"][1].update(slot="A"))),
    "sounds_type": ("'sounds' must be a list", dict(manifest=lambda m: m.update(sounds={"A": 1}))),
    "no_sounds": ("1 to 4 sounds, not 0", dict(manifest=lambda m: m.update(sounds=[]))),
    "volume": ("'volume' must be a number from 0 to 1", dict(manifest=lambda m: m.update(volume=3))),
    "pad": ("'mix.pad' must be [x, y]", dict(manifest=lambda m: m["mix"].update(pad="middle"))),
    "variations": ("'round_robins' must be a whole number", dict(manifest=lambda m: m["variations"].update(
        round_robins=1.5))),
    "round_robins": ("variations: 'round_robins' must be a whole number from 1 to 8",
                     dict(manifest=lambda m: m["variations"].update(round_robins=9))),
    "velocity_layers": ("'velocity_layers' must be a whole number from 1 to 5",
                        dict(manifest=lambda m: m["variations"].update(velocity_layers=0))),
    "variations_type": ("'variations' must be an object", dict(manifest=lambda m: m.update(variations=[3, 3]))),
    "name": ("'name' and 'audio' must be text", dict(manifest=lambda m: m["sounds"][0].update(name=3))),
    "midi_missing": ("'detected_midi' is missing", dict(manifest=lambda m: m["sounds"][0].pop("detected_midi"))),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_or_unsupported_files_raise_one_clear_line(tmp_path: Path, case: str) -> None:
    message, how = CORRUPT[case]
    good = save_instrument(tmp_path / "good.hgi", make_instrument())
    bad = tmp_path / "bad.hgi"
    if how is None:
        bad.write_bytes(b"this is not an instrument")
    else:
        how = dict(how)
        if callable(how.get("manifest")):
            with zipfile.ZipFile(good) as zf:
                how["manifest"] = edited(json.loads(zf.read("manifest.json")), how["manifest"])
        rewrite(good, bad, **how)
    with pytest.raises(InstrumentFileError) as info:
        open_instrument(bad)
    text = str(info.value)
    assert text.startswith("bad.hgi: ") and message in text and "\n" not in text


def test_missing_file_and_unwritable_folder(tmp_path: Path) -> None:
    with pytest.raises(InstrumentFileError, match="no such file"):
        open_instrument(tmp_path / "nope.hgi")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InstrumentFileError, match="cannot save"):
        save_instrument(blocker / "inst.hgi", make_instrument())
    with pytest.raises(InstrumentFileError, match="cannot save"):
        save_instrument(tmp_path / "no" / "folder" / "inst.hgi", make_instrument())


def test_a_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_instrument(tmp_path / "keep.hgi", make_instrument())
    before = path.read_bytes()

    def full_disk(audio: Audio) -> bytes:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(instrument_file, "_wav_bytes", full_disk)
    with pytest.raises(InstrumentFileError, match="No space left on device"):
        save_instrument(path, make_instrument())
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
