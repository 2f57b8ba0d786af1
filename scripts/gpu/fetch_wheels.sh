#!/usr/bin/env bash
# Run HERE (a machine with internet and the Debian fonts): gather what the GPU machine needs to build
# the training set offline, into the git-ignored folder carry/ (it travels with `run --carry carry`).
#   carry/wheels/  cp312 manylinux wheels: tinysoundfont (renderer), soundfile + cffi + pycparser
#                  (models/signal/audio.py imports soundfile)
#   carry/fonts/   MuseScore_General_Lite, TimGM6mb, sf_GMbank, FluidR3_GM: slimmed SF3s (see below)
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
# the fluidsynth check rejected are left out), samples resampled to <= 22.05 kHz where the render
# cannot hear the difference and stored as Ogg Vorbis: about 198 MB -> 31 MB. Read from the Debian
# packages' folders (musescore-general-soundfont-small, timgm6mb-soundfont, csound-soundfont,
# fluid-soundfont-gm; `apt-get install` them here). Takes ~5 minutes on two cores.
# After changing the slimming, run `hypergan data check-fonts --slimmed carry/fonts` here (needs
# fluidsynth) and commit models/data/font_check.json: builds leave out what the copies play wrong.
(cd "$here" && "$venv/bin/python" -m app.cli data slim-fonts --out "$carry/fonts" \
   --font-dir /usr/share/sounds/sf3:/usr/share/sounds/sf2)
ls -l "$carry/wheels" "$carry/fonts"
carried=$(du -sb "$carry/wheels" "$carry/fonts" | awk '{s += $1} END {print s}')
tree=$(git -C "$here" ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "carry/wheels + carry/fonts: $carried bytes; tracked tree: $tree bytes; together $((carried + tree)) of $((64 * 1024 * 1024))"
