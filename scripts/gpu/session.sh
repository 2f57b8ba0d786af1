#!/usr/bin/env bash
# Runs on the lent GPU machine, from the repository root of the copy sent there.
#   bash scripts/gpu/session.sh start STAGES...   install carried wheels, build/reuse the dataset,
#                                                 start the stages in the background (setsid), in order
#   bash scripts/gpu/session.sh watch SECONDS     follow the logs for a while, then collect to $OUT
#   bash scripts/gpu/session.sh collect           copy metrics, plots and weights to $OUT
# Stages: features, eval-classifiers, gan, hyper-pre, hyper-adv, vocoder; "a+b" runs two at once.
# Everything lives under $HG (default /root/hg): runs/<stage>/, logs/, the dataset in /dev/shm.
# A stage resumes from runs/<stage>/state-*.safetensors, which a previous session's state (carried
# in state_local/<stage>/) seeds on a fresh machine.
set -euo pipefail
HG="${HG:-/root/hg}"
DATA="${HG_DATA:-/dev/shm/hypergan_data}"
MINUTES="${HG_MINUTES:-9}"
mkdir -p "$HG/runs" "$HG/logs"
export PYTHONPATH="$HG/pylib:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

install_wheels() {
  if [ ! -f "$HG/pylib/.done" ] && ls carry/wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target "$HG/pylib" carry/wheels/*.whl
    touch "$HG/pylib/.done"
  fi
}

seed_state() {  # copy carried state into the run folder if the machine has none yet
  local stage="$1"
  if [ -d "state_local/$stage" ] && ! ls "$HG/runs/$stage"/state-*.safetensors >/dev/null 2>&1; then
    mkdir -p "$HG/runs/$stage"
    cp state_local/"$stage"/* "$HG/runs/$stage/"
  fi
}

weights_dir() {  # earlier stages' outputs, gathered where later stages look for them
  mkdir -p "$HG/weights"
  for f in "$HG"/runs/features/features.safetensors "$HG"/runs/eval-classifiers/*_classifier.safetensors \
           "$HG"/runs/gan/generator.safetensors "$HG"/runs/gan/discriminator.safetensors \
           "$HG"/runs/hyper-pre/hyper_pre.safetensors "$HG"/runs/hyper-adv/hyper.safetensors; do
    [ -f "$f" ] && cp "$f" "$HG/weights/"
  done
  for f in state_local/weights/*.safetensors; do
    [ -f "$f" ] && [ ! -f "$HG/weights/$(basename "$f")" ] && cp "$f" "$HG/weights/"
  done
  echo "$HG/weights"
}

run_stage() {  # one stage in the foreground (called inside the background pipeline)
  local stage="$1" minutes="$2"
  seed_state "$stage"
  local w; w="$(weights_dir)"
  python3 -m app.cli train "$stage" --data "$DATA" --out "$HG/runs/$stage" --weights "$w" \
    --minutes "$minutes" ${HG_SET:+--set $HG_SET} >>"$HG/logs/$stage.log" 2>&1
  weights_dir >/dev/null
}

case "${1:-}" in
  start)
    shift
    install_wheels
    if [ ! -f "$DATA/COMPLETE" ]; then
      bash scripts/gpu/build_data.sh "$DATA" >>"$HG/logs/data.log" 2>&1
    fi
    # The stages run detached so they outlive this call while the machine is held.
    setsid nohup bash -c "
      set -u
      for group in $*; do
        for s in \${group//+/ }; do
          bash scripts/gpu/session.sh _stage \"\$s\" &
        done
        wait
      done
      echo pipeline-done >> $HG/logs/pipeline.log
    " >/dev/null 2>&1 &
    echo "started: $*"
    ;;
  _stage) run_stage "$2" "${HG_STAGE_MINUTES:-$MINUTES}" ;;
  watch)
    end=$((SECONDS + ${2:-500}))
    while [ $SECONDS -lt $end ]; do
      sleep 20
      grep -q pipeline-done "$HG/logs/pipeline.log" 2>/dev/null && break
    done
    bash "$0" collect
    ;;
  collect)
    out="${OUT:-/tmp/out}"; mkdir -p "$out"
    nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv,noheader > "$HG/logs/gpu.txt" 2>&1 || true
    tar -czf "$out/logs.tgz" -C "$HG" logs $(cd "$HG" && ls -d runs/*/metrics.jsonl runs/*/*.png 2>/dev/null | grep -v 'mels_0' || true) \
      $(cd "$HG" && ls runs/*/mels_0*.png 2>/dev/null | tail -n 4 || true)
    for f in "$HG"/logs/*.log; do echo "== $f"; tail -n 6 "$f"; done
    ;;
  pack)  # bring back one stage's resume state and weights (<= 8 files)
    out="${OUT:-/tmp/out}"; mkdir -p "$out"
    for f in "$HG"/runs/"$2"/state-*.safetensors; do cp "$f" "$out/"; done
    ls -la "$out"
    ;;
  *) echo "usage: session.sh start STAGES... | watch SECONDS | collect | pack STAGE" >&2; exit 2 ;;
esac
