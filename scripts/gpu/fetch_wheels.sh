#!/usr/bin/env bash
# Run HERE (a machine with internet and the Debian fonts): gather what the GPU machine needs to build
# the training set offline, into the git-ignored folder carry/ (it travels with `run --carry carry`).
#   carry/wheels/  cp312 manylinux wheels: tinysoundfont (renderer), soundfile + cffi + pycparser
#                  (models/signal/audio.py imports soundfile)
#   carry/fonts/   MuseScore_General_Lite.sf3, TimGM6mb.sf2, sf_GMbank.sf2, slimmed (see below)
# Prints the carried size; the whole call (repo + carry) must stay under 64 MiB.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${HYPERGAN_VENV:-$HOME/.local/share/hypergan/venv}"
pip="${PIP:-$venv/bin/pip}"
carry="$here/carry"
mkdir -p "$carry/wheels" "$carry/fonts"

"$pip" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$carry/wheels" "tinysoundfont==0.3.7" "soundfile>=0.12" "cffi>=1.17" "pycparser"

# Fonts cut down to the presets a build renders (drum kits, duplicate presets and the presets that
# the fluidsynth check rejected are left out): about 50 MB -> 29 MB, notes unchanged. Read from the
# Debian packages' folders (musescore-general-soundfont-small, timgm6mb-soundfont, csound-soundfont).
(cd "$here" && "$venv/bin/python" -m app.cli data slim-fonts --out "$carry/fonts" \
   --font-dir /usr/share/sounds/sf3:/usr/share/sounds/sf2)
ls -l "$carry/wheels" "$carry/fonts"
echo "carry/: $(du -sb "$carry" | cut -f1) bytes; tracked tree: $(git -C "$here" ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes"
