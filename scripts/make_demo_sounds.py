"""Write the demo one-shots in ``assets/demo/`` and short demo renders of them (OGG).

    python scripts/make_demo_sounds.py inputs           # assets/demo/*.wav (synthesised here, ours)
    python scripts/make_demo_sounds.py renders          # assets/demo/renders/*.ogg: the shipped weights, refined

The inputs are made by this script rather than taken from the training fonts, so they are outside
the data set and free of third-party licences: a sung-vowel-like formant voice, a plucked string
with a body resonance, a detuned saw, an FM bell and a breathy noise flute. Each render plays the
generated instrument at C2, C3, C4, C5 and C6 (0.9 s each), after the input itself, as the app plays
it by default (refined, ``engine/refine.py``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo"
RATE = 32000


def _hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _env(t: np.ndarray, attack: float, decay: float, sustain: float = 0.0, release_at: float | None = None) -> np.ndarray:
    env = np.minimum(t / attack, 1.0) * (sustain + (1 - sustain) * np.exp(-t / decay))
    if release_at is not None:
        env *= np.clip(1 - (t - release_at) / 0.15, 0, 1)
    return env


def voice(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """'Ah' at A3: a glottal pulse train with vibrato through three formant resonators."""
    f0 = _hz(57) * (1 + 0.006 * np.sin(2 * np.pi * 5.5 * t) * np.minimum(t / 0.3, 1))
    phase = np.cumsum(f0) / RATE
    source = np.zeros_like(t)
    for k in range(1, int(7000 / _hz(57))):
        source += np.sin(2 * np.pi * k * phase) / k ** 1.2
    source += 0.05 * rng.standard_normal(len(t))  # breath, shaped by the same formants
    spec = np.fft.rfft(source)
    freqs = np.fft.rfftfreq(len(source), 1 / RATE)
    shape = sum(gain / (1 + ((freqs - fc) / (bw / 2)) ** 2)
                for fc, bw, gain in ((730, 90, 1.0), (1090, 110, 0.5), (2440, 170, 0.25)))  # /a/ formants
    out = np.fft.irfft(spec * (shape + 0.02), len(source))
    return out * _env(t, 0.08, 10.0, 1.0, release_at=1.3)


def pluck(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Karplus-Strong at E3 with a two-pole body resonance."""
    period = int(round(RATE / _hz(52)))
    buf = rng.uniform(-1, 1, period)
    out = np.zeros(len(t))
    for i in range(len(t)):
        out[i] = buf[i % period]
        buf[i % period] = 0.497 * (buf[i % period] + buf[(i + 1) % period])
    body = np.zeros_like(out)
    r, w = 0.995, 2 * np.pi * 190 / RATE
    for i in range(2, len(out)):
        body[i] = out[i] + 2 * r * np.cos(w) * body[i - 1] - r * r * body[i - 2]
    return out + 0.02 * body / np.abs(body).max()


def saw(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two detuned band-limited saws at C3 with a closing low-pass."""
    out = np.zeros_like(t)
    for detune in (-0.08, 0.08):
        f0 = _hz(48 + detune)
        for k in range(1, int(RATE / 2 / f0)):
            cutoff = 300 + 5000 * np.exp(-t / 0.4)
            out += np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k / (1 + (k * f0 / cutoff) ** 4)
    return out * _env(t, 0.01, 10.0, 1.0, release_at=1.3)


def bell(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two-operator FM bell at G4 (ratio 2: odd partials, bright strike decaying to a sine)."""
    fc = _hz(67)
    index = 4 * np.exp(-t / 0.6)
    return np.sin(2 * np.pi * fc * t + index * np.sin(2 * np.pi * 2.0 * fc * t)) * np.exp(-t / 1.2)


def flute(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Breathy flute at D5: a few soft harmonics plus band-limited noise following the envelope."""
    f0 = _hz(74) * (1 + 0.004 * np.sin(2 * np.pi * 4.8 * t))
    phase = np.cumsum(f0) / RATE
    tone = np.sin(2 * np.pi * phase) + 0.3 * np.sin(4 * np.pi * phase) + 0.08 * np.sin(6 * np.pi * phase)
    noise = np.convolve(rng.standard_normal(len(t)), np.hanning(9) / 4.5, mode="same")
    return (tone + 0.08 * noise) * _env(t, 0.12, 10.0, 1.0, release_at=1.3)


SOUNDS = {"voice_ah": voice, "pluck": pluck, "saw_pad": saw, "fm_bell": bell, "breath_flute": flute}


def write_inputs() -> None:
    DEMO.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(1.5 * RATE)) / RATE
    for name, make in SOUNDS.items():
        x = make(t, np.random.default_rng(7))
        x = 0.8 * x / np.abs(x).max()
        sf.write(DEMO / f"{name}.wav", x.astype(np.float32), RATE, subtype="PCM_16")
        print(DEMO / f"{name}.wav")


def write_renders(vocoder: str) -> None:
    sys.path.insert(0, str(ROOT))
    from engine.instrument import Engine, EngineConfig
    from engine.refine import DEFAULT_REFINEMENT

    out_dir = DEMO / "renders"
    out_dir.mkdir(parents=True, exist_ok=True)
    engine = Engine(vocoder=vocoder, cfg=EngineConfig(output_rate=RATE))
    keys = [36, 48, 60, 72, 84]
    piece = int(0.9 * RATE)
    for name in SOUNDS:
        sample = engine.load_sample(DEMO / f"{name}.wav")
        cond = engine.conditioning(sample, refine=DEFAULT_REFINEMENT)
        waves = engine.render_waves(cond, keys, RATE)
        src = sf.read(DEMO / f"{name}.wav", dtype="float32")[0][:piece]
        parts = [src * np.clip((piece - np.arange(len(src))) / 800, 0, 1), np.zeros(RATE // 4, np.float32)]
        for w in waves:
            w = w[:piece] * np.clip((piece - np.arange(min(piece, len(w)))) / 800, 0, 1)
            parts.append(0.8 * w / max(np.abs(w).max(), 1e-6))
        sf.write(out_dir / f"{name}.ogg", np.concatenate(parts).astype(np.float32), RATE, format="OGG",
                 subtype="VORBIS")
        print(out_dir / f"{name}.ogg", f"(input pitch {sample.midi:.1f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("inputs", "renders"))
    parser.add_argument("--vocoder", default="auto")
    args = parser.parse_args(argv)
    write_inputs() if args.what == "inputs" else write_renders(args.vocoder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
