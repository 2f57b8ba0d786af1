"""What the sampler remembers between runs (QSettings): devices, last samples and their roots, mix and
pad position, envelope, volume, refinement strength, near-root range, velocity layers and round
robins, recent instruments."""
from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QSettings

from engine.envelope import Envelope
from engine.key_cache import MAX_ROUND_ROBINS, MAX_VELOCITY_LAYERS, Variations
from engine.keys import MAX_NEAR_ROOT


RECENT = 8   # recent instruments kept


def default_settings() -> QSettings:
    """The user's settings store (per-user, native format)."""
    return QSettings("hypergan", "sampler")


class AppSettings:
    """Typed access to a QSettings store (tests pass an INI file in a temporary folder)."""

    def __init__(self, store: QSettings) -> None:
        self.store = store

    def _get(self, key: str, default: object, kind: type) -> object:
        try:
            value = self.store.value(key, default, type=kind)
        except (TypeError, ValueError):
            return default
        return default if value is None else value

    def _set(self, key: str, value: object) -> None:
        self.store.setValue(key, value)
        self.store.sync()

    # -- devices --------------------------------------------------------------------------------
    @property
    def audio_device(self) -> str | None:
        return str(self._get("audio/device", "", str)) or None

    @audio_device.setter
    def audio_device(self, name: str | None) -> None:
        self._set("audio/device", name or "")

    @property
    def midi_port(self) -> str | None:
        """The chosen MIDI input; None = automatic (first real port), "" = off."""
        if not self.store.contains("midi/port"):
            return None
        return str(self._get("midi/port", "", str))

    @midi_port.setter
    def midi_port(self, name: str | None) -> None:
        if name is None:
            self.store.remove("midi/port")
            self.store.sync()
        else:
            self._set("midi/port", name)

    @property
    def midi_channel(self) -> int | None:
        """0-15, or None for all channels."""
        channel = int(self._get("midi/channel", -1, int))
        return channel if 0 <= channel <= 15 else None

    @midi_channel.setter
    def midi_channel(self, channel: int | None) -> None:
        self._set("midi/channel", -1 if channel is None else int(channel))

    # -- samples and sound ------------------------------------------------------------------------
    def sample_path(self, slot: str) -> Path | None:
        text = str(self._get(f"samples/{slot}", "", str))
        return Path(text) if text else None

    def set_sample_path(self, slot: str, path: Path | None) -> None:
        self._set(f"samples/{slot}", str(path) if path else "")

    def sample_root(self, slot: str) -> int | None:
        """The root (MIDI 21-108) the user set for the slot's last sound; None: the detected one."""
        root = int(self._get(f"samples/{slot}_root", 0, int))
        return root if 21 <= root <= 108 else None

    def set_sample_root(self, slot: str, root: int | None) -> None:
        self._set(f"samples/{slot}_root", int(root) if root is not None else 0)

    @property
    def alpha(self) -> float:
        return min(max(float(self._get("mix/alpha", 0.0, float)), 0.0), 1.0)

    @alpha.setter
    def alpha(self, value: float) -> None:
        self._set("mix/alpha", float(value))

    @property
    def pad(self) -> tuple[float, float]:
        """The morph pad's puck, each coordinate in [0, 1]."""
        return tuple(min(max(float(self._get(f"mix/pad_{axis}", 0.0, float)), 0.0), 1.0)  # type: ignore[return-value]
                     for axis in "xy")

    @pad.setter
    def pad(self, position: tuple[float, float]) -> None:
        for axis, value in zip("xy", position):
            self.store.setValue(f"mix/pad_{axis}", float(value))
        self.store.sync()

    @property
    def recent_instruments(self) -> list[Path]:
        """Saved instruments opened or saved lately, newest first (at most ``RECENT``)."""
        try:
            paths = json.loads(str(self._get("instruments/recent", "[]", str)))
        except ValueError:
            return []
        return [Path(p) for p in paths if isinstance(p, str) and p][:RECENT] if isinstance(paths, list) else []

    def add_recent_instrument(self, path: Path) -> None:
        path = Path(path).absolute()
        paths = [path] + [p for p in self.recent_instruments if p != path]
        self._set("instruments/recent", json.dumps([str(p) for p in paths[:RECENT]]))

    def forget_recent_instrument(self, path: Path) -> None:
        paths = [p for p in self.recent_instruments if p != Path(path).absolute()]
        self._set("instruments/recent", json.dumps([str(p) for p in paths]))

    @property
    def volume(self) -> float:
        return min(max(float(self._get("sound/volume", 0.5, float)), 0.0), 1.0)

    @volume.setter
    def volume(self, value: float) -> None:
        self._set("sound/volume", float(value))

    @property
    def refine_strength(self) -> float:
        """0 (off) to 2; 1 is the engine's default refinement."""
        return min(max(float(self._get("sound/refine", 1.0, float)), 0.0), 2.0)

    @refine_strength.setter
    def refine_strength(self, value: float) -> None:
        self._set("sound/refine", float(value))

    @property
    def near_root(self) -> int:
        """Semitones around the root that play the sound itself (0: off)."""
        return min(max(int(self._get("sound/near_root", 0, int)), 0), MAX_NEAR_ROOT)

    @near_root.setter
    def near_root(self, semitones: int) -> None:
        self._set("sound/near_root", int(semitones))

    @property
    def variations(self) -> Variations:
        """Velocity layers and round robins per key (3 and 3 unless changed)."""
        d = Variations()
        rr = min(max(int(self._get("sound/round_robins", d.round_robins, int)), 1), MAX_ROUND_ROBINS)
        layers = min(max(int(self._get("sound/velocity_layers", d.velocity_layers, int)), 1), MAX_VELOCITY_LAYERS)
        return Variations(round_robins=rr, velocity_layers=layers)

    @variations.setter
    def variations(self, v: Variations) -> None:
        self.store.setValue("sound/round_robins", int(v.round_robins))
        self._set("sound/velocity_layers", int(v.velocity_layers))

    @property
    def random_round_robin(self) -> bool:
        return str(self._get("sound/random_round_robin", "false", str)).lower() == "true"

    @random_round_robin.setter
    def random_round_robin(self, value: bool) -> None:
        self._set("sound/random_round_robin", "true" if value else "false")

    @property
    def envelope(self) -> Envelope:
        d = Envelope()
        return Envelope(*(float(self._get(f"sound/{name}", getattr(d, name), float))
                          for name in ("attack_s", "decay_s", "sustain", "release_s")))

    @envelope.setter
    def envelope(self, env: Envelope) -> None:
        for name in ("attack_s", "decay_s", "sustain", "release_s"):
            self.store.setValue(f"sound/{name}", float(getattr(env, name)))
        self.store.sync()

    @property
    def export_folder(self) -> Path | None:
        text = str(self._get("export/folder", "", str))
        return Path(text) if text else None

    @export_folder.setter
    def export_folder(self, folder: Path) -> None:
        self._set("export/folder", str(folder))
