#!/usr/bin/env bash
# Regenerates requirements-lock.txt from pyproject.toml: every package scripts/setup.sh installs
# (runtime, the dev extra, the setup and data groups), pinned with sha256 hashes.
#   bash scripts/lock.sh                     keep today's pins where pyproject.toml still allows them
#   bash scripts/lock.sh --upgrade           move every package to its newest allowed release
#   bash scripts/lock.sh --upgrade-package numpy
# The resolution is universal (one file, environment markers where Python versions differ), made for
# and tested on Linux x86-64 with Python 3.11 and 3.12. Needs uv: the one setup.sh installed, or any.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HYPERGAN_VENV:-$HOME/.local/share/hypergan/venv}"
uv="${UV:-$(command -v uv || echo "$venv/bin/uv")}"
cd "$here"
# tinysoundfont declares PyAudio for live playback, which we don't use and which has no Linux wheel.
exclude="$(mktemp)"
trap 'rm -f "$exclude"' EXIT
echo pyaudio > "$exclude"
"$uv" pip compile pyproject.toml --extra dev --group pyproject.toml:setup --group pyproject.toml:data \
  --universal --python-version 3.11 --generate-hashes --excludes "$exclude" \
  --custom-compile-command "bash scripts/lock.sh" --output-file requirements-lock.txt "$@"
