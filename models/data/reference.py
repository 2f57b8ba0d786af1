"""``hypergan data check-fonts``: every preset rendered by tinysoundfont is compared with fluidsynth.

tinysoundfont (the renderer the GPU machine can carry) ignores SoundFont modulators, so presets
built on them (MuseScore General's pianos: velocity-crossfaded layers, filter modulation) come out
wrong: too quiet, dull, or missing their tone at high keys. fluidsynth (the Debian CLI, only on
developer machines) is the reference. For a few keys and velocities per preset, both renders are
peak-normalised and compared by their time-averaged log-mel spectrum, their loudness envelope and
their measured pitch; presets that disagree are written to ``font_check.json`` and left out of
builds. Run it where fluidsynth is installed; commit the JSON.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from models.signal.audio import Audio
from models.data.render import FontRenderer, NoteTiming, distinct_velocities
from models.data.soundfont import FontError, Preset
from models.data.sources import FONT_SOURCES, find_font
from models.signal.pitch import estimate_pitch

DEFAULT_OUT = Path(__file__).with_name("font_check.json")


@dataclass(frozen=True)
class CheckConfig:
    """Which notes are compared, and how far apart tinysoundfont and fluidsynth may be."""

    sample_rate: int = 16000
    num_samples: int = 32640            # SHIPPED_MEL's clip
    hold_fraction: float = 0.75
    gap_s: float = 0.5                  # silence between notes in the fluidsynth render
    keys: tuple[int, ...] = (36, 60, 84, 100)
    velocities: tuple[int, ...] = (60, 95, 127)
    n_bands: int = 48
    floor_db: float = -60.0
    max_spectrum_db: float = 6.0        # mean |difference| of the average log-mel spectrum
    max_envelope_db: float = 8.0        # mean |difference| of the 20 ms loudness envelope
    max_pitch_mismatch: int = 1         # notes on key in fluidsynth but not in tinysoundfont


def _bands(cfg: CheckConfig) -> np.ndarray:
    """Triangular mel filterbank ``[n_bands, n_fft/2+1]`` for an FFT of 1024 points."""
    n_fft = 1024
    freqs = np.fft.rfftfreq(n_fft, 1 / cfg.sample_rate)
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges = 700 * (10 ** (np.linspace(mel(30), mel(cfg.sample_rate / 2), cfg.n_bands + 2) / 2595) - 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)


def note_features(x: np.ndarray, cfg: CheckConfig, fb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(average log-mel spectrum in dB re its max ``[n_bands]``, 20 ms envelope in dB re max ``[F]``)."""
    x = x / max(float(np.abs(x).max()), 1e-12)
    hop, n_fft = 256, 1024
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, (0, n_fft)), n_fft)[::hop] * np.hanning(n_fft)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)
    spec = 10 * np.log10(fb @ power + 1e-12)
    spec = np.maximum(spec - spec.max(), cfg.floor_db)
    hop_env = cfg.sample_rate // 50
    rms = np.sqrt(np.mean(x[: len(x) // hop_env * hop_env].reshape(-1, hop_env) ** 2, axis=1))
    env = np.maximum(20 * np.log10(rms / max(rms.max(), 1e-12) + 1e-12), cfg.floor_db)
    return spec, env


def fluidsynth_render(font: str, notes: list[tuple[int, int, int, int]], cfg: CheckConfig, workdir: Path,
                      file_format: str = "s16") -> np.ndarray:
    """Render ``(bank, program, key, velocity)`` notes with the fluidsynth CLI -> ``[n, num_samples]``.

    ``file_format`` is fluidsynth's ``-O`` (``float`` keeps quiet notes free of 16-bit quantisation noise).
    """
    import mido
    import soundfile

    if shutil.which("fluidsynth") is None:
        raise FontError("the font check needs the fluidsynth command (Debian package fluidsynth)")
    tpb, tempo = 1000, 1_000_000  # 1000 ticks per second
    mid = mido.MidiFile(ticks_per_beat=tpb)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=tempo))
    clip_s = cfg.num_samples / cfg.sample_rate
    hold_ms = int(round(clip_s * cfg.hold_fraction * 1000))
    slot_ms = int(round((clip_s + cfg.gap_s) * 1000))
    for bank, program, key, vel in notes:
        track.append(mido.Message("control_change", control=0, value=bank, time=0))
        track.append(mido.Message("program_change", program=program, time=0))
        track.append(mido.Message("note_on", note=key, velocity=vel, time=0))
        track.append(mido.Message("note_off", note=key, velocity=0, time=hold_ms))
        track.append(mido.Message("control_change", control=120, value=0, time=int(clip_s * 1000) - hold_ms))
        track.append(mido.Message("control_change", control=121, value=0, time=slot_ms - int(clip_s * 1000)))
    track.append(mido.MetaMessage("end_of_track", time=1000))
    midi_path, wav_path = workdir / "notes.mid", workdir / "notes.wav"
    mid.save(midi_path)
    subprocess.run(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "1.0", "-r", str(cfg.sample_rate),
                    "-O", file_format, "-F", str(wav_path), font, str(midi_path)], check=True, capture_output=True)
    wave, sr = soundfile.read(wav_path, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    slot = int(round(slot_ms / 1000 * sr))
    out = np.zeros((len(notes), cfg.num_samples), np.float32)
    for i in range(len(notes)):
        seg = wave[i * slot: i * slot + cfg.num_samples]
        out[i, : len(seg)] = seg
    return out


def _check_notes(preset: Preset, cfg: CheckConfig) -> list[tuple[int, int]]:
    keys = [k for k in cfg.keys if k in set(preset.keys())]
    return [(k, v) for k in keys for v in distinct_velocities(preset, k, cfg.velocities)]


def compare_preset(tsf: np.ndarray, ref: np.ndarray, keys: list[int], cfg: CheckConfig, fb: np.ndarray) -> dict:
    spec_d, env_d, level_db, mismatch = [], [], [], 0
    for a, b, key in zip(tsf, ref, keys):
        pa, pb = float(np.abs(a).max()), float(np.abs(b).max())
        if pb < 1e-5:
            continue  # fluidsynth is silent too: nothing to compare
        level_db.append(20 * np.log10(max(pa, 1e-9) / pb))
        if pa < 1e-6:
            spec_d.append(-cfg.floor_db)
            env_d.append(-cfg.floor_db)
            mismatch += 1
            continue
        sa, ea = note_features(a, cfg, fb)
        sb, eb = note_features(b, cfg, fb)
        spec_d.append(float(np.abs(sa - sb).mean()))
        active = (ea > cfg.floor_db / 2) | (eb > cfg.floor_db / 2)
        env_d.append(float(np.abs(ea - eb)[active].mean()) if active.any() else 0.0)
        qa = estimate_pitch(Audio((a / pa).astype(np.float32), cfg.sample_rate))
        qb = estimate_pitch(Audio((b / pb).astype(np.float32), cfg.sample_rate))
        # Only a tone that fluidsynth plays at its key and tinysoundfont does not counts: on drums
        # and noises the estimate itself wanders between two renders that sound alike.
        ref_on_key = qb.confidence >= 0.5 and abs(qb.midi - key) <= 0.5
        if ref_on_key and not (qa.confidence >= 0.5 and abs(qa.midi - key) <= 0.5):
            mismatch += 1
    if not spec_d:
        return dict(notes=0)
    return dict(notes=len(spec_d), spectrum_db=round(float(np.mean(spec_d)), 2),
                envelope_db=round(float(np.mean(env_d)), 2), level_db=round(float(np.median(level_db)), 1),
                pitch_mismatch=mismatch)


def verdict(m: dict, cfg: CheckConfig) -> str:
    """Empty when the preset passes, else the reason it is dropped."""
    if not m.get("notes"):
        return ""
    reasons = []
    if m["spectrum_db"] > cfg.max_spectrum_db:
        reasons.append(f"spectrum differs by {m['spectrum_db']} dB")
    if m["envelope_db"] > cfg.max_envelope_db:
        reasons.append(f"envelope differs by {m['envelope_db']} dB")
    if m["pitch_mismatch"] > cfg.max_pitch_mismatch:
        reasons.append(f"pitch differs on {m['pitch_mismatch']} notes")
    return "; ".join(reasons)


def check_font(source: str, font_dir: str | None, cfg: CheckConfig, workers: int,
               progress: Callable[[str], None], slimmed_dir: str | None = None) -> dict:
    """Verdicts for one font. With ``slimmed_dir``, tinysoundfont plays the slimmed copy found there
    (its presets only) while fluidsynth plays the original: how close the GPU build's notes stay."""
    from models.data.soundfont import read_font

    info = read_font(find_font(FONT_SOURCES[source], font_dir))
    presets = info.melodic()
    tsf_path = info.path
    if slimmed_dir:
        slim = read_font(find_font(FONT_SOURCES[source], slimmed_dir))
        tsf_path = slim.path
        kept = {(p.bank, p.program) for p in slim.presets}
        presets = [p for p in presets if (p.bank, p.program) in kept]
    plan = [(p, _check_notes(p, cfg)) for p in presets]
    flat = [(p.bank, p.program, k, v) for p, notes in plan for k, v in notes]
    progress(f"{source}: {len(presets)} presets, {len(flat)} notes; rendering with fluidsynth and tinysoundfont")
    chunks = np.array_split(np.arange(len(flat)), max(workers, 1))
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max(workers, 1)) as pool:
        dirs = [Path(tmp) / str(i) for i in range(len(chunks))]
        for d in dirs:
            d.mkdir()
        futures = [pool.submit(fluidsynth_render, info.path, [flat[i] for i in c], cfg, d)
                   for c, d in zip(chunks, dirs) if len(c)]
        renderer = FontRenderer(tsf_path, NoteTiming(cfg.sample_rate, cfg.num_samples, cfg.hold_fraction))
        tsf = np.stack([renderer.note(b, p, k, v) for b, p, k, v in flat]) if flat else np.zeros((0, cfg.num_samples))
        ref = np.concatenate([f.result() for f in futures]) if futures else np.zeros_like(tsf)
    fb = _bands(cfg)
    metrics, drop, row = {}, {}, 0
    for preset, notes in plan:
        tag = f"{preset.bank}:{preset.program}"
        sl = slice(row, row + len(notes))
        row += len(notes)
        m = compare_preset(tsf[sl], ref[sl], [k for k, _ in notes], cfg, fb)
        metrics[tag] = dict(m, name=preset.name)
        why = verdict(m, cfg)
        if why:
            drop[tag] = why
    progress(f"{source}: {len(drop)} of {len(presets)} presets disagree with fluidsynth")
    return dict(source=source, file=Path(tsf_path).name, presets=len(presets), drop=drop, metrics=metrics)


def check_fonts(sources: tuple[str, ...], font_dir: str | None = None, out: str | None = None, workers: int = 2,
                progress: Callable[[str], None] = lambda _m: None, cfg: CheckConfig = CheckConfig(),
                slimmed_dir: str | None = None) -> Path:
    """Check every preset of the given fonts; write or update the verdicts JSON (default: beside this
    module), keeping the entries of fonts not checked this time."""
    from models.data.soundfont import read_font

    version = subprocess.run(["fluidsynth", "--version"], capture_output=True, text=True).stdout.split("\n")[0] \
        if shutil.which("fluidsynth") else "missing"
    path = Path(out) if out else DEFAULT_OUT
    # Verdicts of fonts not checked this time are kept: checking one new font must not drop the others'.
    fonts = json.loads(path.read_text())["fonts"] if path.is_file() else {}
    for source in sources:
        result = check_font(source, font_dir, cfg, workers, progress, slimmed_dir)
        sha = read_font(find_font(FONT_SOURCES[source], font_dir)).sha256
        if slimmed_dir:
            # Verdicts on the slimmed copy sit under the original's entry: a build rendering from
            # a slimmed copy leaves out both lists (sources.plan_instruments).
            if sha not in fonts:
                raise FontError(f"{source}: check the original font first (check-fonts without --slimmed)")
            fonts[sha]["slimmed"] = dict(drop=result["drop"], metrics=result["metrics"], presets=result["presets"])
        else:
            fonts[sha] = dict(result, slimmed=fonts.get(sha, {}).get("slimmed", {}))
    path.write_text(json.dumps(dict(reference=version, settings=asdict(cfg), fonts=fonts), indent=1, sort_keys=True) + "\n")
    progress(f"wrote {path}")
    return path
