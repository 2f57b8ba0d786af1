"""Errors a user can cause and fix: the CLI prints their message on one line and exits 2."""


class UserError(Exception):
    """A problem with the user's input, files or settings (not a bug)."""


class AudioFileError(UserError):
    """An audio file could not be used as a one-shot."""


class EmptyAudioError(AudioFileError):
    """The file holds no samples."""


class SilentAudioError(AudioFileError):
    """The file holds only silence (or noise far below a usable level)."""


class CorruptAudioError(AudioFileError):
    """The file is not audio, is truncated, or its data cannot be decoded."""


class TooShortAudioError(AudioFileError):
    """The sound is too short to hold a note."""


class CheckpointError(UserError):
    """Weights are missing, corrupt, of an unknown format or do not match their network."""


class InstrumentFileError(UserError):
    """A saved instrument cannot be written, or read: corrupt, incomplete or of an unsupported version."""
