#!/usr/bin/env bash
# Run ON THE GPU MACHINE (no internet), from the repository root, with carry/ carried along
# (`bash scripts/gpu/fetch_wheels.sh` here fills it): installs the carried wheels into a target
# folder, then builds the training set into /dev/shm/hypergan_data, or reuses it when a finished
# build with the same settings is already there (a held machine keeps /dev/shm between calls).
#   bash scripts/gpu/build_data.sh                  # the full set (4 fonts + 1,000 procedural), all cores
#   bash scripts/gpu/build_data.sh --mel tiny       # extra arguments go to `hypergan data build`
# Prints the data folder on its last line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out="${HYPERGAN_DATA:-/dev/shm/hypergan_data}"
site="${HYPERGAN_SITE:-/dev/shm/hypergan_site}"
py="${PYTHON:-python3}"

if ! PYTHONPATH="$site" "$py" -c "import tinysoundfont, soundfile" 2>/dev/null; then
  ls carry/wheels/*.whl >/dev/null 2>&1 || { echo "build_data: no carry/wheels (run scripts/gpu/fetch_wheels.sh and carry 'carry')" >&2; exit 2; }
  if "$py" -m pip --version >/dev/null 2>&1; then
    "$py" -m pip install -q --no-index --no-deps --target "$site" carry/wheels/*.whl
  else  # no pip: these wheels need no build step, unpacking them is installing them
    mkdir -p "$site"
    for w in carry/wheels/*.whl; do "$py" -m zipfile -e "$w" "$site"; done
  fi
fi
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
workers="${WORKERS:-$(nproc --all)}"  # before OMP_NUM_THREADS=1: GNU nproc honours it and would say 1
export OMP_NUM_THREADS=1  # one thread per worker process; the workers are the parallelism

# Fonts gather in /dev/shm, so that when tree + fonts outgrow one call's carry the fonts can come
# over two calls on the held machine (carry some fonts, run this: it stops naming the missing ones;
# carry the rest, run it again: it builds).
fonts="${HYPERGAN_FONT_CACHE:-/dev/shm/hypergan_fonts}"
mkdir -p "$fonts"
for f in carry/fonts/*.sf[23]; do
  [ -f "$f" ] || continue
  base="$(basename "${f%.*}")"
  cmp -s "$f" "$fonts/$(basename "$f")" && continue
  rm -f "$fonts/$base.sf2" "$fonts/$base.sf3"  # an earlier copy in the other format would be found first
  cp "$f" "$fonts/"
done

start=$(date +%s)
"$py" -m app.cli data build --out "$out" --font-dir "$fonts" --workers "$workers" "$@"
echo "build_data: $(( $(date +%s) - start )) s, $(du -sh "$out" | cut -f1) in $out"
echo "$out"
