"""The inference engine: a one-shot sound (or a mix of several) -> 88 playable keys.

Plain Python, no Qt; the GUI, the CLI and the tests drive it alike. Typical use::

    engine = Engine()                                  # shipped weights, CPU/CUDA/MPS
    a = engine.load_sample("pluck.wav")               # load, trim, estimate pitch
    keys = engine.render(a, on_key=lambda midi, key: ...)   # progressive: own key first

Per sample, ``h = f(x)``, ``x_init = G(h, 0, p_in)``, ``h_init = f(x_init)`` and the offsets
``H(h, h_init)`` are computed once and cached (memory LRU keyed by the audio's content hash,
optionally on disk); rendering a key is then one G forward and one mel inversion. The offsets come
from ``models.nets.hyper.refine`` (H's passes exactly as in training).
"""
from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torchaudio

from engine.cache import TensorCache
from engine.device import configure_threads, cpu_cores, intra_op_threads, resolve_device
from engine.key_cache import KeySample, VariantKey, Variations
from engine.keys import KeyConfig, batches, finish_key, loudness_db, progressive_order
from engine.mix import Mix, as_mix
from engine.networks import NetworkClasses, load_networks
from engine.onset import slow_attack
from engine.pipeline import ordered_map
from engine.refine import (FarKeys, MelDetail, RefineConfig, detail_weight, mel_detail, mel_gap, misses_pitch,
                           moves, moving_detail, refine_offsets, repitch, targets)
from models.signal.audio import Audio
from models.errors import SilentAudioError, UserError
from models.nets.hyper import refine as hyper_offsets
from models.signal.mel import LogMel, MelInverter
from models.units import ALL_KEYS, HIGHEST_KEY, LOWEST_KEY, OUTPUT_SAMPLE_RATE, clamp_key

OnKey = Callable[[int, KeySample], None]
OnVariant = Callable[[int, int, int, KeySample], None]   # midi, velocity layer, round robin, key


def default_weights_dir() -> Path:
    """The checkout's ``assets/`` folder, where the shipped weights live.

    ``assets/`` is data beside the packages, not a package: the sampler is installed editable from a
    checkout (``scripts/setup.sh``), so the folder sits next to ``engine/``.
    """
    return Path(__file__).resolve().parent.parent / "assets"


@dataclass(frozen=True)
class EngineConfig:
    """Rendering settings; the networks' own settings travel in their weights."""

    output_rate: int = OUTPUT_SAMPLE_RATE  # the audio device's rate: keys are resampled once, at render
    max_batch: int | None = None      # keys per G forward (batches grow 1, 2, 4, ...); None: 1 CPU, 64 GPU
    cache_bytes: int = 256 << 20      # memory for cached h / offsets
    griffin_lim_iters: int = 32       # the fallback inverter's iterations ...
    griffin_lim_project: bool = True  # ... and its per-iteration mel projection (~40 % of its CPU time)
    cuda_graphs: bool = True          # on a GPU, replay refinement's step from a CUDA graph (same updates, 2x faster)
    key: KeyConfig = field(default_factory=KeyConfig)


@dataclass(frozen=True)
class Sample:
    """A loaded one-shot: mono audio at the model's rate, exactly one clip long, and its pitch."""

    name: str
    audio: Audio
    midi: float                  # estimated (or given) pitch, fractional MIDI
    confidence: float            # of the pitch estimate; 1.0 when given
    content_hash: str            # of the clip's samples: the cache key

    @property
    def root_note(self) -> int:
        """The key the sample is taken to sound at (``midi`` rounded, within the piano's range)."""
        return clamp_key(self.midi)


@dataclass(frozen=True)
class NearRoot:
    """Keys within ``semitones`` of the sample's root play the sample itself (repitched); the
    ``fade`` keys beyond cross-fade linearly into the generated keys."""

    sample: Sample
    semitones: int
    fade: int = 2

    def weight(self, offset: int) -> float:
        """Share of the sample itself at ``offset`` semitones from the root, in [0, 1]."""
        distance = abs(offset)
        if distance <= self.semitones:
            return 1.0
        return max(0.0, 1.0 - (distance - self.semitones) / (self.fade + 1))


@dataclass(frozen=True)
class Conditioning:
    """What G needs for any key of one timbre: h ``[1, h_dim]`` and offsets ``{layer: [1, C_out, C_in]}``.

    ``mel_correction`` (natural-log gain per mel bin ``[n_mels]``, or per bin and frame ``[n_mels,
    n_frames]``, from refinement) is added to every key; ``mel_detail`` (the root's fine gap) is added
    to keys near the root, moved to their pitch; ``far`` says what keys far from the root play instead
    of the refined offsets and correction (H's own, :class:`FarKeys`). ``z [1, z_dim]`` is G's noise
    input (None: zeros, the main variation; see engine/variations.py). ``attack_ratio`` > 1 lengthens
    every key's attack that many times (a softer velocity layer; engine/onset.py).
    """

    h: torch.Tensor
    deltas: dict[str, torch.Tensor] | None
    root_note: int
    mel_correction: torch.Tensor | None = None
    refined: bool = False
    z: torch.Tensor | None = None
    mel_detail: MelDetail | None = None
    attack_ratio: float = 1.0
    far: FarKeys | None = None


class Engine:
    """Loads the networks once; turns samples into keys (see the module docstring)."""

    def __init__(self, weights_dir: str | Path | None = None, device: str | torch.device = "auto",
                 vocoder: str | MelInverter = "auto", cfg: EngineConfig = EngineConfig(),
                 cache_dir: str | Path | None = None, num_threads: int | None = None,
                 classes: NetworkClasses | None = None) -> None:
        self.cfg = cfg
        self.device = resolve_device(device)
        # CPU threads the engine keeps busy: on CPU, that many single-threaded workers render
        # batches side by side (see engine/pipeline.py); on a GPU one worker feeds it.
        self.num_threads = int(num_threads or cpu_cores())
        self.workers = self.num_threads if self.device.type == "cpu" else 1
        configure_threads(1 if self.device.type == "cpu" else self.num_threads)
        self.weights_dir = Path(weights_dir or default_weights_dir())
        self.nets = load_networks(self.weights_dir, self.device, vocoder, classes,
                                  dict(n_iter=cfg.griffin_lim_iters, project_mel=cfg.griffin_lim_project))
        self.mel_cfg = self.nets.mel
        self._log_mel = LogMel(self.mel_cfg).to(self.device)
        self._band_centres_hz = self.mel_cfg.band_centres_hz()   # refinement's correction and detail read them
        disk = Path(cache_dir) / self.nets.fingerprint if cache_dir is not None else None
        self.cache = TensorCache(cfg.cache_bytes, disk, self.device)
        self._generation = 0
        self._generation_lock = threading.Lock()
        self._resamplers: dict[int, torch.nn.Module] = {}

    # -- samples -----------------------------------------------------------------------------
    def load_sample(self, source: str | Path | Audio, name: str | None = None, midi: float | None = None) -> Sample:
        """Load a one-shot (a file, or mono Audio at the model's rate) and estimate its pitch.

        ``midi`` overrides the estimate. The clip is cut or zero-padded to the model's length.
        Raises the AudioFileError family for unusable files.
        """
        c = self.mel_cfg
        if isinstance(source, Audio):
            if not source.is_mono:
                raise UserError("give the engine mono audio (load_audio mixes files down)")
            source.require_rate(c.sample_rate)
            audio, default_name = source, "sample"
        else:
            from models.signal.audio import load_audio

            path = Path(source)
            audio, default_name = load_audio(path, c.sample_rate, max_duration_s=c.duration_s), path.stem
        samples = np.zeros(c.num_samples, np.float32)
        clip = audio.samples[: c.num_samples]
        samples[: len(clip)] = clip
        if not np.any(np.abs(samples) > 1e-4):
            raise SilentAudioError(f"{name or default_name}: the sound is silent")
        audio = Audio(samples, c.sample_rate)
        confidence = 1.0
        if midi is None:
            from models.signal.pitch import estimate_pitch

            estimate = estimate_pitch(audio)
            midi, confidence = float(estimate.midi), float(estimate.confidence)
        digest = hashlib.sha1(samples.tobytes() + str(c.sample_rate).encode()).hexdigest()
        return Sample(name=name or default_name, audio=audio, midi=float(midi), confidence=confidence,
                      content_hash=digest)

    @torch.inference_mode()
    def timbre(self, sample: Sample) -> torch.Tensor:
        """h = f(x) of a sample ``[1, h_dim]`` at full-scale peak (the training notes' level), cached."""
        key = f"h:{sample.content_hash}"
        entry = self.cache.get(key)
        if entry is None:
            entry = {"h": self.nets.f(self._log_mel(self._peak_normalised(sample)[None]))}
            self.cache.put(key, entry, persist=True)
        return entry["h"]

    @torch.inference_mode()
    def conditioning(self, sample_a: Sample | Mix, sample_b: Sample | None = None, alpha: float = 0.0,
                     refine: RefineConfig | None = None, cancel: threading.Event | None = None,
                     progress: Callable[[int, int], None] | None = None) -> Conditioning:
        """h and offsets for one sample, the mix ``(1 - alpha) h_A + alpha h_B`` or a :class:`Mix`; cached.

        Without ``refine``, h is the weighted sum ``sum alpha_i h_i`` and H refines G for the mixed h.
        With ``refine``, each sound's conditioning is first refined towards the sound itself
        (:meth:`refined`); a mix blends the refined conditionings (h, offsets and mel correction
        alike, by the weights), so a weight of 1 gives exactly that single refined sound.
        """
        mix = as_mix(sample_a, sample_b, alpha)
        if refine is not None and refine.enabled:
            mix = mix.sounding()      # a sound of weight 0 adds nothing: no refinement to run
            conds = [self.refined(s, refine, cancel, progress) for s in mix.sounds]
            return conds[0] if len(conds) == 1 else _blend(conds, mix.weights, self._band_centres_hz)
        if len(mix.sounds) == 1:
            key = f"cond:{mix.sounds[0].content_hash}:{mix.sounds[0].root_note}"
        else:
            key = "mix:" + ":".join(f"{s.content_hash}:{s.root_note}:{w!r}" for s, w in zip(mix.sounds, mix.weights))
        root = mix.sounds[0].root_note if len(mix.sounds) == 1 else mix.root_note
        entry = self.cache.get(key)
        if entry is None:
            h = self.timbre(mix.sounds[0])
            if len(mix.sounds) > 1:
                h = sum((w * self.timbre(s) for s, w in zip(mix.sounds[1:], mix.weights[1:])), mix.weights[0] * h)
            entry = {"h": h}
            if self.nets.H is not None:
                midi = torch.full((1,), root, dtype=torch.long, device=self.device)
                deltas = hyper_offsets(self.nets.G, self.nets.f, self.nets.H, h, midi)   # {layer: [1, C_out, C_in]}
                entry.update({f"delta.{name}": d for name, d in deltas.items()})
            self.cache.put(key, entry, persist=len(mix.sounds) == 1)
        deltas = _deltas_of(entry)
        return Conditioning(h=entry["h"], deltas=deltas if self.nets.H is not None else None, root_note=root)

    def refined(self, sample: Sample, cfg: RefineConfig, cancel: threading.Event | None = None,
                progress: Callable[[int, int], None] | None = None) -> Conditioning:
        """The sample's conditioning after refinement (see ``engine/refine.py``); cached like the offsets.

        A cancelled refinement returns the unrefined conditioning and caches nothing.
        """
        base = self.conditioning(sample)
        key = _refined_key(sample, cfg)
        entry = self.cache.get(key)
        if entry is None:
            with torch.inference_mode(False), intra_op_threads(self.num_threads):
                entry = self._refine(sample, base, cfg, cancel, progress)
            if entry is None:
                return base
            self.cache.put(key, entry, persist=True)
        deltas = _deltas_of(entry)
        detail = entry.get("mel_detail")
        # far keys take the refined correction, or the gap H's own root note leaves when asked for
        far = entry.get("far_correction", entry.get("mel_correction")) if math.isfinite(cfg.far_from) else None
        return Conditioning(h=base.h, deltas=deltas or None, root_note=base.root_note,
                            mel_correction=entry.get("mel_correction"), refined=True,
                            mel_detail=None if detail is None else MelDetail(
                                detail, cfg.detail_span, cfg.detail_fade, float(entry["detail_tuning"]),
                                entry.get("detail_contour")),
                            far=None if far is None or not base.deltas else FarKeys(
                                base.deltas, far, cfg.far_from, cfg.far_fade, cfg.pitch_check_cents,
                                cfg.pitch_check_blend))

    def refinement_cached(self, sample: Sample, cfg: RefineConfig) -> bool:
        """Whether :meth:`refined` has this sample's refinement at hand (no optimisation to run)."""
        return self.cache.get(_refined_key(sample, cfg)) is not None

    def _refine(self, sample: Sample, base: Conditioning, cfg: RefineConfig, cancel: threading.Event | None,
                progress: Callable[[int, int], None] | None) -> dict[str, torch.Tensor] | None:
        wave = self._peak_normalised(sample)
        keys, target_mels = targets(wave, base.root_note, self._log_mel, cfg, LOWEST_KEY, HIGHEST_KEY)
        h = base.h.clone()                                         # out of inference mode: autograd may see it
        start = {n: d.clone() for n, d in (base.deltas or self._zero_deltas()).items()}
        pitch_keys = [base.root_note + o for o in cfg.pitch_keys if LOWEST_KEY <= base.root_note + o <= HIGHEST_KEY]
        result = refine_offsets(lambda midi, d: self._G(h, midi, d), start, keys, target_mels, cfg, cancel, progress,
                                torch.tensor(pitch_keys, dtype=torch.long, device=self.device) if pitch_keys else None,
                                graphs=self.cfg.cuda_graphs)
        if result.steps_done < cfg.steps:
            return None
        entry = {f"delta.{n}": d for n, d in result.deltas.items()}
        if cfg.mel_correction > 0:
            with torch.no_grad():
                out = self._G(h, keys[:1], result.deltas)[0]
            root_hz = 440.0 * 2.0 ** ((base.root_note - 69) / 12.0)
            entry["mel_correction"] = mel_gap(out, target_mels[0], cfg, self._band_centres_hz, root_hz)
            if math.isfinite(cfg.far_from) and base.deltas and cfg.far_own_gap:  # far keys' own correction
                with torch.no_grad():
                    out_h = self._G(h, keys[:1], base.deltas)[0]
                entry["far_correction"] = mel_gap(out_h, target_mels[0], cfg, self._band_centres_hz, root_hz)
            if cfg.detail > 0:
                entry.update(self._detail(out, target_mels[0], entry["mel_correction"], cfg, root_hz))
                entry["detail_tuning"] = torch.tensor(_tuning(sample))
        return entry

    def _detail(self, out: torch.Tensor, target: torch.Tensor, correction: torch.Tensor, cfg: RefineConfig,
                root_hz: float) -> dict[str, torch.Tensor]:
        """The root's detail; a sound whose harmonics keep moving (speech) keeps all of it, with its pitch
        contour, along which G's near keys are then bent (:meth:`MelDetail.follow_contour`)."""
        if not moves(target, cfg):
            return {"mel_detail": mel_detail(out, target, correction, cfg, self._band_centres_hz, root_hz)}
        detail, contour = moving_detail(out, target, correction, cfg, self._band_centres_hz)
        return {"mel_detail": detail, "detail_contour": contour}

    def _peak_normalised(self, sample: Sample) -> torch.Tensor:
        """The sample's wave ``[T]`` on the device at full-scale peak.

        f learnt timbre from peak-normalised notes (+-6 dB): a quiet recording is the same timbre, and
        refinement's targets sit at the level G's notes were trained at.
        """
        wave = torch.from_numpy(sample.audio.samples).to(self.device)
        return wave / wave.abs().max().clamp_min(1e-4)

    def _zero_deltas(self) -> dict[str, torch.Tensor]:
        """Zero offsets on every modulated conv but the to-mel skips (G alone has no H to start from)."""
        return {name: torch.zeros(1, c_out, c_in, device=self.device)
                for name, (c_out, c_in) in self.nets.G.modulated_layers().items() if not name.endswith("tomel")}

    # -- rendering ---------------------------------------------------------------------------
    @torch.inference_mode()
    def render_mels(self, cond: Conditioning, midi_notes: list[int]) -> torch.Tensor:
        """Log-mels ``[B, n_mels, n_frames]`` of the given keys in one G forward."""
        midi = torch.tensor(midi_notes, dtype=torch.long, device=self.device)
        deltas, correction = cond.deltas, cond.mel_correction          # correction: [n_mels] or [n_mels, n_frames]
        if cond.far is not None and deltas and bool((cond.far.share(cond.root_note, midi) > 0).any()):
            deltas, correction = cond.far.blend(cond.root_note, midi, deltas, correction)  # per key
        mels = self._G(cond.h, midi, deltas, cond.z)
        if correction is not None:
            mels = mels + (correction[None, :, None] if correction.dim() == 1 else
                           correction[None] if correction.dim() == 2 else correction)
        if cond.mel_detail is not None:
            mels = cond.mel_detail.follow_contour(mels, cond.root_note, midi, self._band_centres_hz)
            mels = mels + cond.mel_detail.at_keys(cond.root_note, midi, self._band_centres_hz)
        return mels

    @torch.inference_mode()
    def invert(self, mels: torch.Tensor, sample_rate: int) -> np.ndarray:
        """Log-mels ``[B, M, F]`` -> waves ``[B, T]`` float32 at ``sample_rate`` (not yet looped or levelled)."""
        return self._at_rate(self._vocode(mels), sample_rate)

    def _vocode(self, mels: torch.Tensor) -> torch.Tensor:
        """Log-mels ``[B, M, F]`` -> waves ``[B, num_samples]`` at the model rate, on the device."""
        # Within what a full-scale signal can reach (an untrained G may overshoot and overflow exp).
        mels = mels.float().clamp(self.mel_cfg.log_min, math.log(8.0 * self.mel_cfg.win_length))
        return torch.nan_to_num(self.nets.inverter(mels), nan=0.0, posinf=0.0, neginf=0.0)

    def _at_rate(self, waves: torch.Tensor, sample_rate: int) -> np.ndarray:
        if sample_rate != self.mel_cfg.sample_rate:
            waves = self._resampler(sample_rate)(waves)
        return waves.float().cpu().numpy()

    @torch.inference_mode()
    def render_waves(self, cond: Conditioning, midi_notes: list[int], sample_rate: int,
                     near_root: NearRoot | None = None) -> np.ndarray:
        """Waves ``[B, T]`` of the given keys: one G forward, then the vocoder.

        Refined keys near the root that miss their pitch play a mix with the far keys' note, or that
        note, where on pitch (:meth:`_on_pitch`). With ``near_root``, keys close to the sound's root play the
        sound itself, repitched (see :class:`NearRoot`); then ``cond.attack_ratio`` slows the attacks.
        """
        mels = self.render_mels(cond, midi_notes)
        waves = self._vocode(mels)
        if cond.far is not None and math.isfinite(cond.far.pitch_check_cents):
            waves = self._on_pitch(cond, midi_notes, mels, waves)
        waves = self._at_rate(waves, sample_rate)
        if near_root is not None:
            waves = self._blend_near_root(waves, midi_notes, sample_rate, near_root)
        if cond.attack_ratio > 1.0:
            waves = np.stack([slow_attack(w, sample_rate, cond.attack_ratio) for w in waves])
        return waves

    def _on_pitch(self, cond: Conditioning, midi_notes: list[int], mels: torch.Tensor,
                  waves: torch.Tensor) -> torch.Tensor:
        """``waves [B, T]`` (model rate; from ``mels``) with each refined key that misses its pitch replaced, where on
        pitch, by its log-mel mixed ``far.check_blend`` of the way from the far keys' conditioning
        (H's offsets, the far correction, no detail), or else by the far note alone.

        Checked are the keys whose refined note differs from the far one (nearer than the far keys'
        full hand-over, or with some of the root's detail) but the root itself, which plays the sound:
        a bell's or a phrase's own unclear pitch can carry onto its neighbours, and the far
        conditioning keeps G's.
        """
        far, root, rate = cond.far, cond.root_note, self.mel_cfg.sample_rate
        midi = torch.tensor(midi_notes, device=self.device)
        differs = far.share(root, midi) < 1.0
        if cond.mel_detail is not None:
            differs |= detail_weight(midi - root, cond.mel_detail.span, cond.mel_detail.fade) > 0
        checked = torch.nonzero(differs & (midi != root)).flatten().tolist()
        if not checked:
            return waves
        host = waves[checked].float().cpu().numpy()
        missed = [i for i, w in zip(checked, host) if misses_pitch(w, rate, midi_notes[i], far.pitch_check_cents)]
        if not missed:
            return waves
        keys = [midi_notes[i] for i in missed]
        plain = replace(cond, deltas=far.deltas, mel_correction=far.mel_correction, mel_detail=None, far=None)
        far_mels = self.render_mels(plain, keys)
        refined_mels = mels[missed]
        out, todo = waves.clone(), list(range(len(missed)))
        for share in dict.fromkeys((far.check_blend, 0.0)):        # the mix first, then the far note alone
            if not todo:
                break
            alternatives = self._vocode(far_mels[todo] + share * (refined_mels[todo] - far_mels[todo]))
            still = []
            for j, alt, wave in zip(todo, alternatives, alternatives.float().cpu().numpy()):
                if misses_pitch(wave, rate, keys[j], far.pitch_check_cents):
                    still.append(j)
                else:
                    out[missed[j]] = alt
            todo = still
        return out

    @torch.inference_mode()
    def _blend_near_root(self, waves: np.ndarray, midi_notes: list[int], sample_rate: int,
                         near: NearRoot) -> np.ndarray:
        out = waves.copy()
        source = torch.from_numpy(near.sample.audio.samples).to(self.device)
        for i, midi in enumerate(midi_notes):
            weight = near.weight(midi - near.sample.root_note)
            if weight <= 0.0:
                continue
            played = repitch(source, midi - near.sample.root_note, self.mel_cfg.sample_rate)
            if sample_rate != self.mel_cfg.sample_rate:
                played = self._resampler(sample_rate)(played[None])[0]
            played = played.float().cpu().numpy()[: out.shape[1]]
            # Same gated level as the generated note before the cross-fade, so the blend does not dip.
            gain = 10.0 ** ((loudness_db(Audio(out[i], sample_rate)) - loudness_db(Audio(played, sample_rate))) / 20.0)
            out[i, : played.size] = weight * gain * played + (1.0 - weight) * out[i, : played.size]
            out[i, played.size:] *= 1.0 - weight
        return out

    def render(self, sample_a: Sample | Mix, sample_b: Sample | None = None, alpha: float = 0.0,
               keys: Iterable[int] = ALL_KEYS, on_key: OnKey | None = None,
               cancel: threading.Event | None = None, sample_rate: int | None = None,
               refine: RefineConfig | None = None, on_refine: Callable[[int, int], None] | None = None,
               near_root: int = 0, workers: int | None = None) -> dict[int, KeySample]:
        """Render ``keys`` progressively (the sample's own key first, then outward) -> {midi: KeySample}.

        ``on_key(midi, key)`` is called as each key lands, from this thread. A later call of
        :meth:`render` (or :meth:`cancel_all`, or ``cancel.set()``) stops this one between keys; it
        then returns the keys finished so far. Keys are stored at ``sample_rate`` (default: the
        engine's ``output_rate``). With ``refine``, the conditioning is refined first (``on_refine(step,
        steps)`` reports progress; a cancel during refinement returns no keys). ``near_root`` > 0
        plays the sound itself, repitched, on the keys within that many semitones of its root,
        cross-faded into the generated keys over the next two (single sounds only, not mixes).
        ``sample_a`` may be a :class:`Mix` of any number of sounds (``sample_b`` then stays None).
        ``workers`` caps the workers rendering side by side (None: the engine's ``workers``); fewer
        leave cores (and the GIL) to other threads, such as an audio callback.
        """
        generation = self._next_generation()
        keys = _checked_keys(keys)
        rate = int(sample_rate or self.cfg.output_rate)
        stop = _StopFlag(self, generation, cancel)
        cond = self.conditioning(sample_a, sample_b, alpha, refine, stop, on_refine)
        if stop.is_set():
            return {}
        todo = [(cond, batch) for batch in batches(progressive_order(keys, cond.root_note), self._max_batch())]
        near = _near(sample_a, sample_b, alpha, near_root)
        done: dict[int, KeySample] = {}

        def land(_: int, midi: int, wave: np.ndarray) -> None:
            done[midi] = finish_key(Audio(wave, rate), midi, self.cfg.key)
            if on_key is not None:
                on_key(midi, done[midi])

        self._render_jobs(todo, rate, near, generation, cancel, land, workers)
        return done

    def render_variations(self, sample_a: Sample | Mix, sample_b: Sample | None = None, alpha: float = 0.0,
                          variations: Variations = Variations(), keys: Iterable[int] = ALL_KEYS,
                          on_variant: OnVariant | None = None, cancel: threading.Event | None = None,
                          sample_rate: int | None = None, refine: RefineConfig | None = None,
                          near_root: int = 0, workers: int | None = None) -> dict[VariantKey, KeySample]:
        """The other velocity layers and round robins of :meth:`render`'s keys -> {(midi, layer, rr): KeySample}.

        Same arguments as :meth:`render` (a :class:`Mix` of any number of sounds too; call it after,
        so the conditioning is cached) plus ``variations`` (engine/variations.py); the main variation,
        ``(midi, main_layer, 0)``, is render's key and not rendered again. Pass by pass (see
        ``Variations.passes``), each pass outward from the root; ``on_variant(midi, layer, rr, key)``
        as each lands; cancelled like render; ``workers`` as in render.
        """
        from engine.variations import variant_conditionings

        generation = self._next_generation()
        keys = _checked_keys(keys)
        rate = int(sample_rate or self.cfg.output_rate)
        stop = _StopFlag(self, generation, cancel)
        cond = self.conditioning(sample_a, sample_b, alpha, refine, stop)
        if stop.is_set():
            return {}
        conds = variant_conditionings(self, cond, variations)
        order, size = progressive_order(keys, cond.root_note), self._max_batch()
        todo = [(c, batch) for c in conds.values() for batch in batches(order, size, first=size)]
        passes = [name for name in conds for _ in batches(order, size, first=size)]
        near = _near(sample_a, sample_b, alpha, near_root)
        done: dict[VariantKey, KeySample] = {}

        def land(job: int, midi: int, wave: np.ndarray) -> None:
            layer, rr = passes[job]
            key = done[(midi, layer, rr)] = finish_key(Audio(wave, rate), midi, self.cfg.key)
            if on_variant is not None:
                on_variant(midi, layer, rr, key)

        self._render_jobs(todo, rate, near, generation, cancel, land, workers)
        return done

    def _max_batch(self) -> int:
        # On CPU one key per G call is cheapest (measured 81 ms/key alone, 107 in fours, 135 in 16s).
        return self.cfg.max_batch or (1 if self.device.type == "cpu" else 64)

    def _render_jobs(self, todo: list[tuple[Conditioning, list[int]]], rate: int, near: NearRoot | None,
                     generation: int, cancel: threading.Event | None,
                     land: Callable[[int, int, np.ndarray], None], workers: int | None = None) -> None:
        """Render ``(conditioning, keys)`` jobs; ``land(job index, midi, wave)`` in order until cancelled.

        Several jobs (G, inversion, resampling) at once on single-threaded workers (``workers``, at
        most the engine's); one worker: computed here, lazily.
        """
        workers = self.workers if workers is None else max(1, min(int(workers), self.workers))
        render = lambda job: self.render_waves(job[0], job[1], rate, near)  # noqa: E731
        waves_of = ordered_map(render, todo, workers) if workers > 1 else (render(job) for job in todo)
        try:
            for i, (_, batch) in enumerate(todo):
                if self._cancelled(generation, cancel):
                    return
                for midi, wave in zip(batch, next(waves_of)):
                    if self._cancelled(generation, cancel):
                        return
                    land(i, midi, wave)
        finally:
            waves_of.close()

    def cancel_all(self) -> None:
        """Stop every render in progress (each returns what it has finished)."""
        self._next_generation()

    # -- internals ---------------------------------------------------------------------------
    def _next_generation(self) -> int:
        with self._generation_lock:
            self._generation += 1
            return self._generation

    def _cancelled(self, generation: int, cancel: threading.Event | None) -> bool:
        return generation != self._generation or (cancel is not None and cancel.is_set())

    def _G(self, h: torch.Tensor, midi: torch.Tensor, deltas: dict[str, torch.Tensor] | None,
           z: torch.Tensor | None = None) -> torch.Tensor:
        """G(h, z, midi; offsets) for a batch of keys sharing one timbre ``h [1, h_dim]`` and noise
        ``z [1, z_dim]`` (None: zeros)."""
        batch = midi.shape[0]
        if z is None:
            z = torch.zeros(batch, self.nets.z_dim, device=self.device)
        else:
            z = z.to(self.device).expand(batch, -1)
        if deltas is not None:
            deltas = {name: d.expand(batch, -1, -1) for name, d in deltas.items()}  # [B, C_out, C_in], no copy
        return self.nets.G(h.expand(batch, -1), z, midi, deltas=deltas)

    def _resampler(self, sample_rate: int) -> torch.nn.Module:
        if sample_rate not in self._resamplers:
            self._resamplers[sample_rate] = torchaudio.transforms.Resample(
                self.mel_cfg.sample_rate, sample_rate).to(self.device)
        return self._resamplers[sample_rate]


def _checked_keys(keys: Iterable[int]) -> list[int]:
    """``keys`` sorted, without repeats; UserError unless all are piano keys (and some are given)."""
    keys = sorted(set(int(k) for k in keys))
    bad = [k for k in keys if not LOWEST_KEY <= k <= HIGHEST_KEY]
    if bad or not keys:
        raise UserError(f"keys must be MIDI notes {LOWEST_KEY}-{HIGHEST_KEY}, got {bad or 'none'}")
    return keys


def _near(sample_a: Sample | Mix, sample_b: Sample | None, alpha: float, semitones: int) -> NearRoot | None:
    """The near-root blend of a single sound (None when off, or for a mix of several sounds)."""
    sounds = as_mix(sample_a, sample_b, alpha).sounds
    return NearRoot(sounds[0], semitones) if semitones > 0 and len(sounds) == 1 else None


class _StopFlag:
    """``is_set()`` once a newer render started or ``cancel`` was set: what refinement polls between steps."""

    def __init__(self, engine: Engine, generation: int, cancel: threading.Event | None) -> None:
        self._engine, self._generation, self._cancel = engine, generation, cancel

    def is_set(self) -> bool:
        return self._engine._cancelled(self._generation, self._cancel)


def _deltas_of(entry: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The offsets ``{layer: [1, C_out, C_in]}`` of a cache entry (stored under ``delta.<layer>``)."""
    return {k[len("delta."):]: v for k, v in entry.items() if k.startswith("delta.")}


def _config_key(cfg: RefineConfig) -> str:
    """A short stable name of a refinement config, for cache keys."""
    return hashlib.sha1(repr(cfg).encode()).hexdigest()[:12]


def _tuning(sample: Sample) -> float:
    """Semitones the sample sits above its root key: from its pitch when that has a fraction (estimated
    or labelled), else estimated again (a root set as a whole key says nothing of the fine tuning)."""
    midi = sample.midi
    if midi == round(midi):
        from models.signal.pitch import estimate_pitch

        midi = float(estimate_pitch(sample.audio).midi)
    return float(midi - round(midi)) if math.isfinite(midi) else 0.0


def _refined_key(sample: Sample, cfg: RefineConfig) -> str:
    return f"refined:{sample.content_hash}:{sample.root_note}:{_config_key(cfg)}"


def _blend(conds: list[Conditioning], weights: tuple[float, ...], centres_hz: torch.Tensor) -> Conditioning:
    """``sum w_i c_i`` of refined conditionings (h, offsets, mel correction); the root is blended and rounded."""
    mix = lambda xs: sum((w * x for x, w in zip(xs[1:], weights[1:])), weights[0] * xs[0])  # noqa: E731
    deltas = None
    if all(c.deltas is not None for c in conds):
        deltas = {n: mix([c.deltas[n] for c in conds]) for n in conds[0].deltas}
    correction = None
    present = [c.mel_correction for c in conds if c.mel_correction is not None]
    if present:
        correction = mix([c.mel_correction if c.mel_correction is not None else torch.zeros_like(present[0])
                          for c in conds])
    root = int(round(sum(w * c.root_note for c, w in zip(conds, weights))))
    return Conditioning(mix([c.h for c in conds]), deltas, root, correction, refined=True,
                        mel_detail=_blend_details(conds, weights, root, centres_hz),
                        far=_blend_far(conds, deltas, mix))


def _blend_far(conds: list[Conditioning], deltas: dict[str, torch.Tensor] | None, mix: Callable) -> FarKeys | None:
    """The blend's far keys: each sound's far conditioning (its refined one where it has none), mixed
    like the rest; None when no sound has far keys (or the blend has no offsets)."""
    present = [c.far for c in conds if c.far is not None]
    if not present or deltas is None:
        return None
    fars = [c.far or FarKeys(c.deltas, c.mel_correction if c.mel_correction is not None else
                             torch.zeros_like(present[0].mel_correction), present[0].span, present[0].fade)
            for c in conds]
    return FarKeys({n: mix([f.deltas[n] for f in fars]) for n in deltas}, mix([f.mel_correction for f in fars]),
                   present[0].span, present[0].fade, present[0].pitch_check_cents, present[0].check_blend)


def _blend_details(conds: list[Conditioning], weights: tuple[float, ...], root: int,
                   centres_hz: torch.Tensor) -> MelDetail | None:
    """``sum w_i detail_i``, each first moved to the blend's ``root`` (None where no sound has detail)."""
    present = [(c, w) for c, w in zip(conds, weights) if c.mel_detail is not None]
    if not present:
        return None
    mel = sum(w * c.mel_detail.moved_to(c.root_note, root, centres_hz).mel for c, w in present)
    first = present[0][0].mel_detail
    moving = [(c.mel_detail.contour, w) for c, w in present if c.mel_detail.contour is not None]
    contour = max(moving, key=lambda cw: cw[1])[0] if moving else None   # the heaviest moving sound's
    return MelDetail(mel, first.span, first.fade, contour=contour)
