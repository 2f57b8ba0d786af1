"""Events from the GUI and MIDI threads to the audio callback: a lock-free SPSC ring per producer."""
from __future__ import annotations

# Event kinds.
NOTE_ON, NOTE_OFF, SUSTAIN, BEND, ALL_NOTES_OFF, ALL_SOUND_OFF = 1, 2, 3, 4, 5, 6


class EventQueue:
    """Lock-free single-producer/single-consumer ring of (kind, note, value) events.

    Slots are preallocated Python lists; indices stay below 256 so that moving them never creates an
    int object. The producer fills a slot, then publishes it by moving ``_write`` (one reference
    store, atomic under the GIL); only the consumer moves ``_read``.
    """

    CAPACITY = 256

    def __init__(self, bend_range_semitones: float = 2.0) -> None:
        self._kind = [0] * self.CAPACITY
        self._note = [0] * self.CAPACITY
        self._value: list = [0] * self.CAPACITY
        self._write = 0
        self._read = 0
        self.bend_range_semitones = bend_range_semitones
        self.dropped = 0

    def push(self, kind: int, note: int = 0, value: float = 0) -> bool:
        """Queue one event; False (and ``dropped`` += 1) when the consumer is 255 events behind."""
        w = self._write
        nxt = (w + 1) & (self.CAPACITY - 1)
        if nxt == self._read:
            self.dropped += 1
            return False
        self._kind[w] = kind
        self._note[w] = note
        self._value[w] = value
        self._write = nxt
        return True

    def note_on(self, note: int, velocity: int) -> bool:
        if velocity <= 0:
            return self.note_off(note)
        return self.push(NOTE_ON, int(note) & 127, min(int(velocity), 127))

    def note_off(self, note: int) -> bool:
        return self.push(NOTE_OFF, int(note) & 127)

    def sustain(self, down: bool) -> bool:
        return self.push(SUSTAIN, 0, 1 if down else 0)

    def pitch_bend(self, amount: float) -> bool:
        """``amount`` in [-1, 1] of the bend range; the ratio is computed here, not in the callback."""
        semitones = max(-1.0, min(1.0, float(amount))) * self.bend_range_semitones
        return self.push(BEND, 0, 2.0 ** (semitones / 12.0))

    def all_notes_off(self) -> bool:
        return self.push(ALL_NOTES_OFF)

    def all_sound_off(self) -> bool:
        return self.push(ALL_SOUND_OFF)
