"""Train / valid / test by instrument group, stratified by family, deterministic from the seed.

Instruments join one group when they share a General MIDI program (across fonts and banks) or
share most of their samples within a font: held-out instruments must not be heard in training
under another name. Groups are ordered by family and, inside a family, by a seeded hash; walking
that list, every 20 groups contribute 1 test and 2 valid groups (5 / 10 / 85 %), the phase carrying
on from one family to the next so that even small families get their share over the whole set.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

PATTERN = 20
TEST_SLOTS = frozenset({0})
VALID_SLOTS = frozenset({7, 14})
SHARED_SAMPLES = 0.5  # Jaccard overlap of sample sets above which two presets are one group


@dataclass(frozen=True)
class Member:
    """What the split needs to know of an instrument."""

    group: str
    family: str
    source: str
    samples: frozenset = frozenset()


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_members(members: list[Member]) -> list[int]:
    """Group id per member (the smallest member index of its group)."""
    uf = _UnionFind(len(members))
    first: dict[str, int] = {}
    for i, m in enumerate(members):
        if m.group in first:
            uf.union(first[m.group], i)
        else:
            first[m.group] = i
    by_source: dict[str, list[int]] = {}
    for i, m in enumerate(members):
        if m.samples:
            by_source.setdefault(m.source, []).append(i)
    for idx in by_source.values():
        for a_pos, a in enumerate(idx):
            for b in idx[a_pos + 1:]:
                sa, sb = members[a].samples, members[b].samples
                if len(sa & sb) > SHARED_SAMPLES * len(sa | sb):
                    uf.union(a, b)
    return [uf.find(i) for i in range(len(members))]


def _hash(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}/{key}".encode()).hexdigest()


def assign_splits(members: list[Member], seed: int) -> list[int]:
    """Split code per member: 0 train, 1 valid, 2 test."""
    groups = group_members(members)
    roots = sorted(set(groups))
    family_of = {}
    for root in roots:
        fams = Counter(members[i].family for i, g in enumerate(groups) if g == root)
        family_of[root] = sorted(fams.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    order = sorted(roots, key=lambda r: (family_of[r], _hash(seed, members[r].group)))
    offset = int(_hash(seed, "phase"), 16) % PATTERN
    split_of = {}
    for pos, root in enumerate(order):
        slot = (pos + offset) % PATTERN
        split_of[root] = 2 if slot in TEST_SLOTS else 1 if slot in VALID_SLOTS else 0
    return [split_of[g] for g in groups]
