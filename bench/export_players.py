"""A full instrument with velocity layers and round robins, played by real players.

One sound (default ``assets/demo/saw_pad.wav``) is rendered as the sampler does (``Engine.render``
and ``Engine.render_variations``, 88 keys x ``--velocity-layers`` x ``--round-robins`` at the
output rate, refinement at ``--refine``) and exported: SF2 (only each layer's first round robin:
SoundFont 2 has no round robins, engine/export_sf2.py) and SFZ, each timed on its own (the WAVs
are part of every pack, so ``wav`` alone is the baseline), and a plain SF2 of the main keys only.

- FluidSynth (``fluidsynth -ni -R 0 -C 0``, reverb and chorus off) plays a MIDI file of separate
  notes (keys 36, 48, 60, 72, 84 at velocities 40 and 110, 1 s each, 0.5 s apart); YIN
  (``fidelity.YinPitch``) reads each note 0.1..0.9 s after its onset: cents off the key. Which
  layer played: the note's spectral centroid at both velocities, in the layered SF2 and in the plain
  one (FluidSynth's default velocity-to-filter modulator lowers a soft note's centroid by itself, so
  the plain SF2, whose every velocity plays the main sample, is the control), and how far the layered
  SF2's note is from the plain one's (RMS of the difference over the plain note's RMS: 0 where both
  play the main sample).
- Polyphone (``polyphone -3``, headless) converts the SF2 to SFZ and (``-1``) the SFZ export to SF2;
  the regions / zones it wrote are counted by velocity range.
- sfizz (PyPI's pysfizz, if importable; at the pace of real time, see ``paced_blocks``) plays the SFZ:
  the same notes, then key 60 four times at each velocity; at the output rate with no
  transposition the played note is the sample itself, so the sample it
  correlates best with (over its first 0.5 s) names the layer and round robin; the next best in the
  same layer and in another layer say how sure that is.

    python -m bench.export_players --out /tmp/export_players
    pip install --target /tmp/pysfizz pysfizz
    PYTHONPATH=/tmp/pysfizz python -m bench.export_players assets/demo/pluck.wav --refine 0 --out /tmp/export_players_pluck
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.results import write_results
from engine.export import export_pack
from engine.instrument import Engine, default_weights_dir
from engine.key_cache import PLAIN, Variations
from engine.refine import DEFAULT_REFINEMENT
from models.data.soundfont import read_font
from models.evaluation import fidelity as fm
from models.units import ALL_KEYS
from tests.test_export_formats import _midi_file

KEYS = (36, 48, 60, 72, 84)
VELOCITIES = (40, 110)
NOTE_S, GAP_S = 1.0, 0.5
ROUND_ROBIN_KEY, ROUND_ROBIN_REPEATS = 60, 4
PLAYER_RATE = 44100


def render_instrument(engine: Engine, path: Path, v: Variations, strength: float,
                      key_step: int = 1) -> tuple[dict, dict, float]:
    """(main keys, variants, seconds) of all 88 keys (every ``key_step``-th, and KEYS), as ``hypergan
    render`` makes them."""
    refine = DEFAULT_REFINEMENT.at_strength(strength) if strength > 0 else None
    notes = sorted(set(ALL_KEYS[::key_step]) | set(KEYS))
    start = time.perf_counter()
    sample = engine.load_sample(path)
    keys = engine.render(sample, keys=notes, refine=refine)
    variants = engine.render_variations(sample, variations=v, keys=notes, refine=refine)
    return keys, variants, time.perf_counter() - start


def timed_exports(keys: dict, variants: dict, v: Variations, folder: Path) -> dict:
    """Each format exported on its own: seconds, instrument file bytes, pack bytes."""
    out = {}
    for fmt, suffix in (("wav", None), ("sf2", ".sf2"), ("sfz", ".sfz")):
        t0 = time.perf_counter()
        pack = export_pack(keys, f"inst_{fmt}", folder, formats=(fmt,), variants=variants, variations=v)
        seconds = time.perf_counter() - t0
        own = pack / f"inst_{fmt}{suffix}" if suffix else None
        out[fmt] = {"seconds": round(seconds, 2), "file_bytes": own.stat().st_size if own else None,
                    "pack_bytes": sum(p.stat().st_size for p in pack.rglob("*") if p.is_file()),
                    "path": str(own or pack)}
    t0 = time.perf_counter()
    plain = export_pack(keys, "plain", folder, formats=("sf2",), variations=PLAIN)
    out["sf2_plain"] = {"seconds": round(time.perf_counter() - t0, 2), "file_bytes": (plain / "plain.sf2").stat().st_size,
                        "path": str(plain / "plain.sf2")}
    return out


def notes_of(round_robins: bool) -> list[tuple[int, int]]:
    notes = [(k, vel) for k in KEYS for vel in VELOCITIES]
    if round_robins:
        notes += [(ROUND_ROBIN_KEY, vel) for vel in VELOCITIES for _ in range(ROUND_ROBIN_REPEATS)]
    return notes


def segments(wav: Path, count: int) -> tuple[list[np.ndarray], int]:
    """Each note's 0.1..0.9 s after its onset, mono."""
    audio, rate = sf.read(wav, dtype="float32")
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    out = []
    for i in range(count):
        begin = round(((i + 1) * GAP_S + i * NOTE_S + 0.1) * rate)
        out.append(np.ascontiguousarray(mono[begin: begin + round(0.8 * rate)]))
    return out, rate


def centroid_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave)))) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1.0 / rate)
    return float((spectrum * freqs).sum() / max(spectrum.sum(), 1e-20))


def cents(wave: np.ndarray, rate: int, key: int) -> float | None:
    midi = fm.YinPitch().midi(wave, rate)
    return None if midi is None else round(100.0 * (midi - key), 1)


def fluidsynth(sf2: Path, mid: Path, wav: Path) -> None:
    subprocess.run(["fluidsynth", "-ni", "-R", "0", "-C", "0", "-F", str(wav), "-r", str(PLAYER_RATE),
                    str(sf2), str(mid)], check=True, capture_output=True, timeout=300)


def play_fluidsynth(exports: dict, v: Variations, folder: Path) -> dict:
    mid = folder / "notes.mid"
    notes = notes_of(round_robins=False)
    _midi_file(mid, notes, NOTE_S, GAP_S)
    rows, played = {}, {}
    for name in ("sf2", "sf2_plain"):
        wav = folder / f"fluidsynth_{name}.wav"
        fluidsynth(Path(exports[name]["path"]), mid, wav)
        played[name], rate = segments(wav, len(notes))
        for (key, vel), seg in zip(notes, played[name]):
            row = rows.setdefault(f"{key}@{vel}", {"key": key, "velocity": vel, "layer": v.layer_of(vel)})
            row[f"{name}_cents"] = cents(seg, rate, key)
            row[f"{name}_centroid_hz"] = round(centroid_hz(seg, rate))
            row[f"{name}_rms"] = round(float(np.sqrt(np.mean(seg ** 2))), 5)
    for row, layered, plain in zip(rows.values(), played["sf2"], played["sf2_plain"]):
        row["diff_from_plain"] = round(float(np.sqrt(np.mean((layered - plain) ** 2)) / np.sqrt(np.mean(plain ** 2))), 4)
    return rows


def polyphone(exports: dict, folder: Path) -> dict:
    """Polyphone's headless conversions: SF2 -> SFZ (-3) and our SFZ -> SF2 (-1)."""
    exe = shutil.which("polyphone")
    if exe is None:
        return {"skipped": "polyphone not installed"}
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(folder), "XDG_RUNTIME_DIR": str(folder)}
    out: dict = {}
    for mode, src, name in (("-3", exports["sf2"]["path"], "poly_from_sf2"), ("-1", exports["sfz"]["path"], "poly_from_sfz")):
        target = folder / name
        target.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        proc = subprocess.run([exe, mode, "-i", src, "-d", str(target), "-o", name], env=env, capture_output=True,
                              text=True, timeout=300)
        files = sorted(p for p in target.rglob("*") if p.is_file())
        entry = {"rc": proc.returncode, "seconds": round(time.perf_counter() - t0, 1),
                 "files": len(files), "instrument_files": [p.name for p in files if p.suffix in (".sfz", ".sf2")],
                 "stderr_tail": proc.stderr.strip().splitlines()[-3:]}
        for p in files:
            if p.suffix == ".sfz":
                entry.update(sfz_summary(p))
            if p.suffix == ".sf2":
                entry.update(sf2_summary(p))
        out[f"{mode} {Path(src).suffix}"] = entry
    return out


def sfz_summary(path: Path) -> dict:
    """Regions of an SFZ (Polyphone's: opcodes per region, inherited from <group>/<global>) by velocity range."""
    text = path.read_text(errors="replace")
    regions, inherited, current = [], {}, None
    for header, body in re.findall(r"<(\w+)>([^<]*)", text):
        ops = dict(re.findall(r"(\w+)=(\S+)", body))
        if header == "region":
            current = {**inherited, **ops}
            regions.append(current)
        elif header in ("group", "global", "master"):
            inherited = {**(inherited if header == "group" else {}), **ops}
    vel = {}
    for r in regions:
        span = f"{r.get('lovel', '0')}-{r.get('hivel', '127')}"
        vel[span] = vel.get(span, 0) + 1
    return {"regions": len(regions), "regions_by_velocity": vel,
            "keys": len({r.get("pitch_keycenter", r.get("key")) for r in regions})}


def sf2_summary(path: Path) -> dict:
    font = read_font(path)
    zones = [z for p in font.presets for z in p.zones]
    vel = {}
    for z in zones:
        span = f"{z.vel_lo}-{z.vel_hi}"
        vel[span] = vel.get(span, 0) + 1
    return {"presets": len(font.presets), "zones": len(zones), "zones_by_velocity": vel,
            "samples": len({z.sample for z in zones})}


def play_sfizz(exports: dict, keys: dict, variants: dict, v: Variations) -> dict:
    """sfizz's render of the SFZ: pitch per note and which sample (layer, round robin) each note played."""
    try:
        import pysfizz  # optional: pip install --target DIR pysfizz, then PYTHONPATH=DIR
    except ImportError:
        return {"skipped": "pysfizz not importable (Debian has no sfizz package here)"}
    rate = next(iter(keys.values())).sample_rate
    synth = pysfizz.Synth(sample_rate=rate, block_size=1024)
    if not synth.load_sfz_file(exports["sfz"]["path"], quiet=False):
        return {"error": "sfizz could not load the SFZ"}
    raw, block = synth._synth, synth.get_block_size()
    rows = []
    for key, vel in notes_of(round_robins=True):
        raw.note_on(0, key, vel)
        played = paced_blocks(raw, round(NOTE_S * rate / block), block / rate)
        raw.note_off(0, key, 0)
        paced_blocks(raw, round(GAP_S * rate / block), block / rate)
        rows.append({"key": key, "velocity": vel,
                     "cents": cents(played[round(0.1 * rate): round(0.9 * rate)], rate, key),
                     **which_sample(played[: round(0.5 * rate)], key, keys, variants, v)})
    return {"rate": rate, "regions": raw.get_num_regions(), "notes": rows}


def paced_blocks(raw, count: int, block_s: float) -> np.ndarray:
    """``count`` blocks of the synth, mono, at the pace of real time: sfizz streams all but each sample's
    first 8192 frames from disk in the background, and an offline render that runs ahead of its loader
    (sfizz_render, or pysfizz's render_note, on a busy CPU) plays some notes as 0.17 s and then silence."""
    out, start = [], time.perf_counter()
    for i in range(count):
        left, right = raw.render_block()
        out.append(0.5 * (np.asarray(left) + np.asarray(right)))
        time.sleep(max(0.0, start + (i + 1) * block_s - time.perf_counter()))
    return np.concatenate(out).astype(np.float32)


def which_sample(played: np.ndarray, key: int, keys: dict, variants: dict, v: Variations) -> dict:
    """The (layer, rr) whose sample's opening best matches the played opening (normalised correlation, best
    lag within 5 ms after the onset), and the best of the other round robins and of the other layers."""
    scores = {}
    for layer in range(v.velocity_layers):
        for rr in range(v.round_robins):
            s = keys[key] if (layer, rr) == (v.main_layer, 0) else variants[(key, layer, rr)]
            ref = s.samples[: len(played)]
            lag = round(0.005 * s.sample_rate)
            best = 0.0
            for shift in range(0, lag + 1):
                a, b = played[shift: shift + len(ref)], ref
                n = min(len(a), len(b))
                c = float(np.dot(a[:n], b[:n]) / (np.linalg.norm(a[:n]) * np.linalg.norm(b[:n]) + 1e-12))
                best = max(best, c)
            scores[f"{layer}:{rr}"] = round(best, 4)
    top = max(scores, key=scores.get)
    layer = top.split(":")[0]
    same = [c for n, c in scores.items() if n != top and n.split(":")[0] == layer]
    other = [c for n, c in scores.items() if n.split(":")[0] != layer]
    return {"played": top, "correlation": scores[top], "next_same_layer": max(same, default=None),
            "next_other_layer": max(other, default=None), "scores": scores}


def markdown(result: dict) -> str:
    ex, v = result["exports"], result["variations"]
    lines = [f"# {result['sound']}: 88 keys x {v['velocity_layers']} layers x {v['round_robins']} round robins "
             f"in real players (refinement {result['refine']:g})", "",
             f"Layers by velocity: {v['layer_ranges']} (main: {v['main_layer']}); the SF2 holds "
             f"{ex['sf2']['font']['zones']} zones over {ex['sf2']['font']['samples']} samples.", "",
             f"Rendered {result['samples']} samples in {result['render_s']:.0f} s (CPU, {result['threads']} threads).", "",
             "| export | seconds | instrument file MB | pack MB |", "|---|---|---|---|"]
    for fmt, e in ex.items():
        size = f"{e['file_bytes'] / 1e6:.2f}" if e.get("file_bytes") else "-"
        pack = f"{e['pack_bytes'] / 1e6:.2f}" if e.get("pack_bytes") else "-"
        lines.append(f"| {fmt} | {e['seconds']:.2f} | {size} | {pack} |")
    lines += ["", "## FluidSynth", "",
              "| key | velocity (layer) | cents, layered SF2 | cents, plain SF2 | centroid Hz layered | centroid Hz plain "
              "| layered - plain (RMS ratio) |", "|---|---|---|---|---|---|---|"]
    for row in result["fluidsynth"].values():
        lines.append(f"| {row['key']} | {row['velocity']} ({row['layer']}) | {row['sf2_cents']} | {row['sf2_plain_cents']} "
                     f"| {row['sf2_centroid_hz']} | {row['sf2_plain_centroid_hz']} | {row['diff_from_plain']} |")
    lines += ["", "## Polyphone", "", "```", json.dumps(result["polyphone"], indent=1), "```", "", "## sfizz", ""]
    sfz = result["sfizz"]
    if "notes" in sfz:
        lines += ["| key | velocity | cents | played (layer:rr) | correlation | next, same layer | next, other layer |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {n['key']} | {n['velocity']} | {n['cents']} | {n['played']} | {n['correlation']} "
                  f"| {n['next_same_layer']} | {n['next_other_layer']} |" for n in sfz["notes"]]
    else:
        lines.append(json.dumps(sfz))
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> dict:
    v = Variations(round_robins=args.round_robins, velocity_layers=args.velocity_layers)
    engine = Engine(args.weights, device="cpu", num_threads=args.threads)
    keys, variants, render_s = render_instrument(engine, args.sound, v, args.refine, args.key_step)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        exports = timed_exports(keys, variants, v, folder)
        exports["sf2"]["font"] = sf2_summary(Path(exports["sf2"]["path"]))
        players = play_fluidsynth(exports, v, folder) if shutil.which("fluidsynth") else {}
        return {"sound": args.sound.name, "refine": args.refine, "threads": args.threads, "render_s": round(render_s, 1),
                "variations": {"velocity_layers": v.velocity_layers, "round_robins": v.round_robins,
                               "main_layer": v.main_layer,
                               "layer_ranges": [v.layer_range(layer) for layer in range(v.velocity_layers)]},
                "samples": len(keys) + len(variants), "exports": exports, "fluidsynth": players,
                "polyphone": polyphone(exports, folder),
                "sfizz": play_sfizz(exports, keys, variants, v)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sound", nargs="?", type=Path, default=default_weights_dir() / "demo" / "saw_pad.wav")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--velocity-layers", type=int, default=3)
    parser.add_argument("--round-robins", type=int, default=3)
    parser.add_argument("--refine", type=float, default=1.0, help="refinement strength, 0 (off) to 2; 1: the default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--key-step", type=int, default=1, help="every Nth key only (a quick check), plus KEYS")
    parser.add_argument("--keep", type=Path, default=None, help="keep the packs and renders in this folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for export_players.json and .md")
    args = parser.parse_args(argv)
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(result)
    write_results(args.out, "export_players", result, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
