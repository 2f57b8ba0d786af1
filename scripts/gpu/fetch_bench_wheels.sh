#!/usr/bin/env bash
# Run HERE (a machine with pip and internet), from anywhere: the wheels the fidelity benchmark
# (python -m bench.fidelity) needs on the GPU machine, which has torch 2.11, torchaudio, numpy,
# scipy, tqdm, PyYAML and safetensors (Python 3.12, x86-64) but not these:
#   soundfile + cffi + pycparser    models/signal/audio.py reads and writes audio (libsndfile inside the wheel)
#   pesto-pitch                     the independent pitch judge (models/evaluation/fidelity.py)
#   omegaconf                       unpickling PESTO's checkpoint needs it (2.4 vendors its antlr4 runtime)
# into .whl/ at the repository root (git-ignored through .git/info/exclude), one version of each.
# On the GPU machine (carry .whl):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="${PYTHON:-python3}"
dest="$here/.whl"
exclude="$(git -C "$here" rev-parse --git-path info/exclude)"
case "$exclude" in /*) ;; *) exclude="$here/$exclude" ;; esac
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
mkdir -p "$dest"

platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  -d "$dest" "soundfile==0.14.0" "cffi==2.1.1" "pycparser==3.12" "pesto-pitch==2.0.1" "omegaconf==2.4.0"
ls -l "$dest"
echo ".whl/: $(du -sb "$dest" | cut -f1) bytes"
