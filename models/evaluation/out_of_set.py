"""Out-of-set one-shots: a folder of sounds from outside the training data, to evaluate the sampler on.

    python -m models.evaluation.out_of_set --out /work/oos
    python -m models.evaluation.out_of_set --out /work/oos --check   # also print each root vs our estimator

The training data comes from the MuseScore General, TimGM6mb and csound GM / FluidR3 soundfonts plus
procedural synths, so none of those is used here. The sources are Debian packages
(``apt-get install -y alsa-utils freepats sound-theme-freedesktop espeak-ng sox``); licences as in
their ``/usr/share/doc/<pkg>/copyright``:

- alsa-utils (``voice_spoken``, real speech "Front Center", ...): GPL-2, the ALSA developers.
- espeak-ng (``voice_sung``, formant-synthesised sustained vowels and vowel glides, several voices,
  languages and pitches): GPL-3+.
- freepats (recorded instruments as GUS ``.pat``: ``inst_sustained``, ``inst_plucked``, ``bell``,
  ``hit``, ``pad``, ``sweep``): GPL-2+ with a composition exception, FreePats.
- sound-theme-freedesktop (``bell``, ``alert``): per file CC-BY-3.0 (bell, complete: Richard
  Boulanger et al.), CC-BY-SA-3.0 (alarm-clock-elapsed, message, suspend-error), GPL-2+ (phone-*,
  message-new-instant) or GPL-2 (service-logout).
- sox (``pad``, ``sweep``, ``hit``, ``bell``: tones made by ``sox -n ... synth``, with tremolo,
  chorus, phaser, flanger; vibrato as a chain of ``bend`` effects; the two low-pass sweeps are a
  time-varying state-variable filter (numpy, :func:`lowpass_sweep`) over a sox sawtooth/square).
  The program's output carries no licence of its own.

Each file is ``<category>_<name>.flac``: mono, native rate, silence trimmed at both ends, at most
``max_duration_s`` with a short fade-out, peaked at ``peak_dbfs``. ``manifest.json`` lists per file its
package, the source (path or exact command), category, ``sustained_pitched`` (a held harmonic tone:
the subset the pitch acceptance is read on), the MIDI root and where the root comes from
(``root_source``): ``synth`` (the frequency sox was given: exact; for the bell, its lowest partial),
``patch`` (the GUS wave's root frequency: the key it is played at, which for the church organ and
the timpani is not what any estimator hears) or ``measured`` (voices and alert sounds: the median
YIN f0 over the voiced, sounding frames at 16 kHz, ``models.evaluation.fidelity.YinPitch``; neither
our estimator nor PESTO; ``measured_weak``: the same with looser voicing thresholds, for two bells).
Everything is deterministic (sox runs with ``-R``): two builds give the same bytes.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from models.evaluation.gus_patch import pick_gus_wave, unroll_loop
from models.signal.audio import Audio, peak_normalise, resample

ALSA_DIR = Path("/usr/share/sounds/alsa")
FREEPATS_DIR = Path("/usr/share/midi/freepats/Tone_000")
FREEDESKTOP_DIR = Path("/usr/share/sounds/freedesktop/stereo")
PACKAGE_PROBES = {"alsa-utils": ALSA_DIR, "freepats": FREEPATS_DIR, "sound-theme-freedesktop": FREEDESKTOP_DIR}
PROGRAMS = {"espeak-ng": "espeak-ng", "sox": "sox"}  # Debian package: program

ALSA_VOICES = ("Front_Center", "Front_Left", "Rear_Center", "Side_Right")
# (patch, category, sustained_pitched, the root the picked wave should be nearest, MIDI)
FREEPATS = (
    ("000_Acoustic_Grand_Piano", "inst_plucked", False, 60), ("006_Harpsichord", "inst_plucked", False, 60),
    ("013_Xylophone", "hit", False, 60), ("024_Nylon_Guitar", "inst_plucked", False, 60),
    ("032_Acoustic_Bass", "inst_plucked", False, 60), ("040_Violin", "inst_sustained", True, 60),
    ("042_Cello", "inst_sustained", True, 60), ("056_Trumpet", "inst_sustained", True, 60),
    ("066_Tenor_Sax", "inst_sustained", True, 60), ("071_Clarinet", "inst_sustained", True, 60),
    ("073_Flute", "inst_sustained", True, 60), ("114_Steel_Drums", "hit", False, 60),
    ("016_Hammond_Organ", "inst_sustained", True, 48), ("019_Church_Organ", "inst_sustained", True, 36),
    ("048_String_Ensemble_1_Marcato", "inst_sustained", True, 55), ("053_Voice_Oohs", "inst_sustained", True, 64),
    ("061_Brass_Section", "inst_sustained", True, 58), ("060_French_Horn", "inst_sustained", True, 53),
    ("009_Glockenspiel", "bell", False, 84), ("014_Tubular_Bells", "bell", False, 67),
    ("047_Timpani", "hit", False, 45), ("094_Halo_Pad", "pad", True, 60), ("095_Sweep_Pad", "sweep", True, 52),
)
# Tonal ones whose licence the copyright file names (dialog-warning and window-* are not listed there).
FREEDESKTOP = (("alarm-clock-elapsed", "alert"), ("bell", "bell"), ("complete", "bell"), ("message", "alert"),
               ("message-new-instant", "alert"), ("phone-incoming-call", "alert"),
               ("phone-outgoing-calling", "alert"), ("service-logout", "alert"), ("suspend-error", "alert"))
# (name, voice, espeak pitch 0-99, phonemes): a vowel repeated is one long sustained vowel; mixed vowels glide.
ESPEAK_SUNG = (
    ("a_en_low", "en", 15, "a:a:a:a:a:"), ("o_en", "en", 50, "o:o:o:o:o:"),
    ("i_en_f3", "en+f3", 50, "i:i:i:i:i:"), ("u_en_m3", "en+m3", 40, "u:u:u:u:u:"),
    ("a_de_f2", "de+f2", 70, "a:a:a:a:a:"), ("e_fr", "fr", 60, "e:e:e:e:e:"),
    ("a_it_f4_high", "it+f4", 99, "a:a:a:a:a:"), ("o_es_m1_low", "es+m1", 30, "o:o:o:o:o:"),
    ("a_en_klatt", "en+klatt", 50, "a:a:a:a:a:"), ("u_ru", "ru", 45, "u:u:u:u:u:"),
    ("glide_aiu_en_f1", "en+f1", 60, "a:i:u:a:i:"), ("glide_oea_de", "de", 35, "o:e:a:o:e:"),
)


@dataclass(frozen=True)
class SoxTone:
    """A ``sox -n`` recipe: ``effects`` with ``{0}``, ``{1}`` ... = the root in Hz times ``ratios``."""

    name: str
    category: str
    midi: int
    effects: str
    ratios: tuple[float, ...] = (1.0,)
    sustained_pitched: bool = True
    vibrato: tuple[float, float] | None = None          # (rate Hz, depth cents): a chain of sox bends
    sweep: tuple[float, float, float] | None = None     # (from Hz, to Hz, Q): lowpass_sweep afterwards


SOX_TONES = (
    SoxTone("saw_pad_vibrato", "pad", 48, "synth 2 sawtooth {0} synth 2 sawtooth mix {1} gain -8 lowpass 2500 "
            "fade q 0.25 2 0.4", (1.0, 1.004), vibrato=(5.5, 25.0)),
    SoxTone("square_pad_tremolo", "pad", 55, "synth 2 square {0} gain -6 lowpass 1800 tremolo 5 60 fade q 0.15 2 0.3"),
    SoxTone("triangle_pad_chorus", "pad", 64, "synth 2 triangle {0} synth 2 triangle mix {1} gain -10 "
            "chorus 0.7 0.9 55 0.4 0.25 2 -t fade q 0.3 2 0.5", (1.0, 0.996)),
    SoxTone("trapezium_pad_vibrato", "pad", 69, "synth 2 trapezium {0} gain -6 fade q 0.4 2 0.4", vibrato=(4.5, 40.0)),
    SoxTone("saw_lowpass_sweep_up", "sweep", 45, "synth 2 sawtooth {0} gain -6 fade q 0.02 2 0.2",
            sweep=(150.0, 6000.0, 4.0)),
    SoxTone("square_lowpass_sweep_down", "sweep", 52, "synth 2 square {0} gain -6 fade q 0.02 2 0.2",
            sweep=(5000.0, 250.0, 3.0)),
    SoxTone("saw_phaser", "sweep", 40, "synth 2 sawtooth {0} gain -10 phaser 0.8 0.74 3 0.7 0.5 -t fade q 0.05 2 0.2"),
    SoxTone("saw_flanger", "sweep", 57, "synth 2 sawtooth {0} gain -10 flanger 0 3 0 71 0.5 sine 25 lin "
            "fade q 0.05 2 0.2"),
    SoxTone("pluck_low", "hit", 43, "synth 1.2 pluck {0} gain -3", sustained_pitched=False),
    SoxTone("pluck_high", "hit", 76, "synth 0.5 pluck {0} gain -3", sustained_pitched=False),
    SoxTone("sine_blip", "hit", 84, "synth 0.2 sine {0} gain -3 fade q 0.002 0.2 0.18", sustained_pitched=False),
    SoxTone("sine_bell", "bell", 72, "synth 2 sine {0} synth 2 sine mix {1} synth 2 sine mix {2} "
            "synth 2 sine mix {3} gain -12 fade q 0.002 2 1.95", (1.0, 2.0, 2.76, 5.40), sustained_pitched=False),
)
SOX_RATE = 44100


@dataclass(frozen=True)
class BuildConfig:
    """How each source sound becomes a one-shot."""

    max_duration_s: float = 2.0
    fade_out_s: float = 0.02
    peak_dbfs: float = -1.0
    trim_db: float = -50.0  # below the file's peak: leading/trailing silence
    silence_peak: float = 1e-4  # a peak below this (full scale 1.0) is silence: skipped
    label_rate: int = 16000  # measured roots are read at the model's rate


def crop_normalise(samples: np.ndarray, sample_rate: int, cfg: BuildConfig = BuildConfig()) -> np.ndarray | None:
    """Mono float32 ``[T]``: silence trimmed, at most ``cfg.max_duration_s``, faded, peaked at ``cfg.peak_dbfs``.

    ``samples`` is ``[T]`` or ``[T, C]`` (soundfile's layout); None if it is silent.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak < cfg.silence_peak:
        return None
    loud = np.flatnonzero(np.abs(x) >= peak * 10.0 ** (cfg.trim_db / 20.0))
    x = x[loud[0]:loud[-1] + 1][:int(cfg.max_duration_s * sample_rate)]
    n_fade = min(len(x), int(cfg.fade_out_s * sample_rate))
    x = x.copy()  # never mutate the caller's array
    x[len(x) - n_fade:] *= np.linspace(1.0, 0.0, n_fade)
    return peak_normalise(x, 10.0 ** (cfg.peak_dbfs / 20.0))


def lowpass_sweep(x: np.ndarray, rate: int, from_hz: float, to_hz: float, q: float) -> np.ndarray:
    """Resonant low-pass whose cutoff glides exponentially ``from_hz`` -> ``to_hz`` over ``x``.

    A trapezoidal state-variable filter (Zavalishin's TPT form: stable at any cutoff), float64.
    """
    cutoff = from_hz * (to_hz / from_hz) ** np.linspace(0.0, 1.0, len(x))
    g = np.tan(np.pi * np.minimum(cutoff, 0.45 * rate) / rate)
    k = 1.0 / q
    a1 = 1.0 / (1.0 + g * (g + k))
    a2, a3 = g * a1, g * g * a1
    out = np.empty(len(x))
    s1 = s2 = 0.0
    for i, v in enumerate(np.asarray(x, np.float64).tolist()):
        v3 = v - s2
        v1 = a1[i] * s1 + a2[i] * v3
        v2 = s2 + a2[i] * s1 + a3[i] * v3
        s1, s2 = 2.0 * v1 - s1, 2.0 * v2 - s2
        out[i] = v2
    return out


def vibrato_bends(rate_hz: float, depth_cents: float, duration_s: float) -> str:
    """A sox ``bend`` chain: up to +depth, then alternating swings of 2 x depth every half period."""
    half = 1.0 / (2.0 * rate_hz)
    swings = [f"0,{depth_cents:g},{half / 2:.4f}"]
    swings += [f"0,{(-1) ** (i + 1) * 2 * depth_cents:g},{half:.4f}" for i in range(int((duration_s - half / 2) / half))]
    return "bend -f 50 " + " ".join(swings)


def sox_command(tone: SoxTone, out_path: Path) -> list[str]:
    """The exact ``sox`` call for ``tone`` (repeatable: ``-R`` seeds sox's noise, e.g. the pluck's)."""
    hz = 440.0 * 2.0 ** ((tone.midi - 69) / 12.0)
    effects = tone.effects.format(*(f"{hz * r:.4f}" for r in tone.ratios))
    if tone.vibrato is not None:
        effects += " " + vibrato_bends(*tone.vibrato, 2.0)
    return ["sox", "-R", "-n", "-r", str(SOX_RATE), "-c", "1", "-e", "floating-point", "-b", "32",
            str(out_path), *effects.split()]


def espeak_command(voice: str, pitch: int, phonemes: str, out_path: Path) -> list[str]:
    return ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", "80", "-w", str(out_path), f"[[{phonemes}]]"]


def measured_root(samples: np.ndarray, rate: int, cfg: BuildConfig = BuildConfig()) -> tuple[float | None, str]:
    """(median YIN f0 in MIDI over the voiced, sounding frames, ``"measured"``), read at ``cfg.label_rate``.

    Where YIN finds no voiced frame at its usual thresholds (an inharmonic bell), it is asked again
    with looser ones: ``"measured_weak"``. (None, "") if it still hears no pitch.
    """
    from models.evaluation.fidelity import YinConfig, YinPitch

    audio = resample(Audio(np.ascontiguousarray(samples, np.float32), rate), cfg.label_rate)
    for judge, source in ((YinPitch(), "measured"), (YinPitch(YinConfig(threshold=0.3, voiced_aperiodicity=0.5)),
                                                      "measured_weak")):
        midi = judge.midi(audio.samples, cfg.label_rate)
        if midi is not None:
            return midi, source
    return None, ""


def missing_packages() -> list[str]:
    """Debian packages whose files or programs are absent."""
    missing = [pkg for pkg, probe in PACKAGE_PROBES.items() if not probe.is_dir()]
    return missing + [pkg for pkg, program in PROGRAMS.items() if not shutil.which(program)]


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True)


def _shown(command: list[str], tmp_path: Path) -> str:
    """The command as the manifest records it: the temporary output file named ``OUT.wav``."""
    return shlex.join("OUT.wav" if arg == str(tmp_path) else arg for arg in command)


def build(out_dir: Path, cfg: BuildConfig = BuildConfig()) -> dict[str, dict]:
    """Write every one-shot and ``manifest.json`` into ``out_dir``; returns the manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict] = {}

    def add(category: str, name: str, samples: np.ndarray, rate: int, package: str, source: str,
            root_midi: float | None, sustained_pitched: bool, root_source: str) -> None:
        mono = crop_normalise(samples, rate, cfg)
        if mono is None:
            return
        if root_midi is None:
            root_midi, root_source = measured_root(mono, rate, cfg)
            if root_midi is None:
                return  # no pitch to label it with: not part of the suite
        file_name = f"{category}_{name}.flac"
        sf.write(out_dir / file_name, mono, rate, subtype="PCM_16", format="FLAC")
        manifest[file_name] = {"package": package, "source": source, "category": category,
                               "root_midi": round(float(root_midi), 2), "root_source": root_source,
                               "sustained_pitched": sustained_pitched, "sample_rate": rate,
                               "duration_s": round(len(mono) / rate, 3)}

    for name in ALSA_VOICES:
        path = ALSA_DIR / f"{name}.wav"
        samples, rate = sf.read(path, dtype="float32")
        add("voice_spoken", name.lower(), samples, rate, "alsa-utils", str(path), None, False, "measured")
    with tempfile.TemporaryDirectory() as tmp:
        for name, voice, pitch, phonemes in ESPEAK_SUNG:
            path = Path(tmp) / f"{name}.wav"
            command = espeak_command(voice, pitch, phonemes, path)
            _run(command)
            samples, rate = sf.read(path, dtype="float32")
            add("voice_sung", name, samples, rate, "espeak-ng", _shown(command, path), None, True, "measured")
        for tone in SOX_TONES:
            path = Path(tmp) / f"{tone.name}.wav"
            command = sox_command(tone, path)
            _run(command)
            samples, rate = sf.read(path, dtype="float64")
            source = _shown(command, path)
            if tone.sweep is not None:
                samples = lowpass_sweep(samples, rate, *tone.sweep)
                source += f" ; lowpass_sweep{tone.sweep}"
            add(tone.category, tone.name, samples, rate, "sox", source, float(tone.midi), tone.sustained_pitched,
                "synth")
    for patch, category, sustained, target_midi in FREEPATS:
        path = FREEPATS_DIR / f"{patch}.pat"
        wave = pick_gus_wave(path, target_midi)
        samples = unroll_loop(wave, int(cfg.max_duration_s * wave.sample_rate))
        add(category, patch.split("_", 1)[1].lower(), samples, wave.sample_rate, "freepats", str(path),
            wave.root_midi, sustained, "patch")
    for name, category in FREEDESKTOP:
        path = FREEDESKTOP_DIR / f"{name}.oga"
        samples, rate = sf.read(path, dtype="float32")
        add(category, name.replace("-", "_"), samples, rate, "sound-theme-freedesktop", str(path), None, False,
            "measured")
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_manifest(suite_dir: Path) -> dict[str, dict]:
    """``manifest.json`` of a built suite: {file name: entry}."""
    return json.loads((Path(suite_dir) / "manifest.json").read_text())


def check(out_dir: Path, manifest: dict[str, dict]) -> None:
    """Print each file's duration, peak and labelled root vs our estimator (``models.signal.pitch``)."""
    from models.evaluation.fidelity import root_check
    from models.signal.pitch import estimate_pitch

    print("| file | rate | duration s | peak dBFS | root (source) | ours (conf) | |")
    print("|---|---|---|---|---|---|---|")
    for file_name, entry in manifest.items():
        samples, rate = sf.read(out_dir / file_name, dtype="float32")
        est = estimate_pitch(resample(Audio(samples, rate), 16000))
        root = entry["root_midi"]
        print(f"| {file_name} | {rate} | {len(samples) / rate:.2f} | {20 * np.log10(np.max(np.abs(samples))):.1f} "
              f"| {root:.2f} ({entry['root_source']}) | {est.midi:.2f} ({est.confidence:.2f}) "
              f"| {root_check(est.midi, root)} |")


def summary(manifest: dict[str, dict]) -> str:
    """One line per category: count, sustained-pitched count, root range."""
    lines = []
    for category in sorted({e["category"] for e in manifest.values()}):
        entries = [e for e in manifest.values() if e["category"] == category]
        roots = [e["root_midi"] for e in entries]
        lines.append(f"{category}: {len(entries)} ({sum(e['sustained_pitched'] for e in entries)} sustained pitched), "
                     f"roots {min(roots):.1f}-{max(roots):.1f}")
    total_sp = sum(e["sustained_pitched"] for e in manifest.values())
    return "\n".join(lines + [f"total: {len(manifest)} ({total_sp} sustained pitched)"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the FLACs and manifest.json")
    parser.add_argument("--check", action="store_true", help="print duration, peak, root vs our pitch estimate")
    args = parser.parse_args(argv)
    missing = missing_packages()
    if missing:
        print(f"missing Debian packages: {', '.join(missing)}; "
              "run: apt-get install -y alsa-utils freepats sound-theme-freedesktop espeak-ng sox", file=sys.stderr)
        return 2
    manifest = build(args.out)
    size = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(f"{len(manifest)} one-shots and manifest.json in {args.out} ({size / 1e6:.1f} MB)")
    print(summary(manifest))
    if args.check:
        check(args.out, manifest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
