"""``--set key=value`` against config dataclasses, typed by their annotations.

``lr=1e-4`` sets a field of the stage's training config, ``G.w_dim=128`` one of the config under the
prefix ``G``. Every assignment must land somewhere: an unknown key or prefix is a ``UserError``
naming the valid ones, and so is an assignment no config of the run took.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

from models.errors import UserError

C = TypeVar("C")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_value(text: str, hint: Any) -> Any:
    """``text`` as a value of the annotation ``hint`` (bool, int, float, str, tuples, optionals)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        kinds = [a for a in args if a is not type(None)]
        for kind in kinds:
            try:
                return parse_value(text, kind)
            except ValueError:
                continue
        raise ValueError(f"not one of {kinds}")
    if hint is bool:
        if text.lower() in TRUE + FALSE:
            return text.lower() in TRUE
        raise ValueError(f"expected one of {TRUE + FALSE}")
    if hint in (int, float, str):
        return hint(text)
    if origin is tuple:
        items = [t for t in text.split(",") if t] if text else []
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_value(t, args[0]) for t in items)
        if len(items) != len(args):
            raise ValueError(f"expected {len(args)} comma-separated values")
        return tuple(parse_value(t, a) for t, a in zip(items, args))
    if dataclasses.is_dataclass(hint):
        raise ValueError("a nested config is set field by field in its own preset, not here")
    return json.loads(text)


class Overrides:
    """The ``--set`` assignments of one run, split by prefix and checked as configs take them."""

    def __init__(self, assignments: typing.Iterable[str]) -> None:
        self.items: dict[tuple[str, str], str] = {}
        self.used: set[tuple[str, str]] = set()
        self.known: list[str] = []
        for item in assignments:
            if "=" not in item:
                raise UserError(f"--set expects key=value, got {item!r}")
            key, text = item.split("=", 1)
            prefix, _, name = key.rpartition(".")
            self.items[(prefix, name)] = text

    def apply(self, cfg: C, prefix: str = "") -> C:
        """``cfg`` with this prefix's assignments; an unknown field raises, listing the valid ones."""
        fields = {f.name for f in dataclasses.fields(cfg)}
        hints = typing.get_type_hints(type(cfg))
        dotted = f"{prefix}." if prefix else ""
        self.known += [dotted + f for f in sorted(fields)]
        changes: dict[str, Any] = {}
        for (p, name), text in self.items.items():
            if p != prefix:
                continue
            if name not in fields:
                raise UserError(f"unknown setting {dotted + name!r}; known: {', '.join(dotted + f for f in sorted(fields))}")
            try:
                changes[name] = parse_value(text, hints[name])
            except (ValueError, TypeError, json.JSONDecodeError) as exc:
                raise UserError(f"bad value for {dotted + name}: {text!r} ({exc})") from exc
            self.used.add((p, name))
        return dataclasses.replace(cfg, **changes)

    def check_all_used(self) -> None:
        """Raise if an assignment went to a prefix that no config of this run took."""
        unused = [f"{p}.{n}" if p else n for (p, n) in self.items if (p, n) not in self.used]
        if unused:
            raise UserError(f"unknown setting {unused[0]!r}; known: {', '.join(self.known)}")
