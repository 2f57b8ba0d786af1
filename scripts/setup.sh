#!/usr/bin/env bash
# One-stop set-up for a fresh Debian machine (root) or a developer checkout.
#   bash scripts/setup.sh --start   install what is missing, then open the sampler
#   bash scripts/setup.sh --test    install what is missing, then run the whole test suite
# The Python environment lives outside the checkout (torch alone is several GB) and is reused
# whenever it is already complete, so a second run takes seconds.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HYPERGAN_VENV:-$HOME/.local/share/hypergan/venv}"
python="${PYTHON:-python3}"

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

stamp="$venv/.hypergan-stamp"
want="$(sha256sum "$here/pyproject.toml" | cut -c1-16) $here"
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  deps_ok=0
  if [ "$(cut -d' ' -f1 "$stamp" 2>/dev/null || true)" = "$(echo "$want" | cut -d' ' -f1)" ]; then deps_ok=1; fi
  if [ "$deps_ok" = 1 ]; then
    echo "setup: environment complete; linking this checkout"
    "$venv/bin/pip" install -q --no-deps -e "$here"
  else
    echo "setup: installing Python packages (first time: torch is several GB, a few minutes)"
    "$venv/bin/pip" install -q --upgrade pip >/dev/null
    "$venv/bin/pip" install -q -e "$here[dev]"
  fi
  echo "$want" > "$stamp"
fi
# tinysoundfont renders the training set's SoundFonts (models/data). Not in pyproject: it declares
# PyAudio (live playback only), which has no Linux wheel, so it is installed without dependencies.
"$venv/bin/python" -c "import tinysoundfont" 2>/dev/null || "$venv/bin/pip" install -q --no-deps "tinysoundfont==0.3.7"

case "${1:-}" in
  --start) shift; exec "$venv/bin/hypergan-sampler" "$@" ;;
  --test)  shift; cd "$here"; export QT_QPA_PLATFORM=offscreen; exec "$venv/bin/python" -m pytest -q "$@" ;;
  "") echo "setup: done. Start: $venv/bin/hypergan-sampler   Tests: bash scripts/setup.sh --test" ;;
  *) echo "usage: bash scripts/setup.sh [--start|--test]" >&2; exit 2 ;;
esac
