#!/usr/bin/env bash
# One-stop set-up for a fresh Debian machine (root) or a developer checkout.
#   bash scripts/setup.sh --start   install what is missing, then open the sampler
#   bash scripts/setup.sh --test    install what is missing, then run the whole test suite
# Python packages come from requirements-lock.txt only (exact versions, hash-checked; regenerate it
# with bash scripts/lock.sh), for Linux x86-64 with Python 3.11 or 3.12. The environment lives outside
# the checkout (torch alone is several GB) and is reused while it matches the lock, so a second run
# takes seconds. Environment: HYPERGAN_VENV (where), PYTHON (which interpreter), HYPERGAN_INSTALLER
# (uv, the default, or pip), UV_NO_CACHE / PIP_NO_CACHE_DIR (no package cache).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HYPERGAN_VENV:-$HOME/.local/share/hypergan/venv}"
python="${PYTHON:-python3}"
lock="$here/requirements-lock.txt"
installer="${HYPERGAN_INSTALLER:-uv}"

fail() { echo "setup: error: $*" >&2; exit 1; }

# The lock holds the CUDA build of torch for Linux x86-64 (it runs on the CPU too); elsewhere pip
# would pick other wheels, or none, so stop here and point to the README's manual path.
platform="$(uname -s) $(uname -m)"
[ "$platform" = "Linux x86_64" ] ||
  fail "requirements-lock.txt is made for Linux x86_64, this is $platform: see README.md, 'Platforms'"
command -v "$python" >/dev/null || fail "no $python: install Python 3.11 or 3.12, or set PYTHON=/path/to/python3.11"
pyver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$pyver" in
  3.11|3.12) ;;
  *) fail "$python is Python $pyver; requirements-lock.txt covers 3.11 and 3.12: run with PYTHON=python3.12 (or 3.11)" ;;
esac
case "$installer" in uv|pip) ;; *) fail "HYPERGAN_INSTALLER=$installer: use uv or pip" ;; esac

apt_packages=(libportaudio2 libsndfile1 libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0
              libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libegl1 libgl1 libfontconfig1
              libdbus-1-3 fluidsynth timgm6mb-soundfont)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The lock's own uv pin (with its hashes), for pip to bootstrap uv.
lock_entry() { awk -v pkg="$1==" 'index($0, pkg) == 1 {p = 1} p {print} p && !/\\$/ {exit}' "$lock"; }

install_locked() {
  if [ "$installer" = uv ]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --require-hashes --no-deps \
      -r <(lock_entry uv)
    # sync: exactly the lock, removing anything else (a package a newer lock dropped).
    "$venv/bin/uv" pip sync -q --python "$venv/bin/python" --require-hashes "$lock"
    "$venv/bin/uv" pip install -q --python "$venv/bin/python" --no-deps --no-build-isolation -e "$here"
  else
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r "$lock"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$here"
  fi
}

stamp="$venv/.hypergan-stamp"
lock_hash="$(sha256sum "$lock" | cut -c1-16)"
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$lock_hash $here" ]; then
  if [ "$(cut -d' ' -f1 "$stamp" 2>/dev/null || true)" = "$lock_hash" ]; then
    echo "setup: environment matches the lock; linking this checkout"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$here"
  else
    rm -f "$stamp"
    echo "setup: installing Python packages from requirements-lock.txt with $installer" \
         "(first time: torch is several GB, a few minutes)"
    install_locked
    # A torchaudio built for another torch fails only when imported: catch it here, not in every test.
    "$venv/bin/python" "$here/scripts/check_torch_pair.py" || exit 1
    # pip check, less its one known line: tinysoundfont declares PyAudio, which the lock leaves out.
    problems="$("$venv/bin/python" -m pip check 2>&1 |
                grep -v -e '^tinysoundfont .* requires pyaudio, which is not installed\.$' \
                        -e '^No broken requirements found\.$' || true)"
    [ -z "$problems" ] || fail "pip check: $problems"
  fi
  echo "$lock_hash $here" > "$stamp"
fi

case "${1:-}" in
  --start) shift; exec "$venv/bin/hypergan-sampler" "$@" ;;
  --test)  shift; cd "$here"; export QT_QPA_PLATFORM=offscreen; exec "$venv/bin/python" -m pytest -q "$@" ;;
  "") echo "setup: done. Start: $venv/bin/hypergan-sampler   Tests: bash scripts/setup.sh --test" ;;
  *) echo "usage: bash scripts/setup.sh [--start|--test]" >&2; exit 2 ;;
esac
