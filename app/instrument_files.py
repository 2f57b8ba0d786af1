"""Saved instruments in the window: File > Save instrument, Open instrument, Open recent.

The format lives in ``engine/instrument_file.py``; here the window's state goes into a
``SavedInstrument`` and back. Opening reads and checks the whole file, and loads every sound, before
anything in the window changes: a bad file leaves the instrument as it was.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QMenu, QWidget

from app.instrument_controller import InstrumentController, SoundPreview
from app.settings import AppSettings
from app.sound_panel import SoundPanel
from app.variations_panel import VariationsPanel
from engine.instrument_file import SUFFIX, SavedInstrument, SavedSound, load_sound, open_instrument, save_instrument
from models.errors import UserError

FILTER = f"HyperGAN instruments (*{SUFFIX});;All files (*)"
ChoosePath = Callable[[QWidget | None, Path | None], Path | None]


def ask_save_path(parent: QWidget | None, start: Path | None) -> Path | None:
    path, _ = QFileDialog.getSaveFileName(parent, "Save the instrument", str(start or Path.home()), FILTER)
    if not path:
        return None
    path = Path(path)
    return path if path.suffix else path.with_suffix(SUFFIX)


def ask_open_path(parent: QWidget | None, start: Path | None) -> Path | None:
    path, _ = QFileDialog.getOpenFileName(parent, "Open an instrument", str(start or Path.home()), FILTER)
    return Path(path) if path else None


class InstrumentFiles(QObject):
    """Saves and opens the instrument; emits ``saved(path)``, ``opened(path)`` or ``failed(message)``."""

    saved = Signal(str)
    opened = Signal(str)
    failed = Signal(str)

    def __init__(self, instrument: InstrumentController, sound: SoundPanel, variations: VariationsPanel,
                 settings: AppSettings, choose_save: ChoosePath = ask_save_path,
                 choose_open: ChoosePath = ask_open_path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.instrument, self.sound, self.variations, self.settings = instrument, sound, variations, settings
        self.choose_save, self.choose_open = choose_save, choose_open
        self.recent_menu: QMenu | None = None

    # -- saving ----------------------------------------------------------------------------------------
    def current(self) -> SavedInstrument:
        """The window's instrument as it would be saved; UserError when there is no sound."""
        inst = self.instrument
        if not inst.filled:
            raise UserError("nothing to save yet: drop a sound first")
        sounds = tuple(SavedSound(slot, inst.detected[slot].name, inst.detected[slot].audio, inst.detected[slot].midi,
                                  inst.detected[slot].confidence, inst.roots.get(slot)) for slot in inst.filled)
        return SavedInstrument(sounds, alpha=inst.alpha, pad=inst.pad, envelope=self.sound.envelope(),
                               volume=self.sound.volume(), refine_strength=inst.refine_strength,
                               near_root=inst.near_root, variations=inst.variations)

    def save(self, parent: QWidget | None = None, path: Path | None = None) -> Path | None:
        """Save to ``path`` (or where the user picks); reports through ``saved`` or ``failed``."""
        try:
            current = self.current()
            path = path or self.choose_save(parent, self._start_folder())
            if path is None:
                return None
            save_instrument(path, current)
        except UserError as exc:
            self.failed.emit(f"Save failed: {exc}")
            return None
        self._remember(path)
        self.saved.emit(str(path))
        return path

    # -- opening ---------------------------------------------------------------------------------------
    def open(self, parent: QWidget | None = None, path: Path | None = None) -> bool:
        """Open ``path`` (or one the user picks); on any problem nothing changes and ``failed`` says why."""
        path = path or self.choose_open(parent, self._start_folder())
        if path is None:
            return False
        try:
            saved = open_instrument(path)
            sounds = {s.slot: self._load(s) for s in saved.sounds}
        except UserError as exc:
            self.failed.emit(f"Open failed: {exc}")
            return False
        self._apply(saved, sounds)
        self._remember(path)
        self.opened.emit(str(path))
        return True

    def _load(self, sound: SavedSound) -> tuple[Any, Any]:
        engine = self.instrument.engine
        if engine is None:    # no model: shown, not played
            preview = SoundPreview(sound.name, sound.audio, sound.midi, sound.confidence)
            return preview, preview
        try:
            return load_sound(engine, sound)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - odd audio inside the file is the file's fault
            raise UserError(f"sound {sound.slot} ({sound.name}) cannot be used: {type(exc).__name__}: {exc}") from None

    def _apply(self, saved: SavedInstrument, sounds: dict[str, tuple[Any, Any]]) -> None:
        inst, settings = self.instrument, self.settings
        self.sound.set_envelope(saved.envelope)        # notifies: the voices and the settings follow
        self.sound.set_volume(saved.volume)
        # The rest without notifying: replace_all's one request below renders with all of them.
        self.sound.set_refine(saved.refine_strength, notify=False)
        inst.refine_strength = settings.refine_strength = saved.refine_strength
        self.sound.set_near_root(saved.near_root, notify=False)
        inst.near_root = settings.near_root = saved.near_root
        self.variations.set_variations(saved.variations, notify=False)
        inst.variations = settings.variations = saved.variations
        inst.replace_all(sounds, saved.alpha, saved.pad)

    # -- recent ----------------------------------------------------------------------------------------
    def _start_folder(self) -> Path | None:
        recent = self.settings.recent_instruments
        return recent[0].parent if recent else None

    def _remember(self, path: Path) -> None:
        self.settings.add_recent_instrument(Path(path))
        self.fill_recent_menu()

    def fill_recent_menu(self, menu: QMenu | None = None) -> None:
        """(Re)build the Open recent submenu: one entry per recent file, newest first."""
        self.recent_menu = menu or self.recent_menu
        if self.recent_menu is None:
            return
        self.recent_menu.clear()
        recent = self.settings.recent_instruments
        for path in recent:
            action = self.recent_menu.addAction(path.name)
            action.setToolTip(str(path))
            action.setStatusTip(str(path))
            action.triggered.connect(lambda _=False, p=path: self.open_recent(p))
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear the list").triggered.connect(self._clear_recent)
        self.recent_menu.setEnabled(bool(recent))

    def open_recent(self, path: Path) -> bool:
        """Open a recent file; one that is gone leaves the list."""
        if not Path(path).is_file():
            self.settings.forget_recent_instrument(path)
            self.fill_recent_menu()
            self.failed.emit(f"Open failed: {path} is gone (removed from the recent list)")
            return False
        return self.open(path=path)

    def _clear_recent(self) -> None:
        for path in self.settings.recent_instruments:
            self.settings.forget_recent_instrument(path)
        self.fill_recent_menu()
