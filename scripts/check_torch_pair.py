"""Does torchaudio's compiled extension load beside the installed torch? One line and exit 1 if not.

torchaudio's ``libtorchaudio.so`` is built against one torch release; beside another it fails at
import (``undefined symbol: ...``), and then every test and the sampler fail far from the cause.
Run by ``scripts/setup.sh`` after each install:

    python scripts/check_torch_pair.py
"""
from __future__ import annotations

import sys
from importlib import metadata


def installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def pair_problem() -> str | None:
    """Why torchaudio does not load beside torch (the loader's first line), or None when it does."""
    try:
        import torchaudio  # noqa: F401 - loads libtorchaudio.so, linked against torch's libraries
        from torchaudio import _extension
    except Exception as exc:  # noqa: BLE001 - OSError, ImportError or RuntimeError by release
        while exc.__cause__ or exc.__context__:   # the loader's own error ("undefined symbol: ...")
            exc = exc.__cause__ or exc.__context__
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if not getattr(_extension, "_IS_TORCHAUDIO_EXT_AVAILABLE", True):
        return "its compiled extension is missing"
    return None


def main() -> int:
    problem = pair_problem()
    if problem is None:
        return 0
    torch_v, audio_v = installed("torch"), installed("torchaudio")
    release = torch_v.split("+")[0]
    print(f"setup: error: torchaudio {audio_v} does not load beside torch {torch_v} ({problem}); "
          f"fix: pin the pair that was released together (torch=={release}, torchaudio=={release}) "
          "in pyproject.toml, run 'bash scripts/lock.sh', then 'bash scripts/setup.sh'", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
