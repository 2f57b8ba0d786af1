"""scripts/check_torch_pair.py: silent beside the matching torch; one line with both versions and the fix
when torchaudio's extension does not load."""
from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_torch_pair.py"


def check(pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300)


def test_the_installed_pair_loads() -> None:
    done = check()
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_a_torchaudio_that_does_not_load_is_one_line_with_both_versions_and_the_fix(tmp_path: Path) -> None:
    # What torchaudio 2.11.1 does beside torch 2.11.0: its library wants a newer torch symbol, and torch's
    # loader wraps the linker's error in its own.
    fake = tmp_path / "torchaudio"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "try:\n"
        "    raise OSError('/venv/torchaudio/lib/libtorchaudio.so: undefined symbol: "
        "torch_exception_get_what_without_backtrace')\n"
        "except OSError as exc:\n"
        "    raise OSError('Could not load this library: /venv/torchaudio/lib/libtorchaudio.so') from exc\n")
    done = check(tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert (f"torchaudio {metadata.version('torchaudio')} does not load beside torch {metadata.version('torch')}"
            in done.stderr)
    assert "undefined symbol: torch_exception_get_what_without_backtrace" in done.stderr
    assert "bash scripts/lock.sh" in done.stderr
