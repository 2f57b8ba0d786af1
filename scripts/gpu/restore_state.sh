#!/usr/bin/env bash
# Restore the committed training state into state_local/ (ignored), ready to carry to the GPU.
#   bash scripts/gpu/restore_state.sh            # the commit named in state/POINTER
#   bash scripts/gpu/restore_state.sh REV        # another commit that holds state/
# The state (fp32 G + D + G_ema, optimiser moments, f, classifiers, ...) is committed under state/ and
# removed in the next commit (docs/training.md, "Training state"), so it lives in history only.
# Resume states are cast to float16 weights for carrying, optimiser moments and random streams kept
# (a GAN state: 39 MiB instead of 62 MiB); HG_WEIGHTS_ONLY=1 drops those too (23 MiB; the
# optimisers then start afresh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
rev="${1:-$(sed -n 's/^commit: *//p' state/POINTER)}"
py="${PYTHON:-python3}"
git cat-file -e "$rev^{commit}" 2>/dev/null || { echo "restore_state: commit $rev not in this clone's history (git fetch --unshallow?)" >&2; exit 2; }
rm -rf state_local/full && mkdir -p state_local/full
git ls-tree -r --name-only "$rev" state/ | grep '\.safetensors$' | while read -r path; do
  mkdir -p "state_local/full/$(dirname "${path#state/}")"
  git show "$rev:$path" > "state_local/full/${path#state/}"
done
for dir in state_local/full/*/; do
  name="$(basename "$dir")"
  rm -rf "state_local/$name"
  if [ "$name" = weights ]; then
    cp -r "$dir" "state_local/$name"
  else
    "$py" -m models.runs.state cast "$dir" "state_local/$name" --dtype float16 \
      ${HG_WEIGHTS_ONLY:+--weights-only} >/dev/null
  fi
done
du -sh state_local/* | grep -v full
echo "restore_state: state of $rev in state_local/ (fp32 originals in state_local/full/, do not carry those)"
