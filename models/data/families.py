"""Instrument families: NSynth's 11 plus synth_pad, fx and percussive, mapped from GM program numbers.

General MIDI groups programs in eights (pianos 0-7, chromatic percussion 8-15, ...); NSynth's
families follow the same instruments, so the map is per program, with the few exceptions spelled out.
sf_GMbank's bank 127 follows the Roland MT-32 map, not GM; it has its own table.
"""
from __future__ import annotations

FAMILIES: tuple[str, ...] = (
    "bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string", "synth_lead",
    "vocal", "synth_pad", "fx", "percussive",
)
MT32_BANK = 127


def _table(spans: list[tuple[int, int, str]]) -> tuple[str, ...]:
    table = [""] * 128
    for lo, hi, family in spans:
        for p in range(lo, hi + 1):
            table[p] = family
    assert all(table), "every program needs a family"
    return tuple(table)


GM_FAMILY = _table([
    (0, 7, "keyboard"), (8, 15, "mallet"), (16, 21, "organ"), (22, 22, "reed"), (23, 23, "organ"),
    (24, 31, "guitar"), (32, 39, "bass"), (40, 46, "string"), (47, 47, "percussive"), (48, 51, "string"),
    (52, 54, "vocal"), (55, 55, "fx"), (56, 63, "brass"), (64, 71, "reed"), (72, 79, "flute"),
    (80, 87, "synth_lead"), (88, 95, "synth_pad"), (96, 103, "fx"), (104, 107, "guitar"),
    (108, 108, "mallet"), (109, 109, "reed"), (110, 110, "string"), (111, 111, "reed"), (112, 112, "mallet"),
    (113, 113, "percussive"), (114, 114, "mallet"), (115, 119, "percussive"), (120, 127, "fx"),
])

MT32_FAMILY = _table([
    (0, 7, "keyboard"), (8, 15, "organ"), (16, 21, "keyboard"), (22, 23, "mallet"), (24, 27, "brass"),
    (28, 31, "bass"), (32, 46, "synth_pad"), (47, 47, "synth_lead"), (48, 58, "string"), (59, 63, "guitar"),
    (64, 71, "bass"), (72, 77, "flute"), (78, 87, "reed"), (88, 96, "brass"), (97, 104, "mallet"),
    (105, 105, "guitar"), (106, 106, "reed"), (107, 111, "flute"), (112, 121, "percussive"), (122, 124, "fx"),
    (125, 125, "synth_pad"), (126, 126, "mallet"), (127, 127, "fx"),
])

# Programs whose notes carry no clear pitch: drums, noises and effects (GM and MT-32 numbering).
GM_UNPITCHED = frozenset({113, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127})
MT32_UNPITCHED = frozenset({113, 114, 115, 116, 117, 118, 119, 120, 121, 123, 124, 127})


def family_of(bank: int, program: int) -> str:
    """Family name of a melodic preset; variation banks (1-126) follow their GM program, as GS does."""
    if bank == MT32_BANK:
        return MT32_FAMILY[program]
    if 1 <= bank <= 9 and program >= 120:
        return "fx"  # GS sound-effect variations (rain, dog, car crash ...) live in banks 1-9
    return GM_FAMILY[program]


def nominally_pitched(bank: int, program: int) -> bool:
    """Whether a preset is expected to play its key's pitch (the measured check may still say no)."""
    if bank == MT32_BANK:
        return program not in MT32_UNPITCHED
    if 1 <= bank <= 9 and program >= 120:
        return False
    return program not in GM_UNPITCHED


def family_index(name: str) -> int:
    return FAMILIES.index(name)
