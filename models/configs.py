"""Config dataclasses as JSON: checkpoint headers, dataset manifests and printed run configs.

One spelling for all of them (``dataclasses.asdict``, sorted keys), so a config printed by a run,
stored in a weights file and written into a manifest compare equal as text.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def config_to_json(cfg: Any) -> str:
    """A config dataclass (nested ones included) as one line of JSON with sorted keys."""
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


def config_from_dict(cls: type[T], fields: dict[str, Any]) -> T:
    """Rebuild a (possibly nested) config dataclass; unknown fields raise ``ValueError``."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(fields) - known
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config fields {sorted(unknown)}")
    kwargs = {}
    for name, value in fields.items():
        hint = hints.get(name)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = config_from_dict(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def config_from_json(cls: type[T], text: str) -> T:
    """Inverse of :func:`config_to_json`."""
    return config_from_dict(cls, json.loads(text))
