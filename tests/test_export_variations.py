"""Packs with velocity layers and round robins: SFZ, Decent Sampler, SF2 and Bitwig write them."""
from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.export import export_pack, zones
from engine.key_cache import KeySample, Variations
from engine.loops import make_loop
from models.data.soundfont import read_font
from models.signal.audio import Audio
from models.signal.pitch import estimate_pitch
from models.signal.tones import harmonic_tone
from models.units import midi_to_hz
from tests.test_export import RATE, make_keys, read_sfz
from tests.test_export_formats import _midi_file

NOTES = [48, 60]
V = Variations(round_robins=3, velocity_layers=2)     # layers 1-63 and 64-127; the main one is layer 1


def tone_key(midi: int, sounds_at: int, seed: int) -> KeySample:
    """A key for ``midi`` whose samples sound at ``sounds_at`` (so a test can hear which one played)."""
    wave = harmonic_tone(sounds_at, sample_rate=RATE, duration_s=0.6, decay_s=0.5, seed=seed)
    looped, start, end = make_loop(Audio(wave, RATE), midi_to_hz(sounds_at))
    return KeySample(looped.samples, RATE, midi, start, end)


def variants_for(notes, v: Variations = V, soft_octave: bool = False) -> dict:
    return {(m, layer, rr): tone_key(m, m + 12 if soft_octave and layer == 0 else m, seed=100 * layer + rr)
            for m in notes for layer, rr in v.passes()}


def test_sfz_and_dspreset_write_velocity_ranges_and_round_robins(tmp_path: Path) -> None:
    keys, variants = make_keys(NOTES), variants_for(NOTES)
    pack = export_pack(keys, "rr", tmp_path, variants=variants, variations=V)
    regions = read_sfz(pack / "rr.sfz")                                   # sfzlint: known opcodes only
    assert len(regions) == len(NOTES) * V.count
    for r in regions:
        assert (pack / r["sample"]).is_file() and r["seq_length"] == "3"
    assert {(r["lovel"], r["hivel"]) for r in regions} == {("1", "63"), ("64", "127")}
    assert sorted(r["seq_position"] for r in regions if r["pitch_keycenter"] == "60" and r["lovel"] == "1") == ["1", "2", "3"]
    main = [r for r in regions if r["sample"] == "samples/rr_060.wav"]
    assert len(main) == 1 and (main[0]["lovel"], main[0]["seq_position"]) == ("64", "1")
    samples = ET.parse(pack / "rr.dspreset").getroot().findall("./groups/group/sample")
    assert len(samples) == len(regions)
    assert {s.get("seqMode") for s in samples} == {"round_robin"} and {s.get("seqLength") for s in samples} == {"3"}
    assert {(s.get("loVel"), s.get("hiVel")) for s in samples} == {("1", "63"), ("64", "127")}
    assert len(list((pack / "samples").glob("*.wav"))) == len(NOTES) * V.count


def test_plain_packs_are_unchanged_and_missing_variants_shrink_the_sequence(tmp_path: Path) -> None:
    keys = make_keys(NOTES)
    assert zones(keys, "p") == zones(keys, "p", {}, Variations(round_robins=1, velocity_layers=1))
    text = (export_pack(keys, "p", tmp_path) / "p.sfz").read_text()
    assert "seq_" not in text and "lovel" not in text
    partial = {k: ks for k, ks in variants_for(NOTES).items() if k[2] == 0}   # only the soft layer's rr 1
    z = zones(keys, "q", partial, V)
    assert [(zz.lovel, zz.seq_length) for zz in z if zz.midi == 60] == [(1, 1), (64, 1)]


def test_sf2_writes_velocity_layers_and_first_round_robins(tmp_path: Path) -> None:
    keys, variants = make_keys(NOTES), variants_for(NOTES)
    pack = export_pack(keys, "Layered", tmp_path, formats=("sf2",), variants=variants, variations=V)
    font = read_font(pack / "Layered.sf2")
    got = [(z.key_lo, z.key_hi, z.vel_lo, z.vel_hi) for z in font.presets[0].zones]
    assert sorted(got) == sorted((lo, hi, vl, vh) for lo, hi in ((48, 54), (55, 60)) for vl, vh in ((1, 63), (64, 127)))
    assert len({z.sample for z in font.presets[0].zones}) == len(NOTES) * V.velocity_layers


def test_multisample_writes_velocity_and_round_robin_zone_logic(tmp_path: Path) -> None:
    keys, variants = make_keys(NOTES), variants_for(NOTES)
    pack = export_pack(keys, "bw", tmp_path, formats=("multisample",), variants=variants, variations=V)
    with zipfile.ZipFile(pack / "bw.multisample") as zf:
        root = ET.fromstring(zf.read("multisample.xml"))
        wavs = [n for n in zf.namelist() if n.endswith(".wav")]
    samples = root.findall("./layer/sample")
    assert len(samples) == len(NOTES) * V.count == len(wavs) == len(set(wavs))
    assert {s.get("zone-logic") for s in samples} == {"round-robin"}
    assert {(s.find("velocity").get("low"), s.find("velocity").get("high")) for s in samples} == {("1", "63"), ("64", "127")}


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth (the CLI synth) is not installed")
def test_fluidsynth_plays_the_soft_layer_below_its_velocity(tmp_path: Path) -> None:
    keys = make_keys([60])
    variants = variants_for([60], soft_octave=True)     # the soft layer sounds an octave up: audible proof
    pack = export_pack(keys, "vl", tmp_path, formats=("sf2",), variants=variants, variations=V)
    notes = [(60, 40), (60, 110)]
    _midi_file(tmp_path / "notes.mid", notes, 1.0, 0.5)
    out = tmp_path / "out.wav"
    subprocess.run(["fluidsynth", "-ni", "-R", "0", "-C", "0", "-F", str(out), "-r", str(RATE),
                    str(pack / "vl.sf2"), str(tmp_path / "notes.mid")], check=True, capture_output=True, timeout=60)
    audio, rate = sf.read(out, dtype="float32")
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    heard = []
    for i in range(len(notes)):
        begin = round(((i + 1) * 0.5 + i * 1.0 + 0.1) * rate)
        segment = np.ascontiguousarray(mono[begin: begin + round(0.8 * rate)])
        heard.append(round(estimate_pitch(Audio(segment, rate)).midi))
    assert heard == [72, 60]


@pytest.mark.skipif(shutil.which("polyphone") is None, reason="polyphone (the SoundFont editor) is not installed")
def test_polyphone_reads_the_layered_sf2_as_our_sfz_describes_it(tmp_path: Path) -> None:
    keys, variants = make_keys(NOTES), variants_for(NOTES)
    pack = export_pack(keys, "poly", tmp_path, formats=("sfz", "sf2"), variants=variants, variations=V)
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "XDG_RUNTIME_DIR": str(tmp_path)}
    (tmp_path / "conv").mkdir()                                  # polyphone does not create it
    subprocess.run(["polyphone", "-3", "-i", str(pack / "poly.sf2"), "-d", str(tmp_path / "conv"), "-o", "conv"],
                   env=env, check=True, capture_output=True, timeout=120)
    converted = next((tmp_path / "conv").rglob("*.sfz")).read_text()
    fields = ("pitch_keycenter", "lokey", "hikey", "lovel", "hivel", "loop_start", "loop_end")
    theirs = {tuple(dict(re.findall(r"(\w+)=(\S+)", body)).get(f) for f in fields)
              for body in converted.split("<region>")[1:]}
    # The SF2 holds each layer's first round robin: Polyphone must read the zones our SFZ writes for them.
    ours = {tuple(r[f] for f in fields) for r in read_sfz(pack / "poly.sfz") if r["seq_position"] == "1"}
    assert theirs == ours and len(ours) == len(NOTES) * V.velocity_layers
