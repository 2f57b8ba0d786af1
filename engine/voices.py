"""Real-time voice mixer: a fixed pool of voices playing the key cache, for a sounddevice callback.

Everything the audio thread touches is allocated in ``VoiceMixer.__init__``. Producers (the GUI, the
MIDI thread) reach the callback only through single-producer/single-consumer ``EventQueue``s; a new
key cache is handed over by replacing one reference (``set_keys``), which the callback reads once per
block, so sounding voices keep the sample they started with.

Events take effect at the start of the next block (block-accurate, not sample-accurate). Voices are
processed together as ``[n_voices, block_size]`` arrays; only the per-voice sample gather is a loop.
Each key is read with linear interpolation at a step of ``2**(semitones/12) * key_rate / out_rate``:
one step covers pitch bend, a neighbour key standing in for one not yet rendered, and a key cache
left at another rate after the output device changed.

A key with velocity layers and round robins (``set_keys(keys, variants, variations)``) plays, at
note-on, that key's next round robin (cycled per note, or in a precomputed random order) of the
layers its velocity calls for: with ``velocity_crossfade`` (the default) the two layers whose render
velocities it lies between, on two voices at gains summing to one (linear, for layers that are
the same sound with a tilted spectrum; a dip from their phases differing is not measured), else the
one layer its velocity range holds (a split, as the exported packs play). The velocity gain applies on top.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.envelope import ATTACK, DECAY, IDLE, KILL, RELEASE, SILENT, SUSTAINING, BlockRates, Envelope
from engine.key_bank import KeyBank, RetiredSamples, retired
from engine.key_cache import PLAIN, KeySample, VariantKey, Variations
from engine.master_bus import MasterBus
from engine.voice_events import ALL_NOTES_OFF, ALL_SOUND_OFF, BEND, NOTE_OFF, NOTE_ON, SUSTAIN, EventQueue
from models.units import OUTPUT_SAMPLE_RATE


RR_DRAWS = 251   # random round-robin draws, precomputed (a prime: the sequence does not line up with bars)


@dataclass(frozen=True)
class MixerConfig:
    """Sizes and constants of the mixer; buffers are allocated from these once."""

    sample_rate: int = OUTPUT_SAMPLE_RATE
    block_size: int = 512
    channels: int = 2
    n_voices: int = 32
    n_queues: int = 2               # one per producer thread (by convention 0 = GUI, 1 = MIDI)
    bend_range_semitones: float = 2.0
    limiter_threshold: float = 0.9  # block peaks are brought down to this
    limiter_ceiling: float = 0.98   # a soft clip guard's asymptote (float32 tanh saturates to 1.0)
    limiter_release_s: float = 0.3
    random_round_robin: bool = False  # round robins in a seeded random order (never one twice running)
    velocity_crossfade: bool = True   # blend the two nearest velocity layers (False: split by range)
    round_robin_seed: int = 0

    @property
    def block_s(self) -> float:
        return self.block_size / self.sample_rate


class VoiceMixer:
    """A fixed pool of voices mixed into a mono bus, limited, and copied to every output channel.

    ``callback(outdata, frames, time, status)`` is the sounddevice callback; tests pull blocks from it
    directly. It allocates no buffers, takes no lock, logs nothing and never raises: a failure writes
    silence and counts in ``errors``. Broadcasting is avoided on purpose (NumPy copies broadcast and
    strided operands into heap buffers): per-voice columns enter through small ``np.dot`` calls, and
    peaks come from ``argmax`` (reductions allocate an iterator).
    """

    def __init__(self, cfg: MixerConfig = MixerConfig(), envelope: Envelope = Envelope()) -> None:
        self.cfg = cfg
        self.queues = tuple(EventQueue(cfg.bend_range_semitones) for _ in range(cfg.n_queues))
        self._bank = KeyBank.build({}, cfg.sample_rate)
        self.retired = RetiredSamples()   # arrays a bank swap let go of, for ``retired.release``
        self._rates = BlockRates.build(envelope, cfg.block_s)
        self.master = MasterBus(cfg.block_size, cfg.block_s, cfg.limiter_threshold, cfg.limiter_ceiling,
                                cfg.limiter_release_s)
        self._bend = 1.0
        self._pedal = False
        self._clock = 0.0
        self.errors = 0
        self._allocate_voices(cfg.n_voices)
        self._allocate_block(cfg.n_voices, cfg.block_size, cfg.channels)

    def _allocate_voices(self, v: int) -> None:
        """Per-voice state for ``v`` voices."""
        # Per-voice scalars live in Python lists: reading them creates no objects.
        self._ids = tuple(range(v))
        self._stage, self._note, self._age = [IDLE] * v, [0] * v, [0.0] * v
        self._held, self._sustained, self._looping, self._finishing = [False] * v, [False] * v, [False] * v, [False] * v
        self._level, self._vgain = [0.0] * v, [0.0] * v
        self._sample: list = [None] * v
        self._loop = [(0.0, 1.0, math.inf)] * v          # (start, length, end)
        self._pending_note, self._pending_held = [-1] * v, [False] * v
        self._pending_entry: list = [None] * v
        self._pending_gain = [0.0] * v
        self._vel_gain = [(i / 127.0) ** 2 for i in range(128)]
        # Round robins: the last one played per note, and (random mode) a precomputed sequence of
        # fractions that pick how far to skip, so the callback draws no random numbers.
        self._rr_last = [-1] * 128
        self.random_round_robin = self.cfg.random_round_robin   # bools the callback reads: switchable live
        self.velocity_crossfade = self.cfg.velocity_crossfade
        rng = np.random.default_rng(self.cfg.round_robin_seed)
        self._rr_draws = [float(u) for u in rng.random(RR_DRAWS)]
        self._rr_draw = 0
        # Per-voice vectors [V]; the [step, pos] and [level, change] pairs are np.dot operands.
        self._step_pos = np.zeros((v, 2))
        self._step, self._pos = self._step_pos[:, 0], self._step_pos[:, 1]
        self._env_coef = np.zeros((v, 2), np.float32)
        self._step_base, self._last, self._end_pos = np.zeros(v), np.zeros(v), np.zeros(v)
        self._loop_end = np.full(v, np.inf)               # inf while not looping
        self._ends, self._wraps = np.zeros(v, bool), np.zeros(v, bool)

    def _allocate_block(self, v: int, n: int, channels: int) -> None:
        """The buffers of one block of ``n`` frames for ``v`` voices, reused by every callback."""
        ramp = np.arange(n, dtype=np.float64)
        self._ramp_pos = np.stack([ramp, np.ones(n)])                         # [2, N]
        self._ramp_env = np.stack([np.ones(n), ramp / n]).astype(np.float32)  # [2, N]
        self._P, self._T, self._M = np.zeros((v, n)), np.zeros((v, n)), np.zeros((v, n), bool)
        self._frac = np.zeros((v, n), np.float32)
        self._idx = np.zeros((2, v, n), np.int64)          # floor(pos), floor(pos) + 1
        self._gather = np.zeros((2, v, n), np.float32)     # the samples there
        self._voice, self._env = np.zeros((v, n), np.float32), np.zeros((v, n), np.float32)
        rows = lambda a: [a[i] for i in range(v)]  # noqa: E731 - row views made once, reused per block
        self._P_rows, self._T_rows, self._M_rows = rows(self._P), rows(self._T), rows(self._M)
        self._idx_rows = (rows(self._idx[0]), rows(self._idx[1]))
        self._gather_rows = (rows(self._gather[0]), rows(self._gather[1]))
        self._ones_v = np.ones((1, v), np.float32)
        self._ones_c = np.ones((1, channels), np.float32)
        self._mix = np.zeros(n, np.float32)
        self._mix_row, self._mix_col = self._mix.reshape(1, n), self._mix.reshape(n, 1)  # contiguous

    # ---- producer side (any thread; each queue has exactly one producer) ----

    def queue(self, index: int = 0) -> EventQueue:
        """The event queue of producer ``index`` (by convention 0 = GUI, 1 = MIDI thread)."""
        return self.queues[index]

    def set_keys(self, keys: dict[int, KeySample], variants: dict[VariantKey, KeySample] | None = None,
                 variations: Variations = PLAIN) -> KeyBank:
        """Build a KeyBank from ``keys`` (and their velocity layers and round robins) on the caller's
        thread, then swap it in (one reference store). The arrays the old bank played and the new one
        does not go to ``retired``, so that neither this thread nor the callback frees them."""
        old = self._bank
        bank = KeyBank.build(dict(keys), self.cfg.sample_rate, old, variants, variations)
        self.retired.add(retired(old, bank))
        self._bank = bank
        return bank

    @property
    def bank(self) -> KeyBank:
        return self._bank

    def set_envelope(self, envelope: Envelope) -> None:
        self._rates = BlockRates.build(envelope, self.cfg.block_s)

    def set_volume(self, gain: float) -> None:
        """Master gain (linear, 0..2), ramped over one block by the callback."""
        self.master.set_volume(gain)

    def read_peak(self) -> float:
        """Highest output peak since the previous call (for a level meter), then reset."""
        return self.master.read_peak()

    def active_notes(self) -> list[int]:
        """Notes of the voices sounding or about to (a racy snapshot, for tests and display)."""
        return [self._note[v] for v in self._ids if self._stage[v] not in (IDLE, KILL)] + \
            [n for n in self._pending_note if n >= 0]

    # ---- audio thread ----

    def callback(self, outdata: np.ndarray, frames: int, time: object = None, status: object = None) -> None:
        """sounddevice OutputStream callback: fill ``outdata`` [frames, channels] float32."""
        try:
            if frames != self.cfg.block_size:
                outdata.fill(0.0)
                return
            bank = self._bank   # one snapshot per block
            self._start_pending(bank)
            for q in self.queues:
                self._drain(q, bank)
            if self._stage.count(IDLE) == len(self._stage):
                outdata.fill(0.0)
                self.master.silent_block()
                return
            self._plan_block()
            self._render_voices()
            self.master.process(self._mix)
            np.dot(self._mix_col, self._ones_c, out=outdata)   # [N, 1] @ [1, C]
            self._advance()
        except Exception:  # noqa: BLE001 - the audio thread must never raise
            self.errors += 1
            outdata.fill(0.0)

    def _drain(self, q: EventQueue, bank: KeyBank) -> None:
        r, w = q._read, q._write
        while r != w:
            kind = q._kind[r]
            if kind == NOTE_ON:
                self._note_on(q._note[r], q._value[r], bank)
            elif kind == NOTE_OFF:
                self._note_off(q._note[r])
            elif kind == SUSTAIN:
                self._set_pedal(q._value[r] == 1)
            elif kind == BEND:
                self._bend = q._value[r]
            elif kind == ALL_NOTES_OFF:
                self._release_all(kill=False)
            elif kind == ALL_SOUND_OFF:
                self._release_all(kill=True)
            r = (r + 1) & (EventQueue.CAPACITY - 1)
        q._read = r

    def _note_on(self, note: int, velocity: int, bank: KeyBank) -> None:
        if bank.entries[note] is None:
            return
        for v in self._ids:  # a retriggered note releases its previous voices
            if self._note[v] == note and self._held[v] and self._stage[v] != IDLE:
                self._held[v] = False
                self._release(v)
            if self._pending_note[v] == note:
                self._pending_held[v] = False
        lower, upper, share = self._pick(note, velocity, bank)
        gain = self._vel_gain[velocity]
        if upper is None:
            self._assign(note, lower, gain)
        else:  # a velocity cross-fade: two voices
            self._assign(note, lower, gain * (1.0 - share))
            self._assign(note, upper, gain * share)

    def _assign(self, note: int, entry: tuple, gain: float) -> None:
        """Start ``entry`` on a free voice, or steal one: fade the old sound out over this block and
        start the new one on the next."""
        v = self._free_voice()
        if self._stage[v] == IDLE:
            self._start_voice(v, note, entry, gain)
        else:
            self._stage[v] = KILL
            self._held[v] = self._sustained[v] = False
            self._pending_note[v], self._pending_held[v] = note, True
            self._pending_entry[v], self._pending_gain[v] = entry, gain

    def _free_voice(self) -> int:
        """An idle voice, else the oldest releasing one, else the oldest of all."""
        best, best_age, best_released = 0, math.inf, False
        for v in self._ids:
            if self._pending_note[v] >= 0:
                continue
            st = self._stage[v]
            if st == IDLE:
                return v
            released = st == RELEASE or st == KILL
            age = self._age[v]
            if (released and not best_released) or (released == best_released and age < best_age):
                best, best_age, best_released = v, age, released
        return best

    def _pick(self, note: int, velocity: int, bank: KeyBank) -> tuple:
        """``(lower, upper, share)``: the entries a note-on plays (upper None: one) and the upper's
        share; the next round robin (cycled or random) of its velocity's layer, or of the two layers
        a cross-fade blends (the same round robin in both)."""
        layers = bank.layers[note]
        if layers is None:
            return bank.entries[note], None, 0.0
        if self.velocity_crossfade:
            low, high, share = bank.blend[velocity]
        else:
            low, high, share = bank.layer_of[velocity], -1, 0.0
        row = layers[low]
        n = len(row)
        last = self._rr_last[note]
        if n == 1:
            i = 0
        elif self.random_round_robin and last >= 0:
            i = (last + 1 + int(self._rr_draws[self._rr_draw] * (n - 1))) % n
            self._rr_draw = (self._rr_draw + 1) % RR_DRAWS
        else:
            i = (last + 1) % n
        self._rr_last[note] = i
        if high < 0 or share <= 0.0:
            return row[i], None, 0.0
        upper = layers[high]
        upper = upper[i % len(upper)]
        if upper is row[i]:   # neither layer rendered yet: both are the main sample
            return upper, None, 0.0
        return row[i], upper, share

    def _start_voice(self, v: int, note: int, entry: tuple, gain: float) -> None:
        samples, step, start, length, end, last = entry
        self._sample[v] = samples
        self._pos[v] = 0.0
        self._step_base[v] = step
        self._loop[v] = (start, length, end)
        self._loop_end[v] = end
        self._last[v] = last
        self._looping[v], self._finishing[v], self._held[v], self._sustained[v] = True, False, True, False
        self._note[v], self._stage[v], self._level[v] = note, ATTACK, 0.0
        self._vgain[v] = gain
        self._age[v] = self._clock
        self._clock += 1.0

    def _start_pending(self, bank: KeyBank) -> None:
        for v in self._ids:
            note = self._pending_note[v]
            if note >= 0 and self._stage[v] == IDLE:
                self._pending_note[v] = -1
                entry, self._pending_entry[v] = self._pending_entry[v], None
                if bank.entries[note] is not None:
                    self._start_voice(v, note, entry, self._pending_gain[v])
                    if not self._pending_held[v]:  # let go while waiting: a short note
                        self._let_go(v)

    def _let_go(self, v: int) -> None:
        """The key of voice ``v`` went up: hold on the pedal or release."""
        self._held[v] = False
        if self._pedal:
            self._sustained[v] = True
        else:
            self._release(v)

    def _release(self, v: int) -> None:
        if self._stage[v] != KILL and self._stage[v] != IDLE:
            self._stage[v] = RELEASE
        self._looping[v] = False
        self._loop_end[v] = math.inf  # play on from the loop into the tail

    def _note_off(self, note: int) -> None:
        for v in self._ids:
            if self._pending_note[v] == note:
                self._pending_held[v] = False
            if self._note[v] == note and self._held[v] and self._stage[v] != IDLE:
                self._let_go(v)

    def _set_pedal(self, down: bool) -> None:
        self._pedal = down
        if not down:
            for v in self._ids:
                if self._sustained[v]:
                    self._sustained[v] = False
                    self._release(v)

    def _release_all(self, kill: bool) -> None:
        """CC123 releases every voice; CC120 (``kill``) fades them all out within one block."""
        for v in self._ids:
            if kill:
                self._pending_note[v] = -1
            if self._stage[v] != IDLE:
                self._held[v] = self._sustained[v] = False
                self._release(v)
                if kill:
                    self._stage[v] = KILL

    def _plan_block(self) -> None:
        """Each voice's envelope level at the start and end of this block (linear in between)."""
        np.multiply(self._step_base, self._bend, out=self._step)
        np.multiply(self._step, self.cfg.block_size, out=self._end_pos)
        np.add(self._end_pos, self._pos, out=self._end_pos)
        np.greater_equal(self._end_pos, self._last, out=self._ends)        # runs off its sample
        np.greater_equal(self._end_pos, self._loop_end, out=self._wraps)   # crosses its loop end
        r, coef = self._rates, self._env_coef
        for v in self._ids:
            st = self._stage[v]
            if st == IDLE:
                continue
            lvl = self._level[v]
            if st == ATTACK:
                nxt = lvl + r.attack_inc
                if nxt >= 1.0:
                    nxt = 1.0
                    self._stage[v] = DECAY
            elif st == DECAY:
                nxt = r.sustain + (lvl - r.sustain) * r.decay_coef
                if nxt - r.sustain < SILENT:
                    nxt = r.sustain
                    self._stage[v] = SUSTAINING
            elif st == SUSTAINING:
                nxt = r.sustain
            elif st == RELEASE:
                nxt = lvl * r.release_coef
            else:  # KILL
                nxt = 0.0
            if (nxt < SILENT and st != ATTACK) or (self._ends[v] and not self._looping[v]):
                nxt = 0.0
                self._finishing[v] = True
            g = self._vgain[v]
            coef[v, 0] = lvl * g
            coef[v, 1] = (nxt - lvl) * g
            self._level[v] = nxt

    def _render_voices(self) -> None:
        """Interpolated, looped, enveloped voices summed into ``_mix``."""
        P, T = self._P, self._T
        np.dot(self._step_pos, self._ramp_pos, out=P)   # pos + step * i: [V, 2] @ [2, N]
        for v in self._ids:
            if self._wraps[v] and self._stage[v] != IDLE:
                self._wrap_row(v)
        np.floor(P, out=T)
        np.copyto(self._idx[0], T, casting="unsafe")
        np.add(self._idx[0], 1, out=self._idx[1])
        np.subtract(P, T, out=T)
        np.copyto(self._frac, T, casting="same_kind")
        (idx_lo, idx_hi), (g_lo, g_hi) = self._idx_rows, self._gather_rows
        for v in self._ids:
            if self._stage[v] != IDLE:
                s = self._sample[v]
                s.take(idx_lo[v], None, g_lo[v], "clip")
                s.take(idx_hi[v], None, g_hi[v], "clip")
        D, lo = self._voice, self._gather[0]
        np.subtract(self._gather[1], lo, out=D)
        np.multiply(D, self._frac, out=D)
        np.add(D, lo, out=D)
        np.dot(self._env_coef, self._ramp_env, out=self._env)   # level + change * i / N
        np.multiply(D, self._env, out=D)
        np.dot(self._ones_v, D, out=self._mix_row)              # sum over voices

    def _wrap_row(self, v: int) -> None:
        """Fold this voice's positions past its loop end back into the loop (any number of times)."""
        p, t, m = self._P_rows[v], self._T_rows[v], self._M_rows[v]
        start, length, end = self._loop[v]
        np.subtract(p, start, out=t)
        np.fmod(t, length, out=t)
        np.add(t, start, out=t)
        np.greater_equal(p, end, out=m)
        np.copyto(p, t, where=m)

    def _advance(self) -> None:
        """Move read positions to the next block, wrap loops, retire finished voices."""
        np.copyto(self._pos, self._end_pos)
        for v in self._ids:
            if self._wraps[v] and self._looping[v]:
                start, length, _ = self._loop[v]
                self._pos[v] = start + math.fmod(self._pos.item(v) - start, length)
            if self._finishing[v]:
                self._finishing[v] = self._held[v] = self._sustained[v] = self._looping[v] = False
                self._stage[v] = IDLE
                self._sample[v] = None
                coef = self._env_coef
                coef[v, 0] = coef[v, 1] = 0.0
                self._step_base[v] = 0.0
                self._loop_end[v] = math.inf
