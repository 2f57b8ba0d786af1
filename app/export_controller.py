"""Export: ask for a folder, write the pack with the engine's ``export_pack``, report where it went."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QWidget

from app.settings import AppSettings
from engine.key_cache import PLAIN, KeySample, VariantKey, Variations
from models.errors import UserError

ChooseFolder = Callable[[QWidget | None, Path | None], Path | None]
ConfirmReplace = Callable[[QWidget | None, Path], bool]


def ask_folder(parent: QWidget | None, start: Path | None) -> Path | None:
    folder = QFileDialog.getExistingDirectory(parent, "Export the instrument into\u2026", str(start or Path.home()))
    return Path(folder) if folder else None


def ask_replace(parent: QWidget | None, target: Path) -> bool:
    answer = QMessageBox.question(parent, "Replace pack?", f"{target} exists. Replace it?")
    return answer == QMessageBox.Yes


class ExportController(QObject):
    """``export(keys, name, parent)``; emits ``exported(path)`` or ``failed(message)``."""

    exported = Signal(str)
    failed = Signal(str)

    def __init__(self, settings: AppSettings, choose_folder: ChooseFolder = ask_folder,
                 confirm_replace: ConfirmReplace = ask_replace, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.choose_folder = choose_folder
        self.confirm_replace = confirm_replace

    def export(self, keys: dict[int, KeySample], name: str, parent: QWidget | None = None,
               release_s: float = 0.3, variants: dict[VariantKey, KeySample] | None = None,
               variations: Variations = PLAIN) -> Path | None:
        """Write the pack into a folder the user picks; ``release_s`` becomes the packs' release time;
        ``variants`` are the keys' velocity layers and round robins (laid out by ``variations``)."""
        if not keys:
            self.failed.emit("Nothing to export yet: drop a sound and let it render")
            return None
        folder = self.choose_folder(parent, self.settings.export_folder)
        if folder is None:
            return None
        self.settings.export_folder = folder
        from engine.export import FORMATS, PackExistsError, export_pack, safe_name

        QApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            try:
                path = export_pack(keys, name, folder, formats=FORMATS, release_s=release_s, variants=variants,
                                   variations=variations)
            except PackExistsError:
                if not self.confirm_replace(parent, folder / safe_name(name)):
                    return None
                path = export_pack(keys, name, folder, formats=FORMATS, force=True, release_s=release_s,
                                   variants=variants, variations=variations)
        except UserError as exc:
            self.failed.emit(f"Export failed: {exc}")
            return None
        finally:
            QApplication.restoreOverrideCursor()
        self.exported.emit(str(path))
        return path
