"""Out-of-set one-shots: a folder of sounds from outside the training data, to evaluate the sampler on.

    python -m models.evaluation.out_of_set --out /work/oos
    python -m models.evaluation.out_of_set --out /work/oos --check   # also print duration, peak, root vs estimate

The training data comes from the MuseScore General, TimGM6mb and csound GM soundfonts plus procedural
synths, so none of those is used here. The sources are Debian packages
(``apt-get install -y alsa-utils freepats sound-theme-freedesktop espeak-ng``); licences as in their
``/usr/share/doc/<pkg>/copyright``:

- alsa-utils (``voice``, real speech "Front Center", ...): GPL-2, the ALSA developers.
- freepats (``inst``, sampled instruments as GUS ``.pat``): GPL-2+ with a composition exception, FreePats.
- sound-theme-freedesktop (``fx``, bells and alert tones): per file CC-BY-3.0 (bell, complete: Richard
  Boulanger et al.), CC-BY-SA-3.0 (alarm-clock-elapsed, message, suspend-error), GPL-2+ (phone-*,
  message-new-instant) or GPL-2 (service-logout).
- espeak-ng (``synthvoice``, formant-synthesised sustained vowels): GPL-3+.

Each file is ``<category>_<name>.wav``: mono, native rate, silence trimmed at both ends, at most
``max_duration_s`` with a short fade-out, peaked at ``peak_dbfs``; silent ones are skipped.
``manifest.json`` lists per file its package, original path, category and MIDI root (or null).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from models.signal.audio import peak_normalise

ALSA_DIR = Path("/usr/share/sounds/alsa")
FREEPATS_DIR = Path("/usr/share/midi/freepats/Tone_000")
FREEDESKTOP_DIR = Path("/usr/share/sounds/freedesktop/stereo")
ALSA_VOICES = ("Front_Center", "Front_Left", "Rear_Center", "Side_Right")
FREEPATS = ("000_Acoustic_Grand_Piano", "006_Harpsichord", "013_Xylophone", "024_Nylon_Guitar", "032_Acoustic_Bass",
            "040_Violin", "042_Cello", "056_Trumpet", "066_Tenor_Sax", "071_Clarinet", "073_Flute", "114_Steel_Drums")
# Tonal ones whose licence the copyright file names (dialog-warning and window-* are not listed there).
FREEDESKTOP = ("alarm-clock-elapsed", "bell", "complete", "message", "message-new-instant", "phone-incoming-call",
               "phone-outgoing-calling", "service-logout", "suspend-error")
VOWELS = (("a", "en"), ("o", "en+f3"), ("i", "en+m3"), ("u", "en+f2"))  # (espeak phoneme, voice)
PACKAGE_PROBES = {"alsa-utils": ALSA_DIR, "freepats": FREEPATS_DIR, "sound-theme-freedesktop": FREEDESKTOP_DIR}

# GUS patch (GF1PATCH110), little-endian: a 239-byte patch + instrument + layer header, the sample
# count at byte 198, then per sample a 96-byte header followed by its PCM (TiMidity's instrum.c).
GUS_MAGICS = (b"GF1PATCH110\0ID#000002\0", b"GF1PATCH100\0ID#000002\0")
GUS_HEADER_BYTES, GUS_COUNT_OFFSET, GUS_SAMPLE_HEADER_BYTES = 239, 198, 96
GUS_SAMPLE_FIELDS = struct.Struct("<7sBIIIHIIIhB18sB")  # name .. modes; scale freq/factor + 36 reserved follow
MODE_16BIT, MODE_UNSIGNED, MODE_LOOPING, MODE_PINGPONG, MODE_REVERSE = 1, 2, 4, 8, 16


@dataclass(frozen=True)
class BuildConfig:
    """How each source sound becomes a one-shot."""

    max_duration_s: float = 2.0
    fade_out_s: float = 0.02
    peak_dbfs: float = -1.0
    trim_db: float = -50.0  # below the file's peak: leading/trailing silence
    silence_peak: float = 1e-4  # a peak below this (full scale 1.0) is silence: skipped
    target_midi: float = 60.0  # freepats: the sample whose root is nearest this key


@dataclass(frozen=True)
class GusSample:
    """One wave of a GUS patch: float32 mono samples in [-1, 1], loop points in samples, root in Hz."""

    samples: np.ndarray
    sample_rate: int
    root_hz: float
    loop_start: int
    loop_end: int
    modes: int

    @property
    def looping(self) -> bool:
        return bool(self.modes & MODE_LOOPING)

    @property
    def root_midi(self) -> float:
        return 69.0 + 12.0 * math.log2(self.root_hz / 440.0)


def parse_gus_patch(data: bytes) -> list[GusSample]:
    """Every wave of a GUS ``.pat`` (8/16-bit, signed/unsigned PCM); loop/length fields are bytes on disk."""
    if data[:22] not in GUS_MAGICS:
        raise ValueError("not a GUS patch (no GF1PATCH110/100 header)")
    waves, offset = [], GUS_HEADER_BYTES
    for _ in range(data[GUS_COUNT_OFFSET]):
        (_, _, n_bytes, loop_start, loop_end, rate, _, _, root_mhz, _, _, _,
         modes) = GUS_SAMPLE_FIELDS.unpack_from(data, offset)
        offset += GUS_SAMPLE_HEADER_BYTES
        raw = data[offset:offset + n_bytes]
        if len(raw) != n_bytes:
            raise ValueError(f"GUS patch truncated: wave wants {n_bytes} bytes, {len(raw)} left")
        offset += n_bytes
        width = 2 if modes & MODE_16BIT else 1
        if modes & MODE_UNSIGNED:  # unsigned PCM is centred on 2**(bits - 1)
            pcm = np.frombuffer(raw, "<u2" if width == 2 else "u1").astype(np.int32) - (1 << (8 * width - 1))
        else:
            pcm = np.frombuffer(raw, "<i2" if width == 2 else "i1").astype(np.int32)
        samples = (pcm / float(1 << (8 * width - 1))).astype(np.float32)
        start, end = loop_start // width, loop_end // width
        if modes & MODE_REVERSE:  # played backwards: reverse the wave and mirror the loop (as TiMidity)
            samples, start, end = samples[::-1].copy(), len(samples) - end, len(samples) - start
        waves.append(GusSample(samples, rate, root_mhz / 1000.0, start, end, modes))
    return waves


def unroll_loop(wave: GusSample, min_samples: int) -> np.ndarray:
    """The wave as a held key plays it: up to the loop end, then the loop repeated to ``min_samples``."""
    if not wave.looping or not 0 <= wave.loop_start < wave.loop_end <= len(wave.samples):
        return wave.samples
    loop = wave.samples[wave.loop_start:wave.loop_end]
    if wave.modes & MODE_PINGPONG:
        loop = np.concatenate([loop, loop[::-1]])
    head = wave.samples[:wave.loop_end]
    repeats = max(0, math.ceil((min_samples - len(head)) / len(loop)))
    return np.concatenate([head, np.tile(loop, repeats)])


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


def pick_gus_wave(path: Path, target_midi: float) -> GusSample:
    """The wave of a patch whose root pitch is nearest ``target_midi``."""
    return min(parse_gus_patch(path.read_bytes()), key=lambda w: abs(w.root_midi - target_midi))


def espeak_vowel(phoneme: str, voice: str, wav_path: Path) -> None:
    """Write a sustained vowel (espeak phoneme mnemonic lengthened with ``:``) to ``wav_path``."""
    subprocess.run(["espeak-ng", "-v", voice, "-s", "80", "-w", str(wav_path), f"[[{phoneme}{':' * 9}]]"],
                   check=True, capture_output=True)


def missing_packages() -> list[str]:
    """Debian packages whose files or programs are absent."""
    missing = [pkg for pkg, probe in PACKAGE_PROBES.items() if not probe.is_dir()]
    return missing + ([] if shutil.which("espeak-ng") else ["espeak-ng"])


def build(out_dir: Path, cfg: BuildConfig = BuildConfig()) -> dict[str, dict]:
    """Write every one-shot and ``manifest.json`` into ``out_dir``; returns the manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict] = {}

    def add(category: str, name: str, samples: np.ndarray, rate: int, package: str, source: Path,
            root_midi: float | None) -> None:
        mono = crop_normalise(samples, rate, cfg)
        if mono is None:
            return
        file_name = f"{category}_{name}.wav"
        sf.write(out_dir / file_name, mono, rate, subtype="PCM_16")
        manifest[file_name] = {"package": package, "source": str(source), "category": category,
                               "root_midi": None if root_midi is None else round(root_midi, 2),
                               "sample_rate": rate, "duration_s": round(len(mono) / rate, 3)}

    for name in ALSA_VOICES:
        path = ALSA_DIR / f"{name}.wav"
        samples, rate = sf.read(path, dtype="float32")
        add("voice", name.lower(), samples, rate, "alsa-utils", path, None)
    for name in FREEPATS:
        path = FREEPATS_DIR / f"{name}.pat"
        wave = pick_gus_wave(path, cfg.target_midi)
        samples = unroll_loop(wave, int(cfg.max_duration_s * wave.sample_rate))
        add("inst", name.split("_", 1)[1].lower(), samples, wave.sample_rate, "freepats", path, wave.root_midi)
    for name in FREEDESKTOP:
        path = FREEDESKTOP_DIR / f"{name}.oga"
        samples, rate = sf.read(path, dtype="float32")
        add("fx", name.replace("-", "_"), samples, rate, "sound-theme-freedesktop", path, None)
    with tempfile.TemporaryDirectory() as tmp:
        for phoneme, voice in VOWELS:
            path = Path(tmp) / f"{phoneme}.wav"
            espeak_vowel(phoneme, voice, path)
            samples, rate = sf.read(path, dtype="float32")
            add("synthvoice", f"{phoneme}_{voice.replace('+', '_')}", samples, rate, "espeak-ng",
                Path(f"espeak-ng -v {voice} [[{phoneme}:::::::::]]"), None)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def check(out_dir: Path, manifest: dict[str, dict]) -> None:
    """Print each file's duration, peak and root vs the independent pitch estimate."""
    from models.signal.audio import Audio
    from models.signal.pitch import estimate_pitch

    print("| file | rate | duration s | peak dBFS | root | estimate (conf) |")
    print("|---|---|---|---|---|---|")
    for file_name, entry in manifest.items():
        samples, rate = sf.read(out_dir / file_name, dtype="float32")
        est = estimate_pitch(Audio(samples, rate))
        root = entry["root_midi"]
        flag = " **mismatch**" if root is not None and abs(est.midi - root) > 0.5 else ""
        print(f"| {file_name} | {rate} | {len(samples) / rate:.2f} | {20 * np.log10(np.max(np.abs(samples))):.1f} "
              f"| {'-' if root is None else f'{root:.2f}'} | {est.midi:.2f} ({est.confidence:.2f}){flag} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the WAVs and manifest.json")
    parser.add_argument("--check", action="store_true", help="print duration, peak, root vs pitch estimate")
    args = parser.parse_args(argv)
    missing = missing_packages()
    if missing:
        print(f"missing Debian packages: {', '.join(missing)}; "
              "run: apt-get install -y alsa-utils freepats sound-theme-freedesktop espeak-ng", file=sys.stderr)
        return 2
    manifest = build(args.out)
    print(f"{len(manifest)} one-shots and manifest.json in {args.out}")
    if args.check:
        check(args.out, manifest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
