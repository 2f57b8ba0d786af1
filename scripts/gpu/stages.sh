#!/usr/bin/env bash
# Runs on the lent GPU machine, from the repository root of the copy sent there.
#   bash scripts/gpu/stages.sh start STAGES...   install carried wheels, build/reuse the dataset,
#                                                start the stages in the background (setsid), in order;
#                                                a stage is NAME or NAME:MINUTES, "a+b" runs two at once
#   bash scripts/gpu/stages.sh watch SECONDS     follow the logs for a while, then collect to $OUT
#   bash scripts/gpu/stages.sh collect           copy metrics and plots to $OUT (logs.tgz)
#   bash scripts/gpu/stages.sh pack gan features/features.safetensors   resume state / files to $OUT
# HG_DEADLINE (epoch seconds) caps every training stage's minutes so nothing trains past it; the picks and
# evaluations queued after training still run (each takes under a minute).
# Stages: features, eval-classifiers, gan, hyper-pre, hyper-adv, vocoder; "a+b" runs two at once;
# NAME@VARIANT trains NAME into runs/NAME@VARIANT with HG_SET_<name>_<variant> (side-by-side variants);
# HG_INIT_<name>[_<variant>] starts a run without resume state from those weights (--init);
# HG_WEIGHTS_<name>[_<variant>]=DIR gives a run another weights folder (e.g. assets: the shipped f + G);
# pick-features / pick-hyper install the best features@* / hyper-pre@* run as runs/features / runs/hyper-pre;
# eval-gan evaluates G on the test split; eval fills Table 1 (G, S3, S4) on the test split; both write
# runs/<run>, so eval@before with HG_WEIGHTS_eval_before=assets measures the shipped networks beside eval@after;
# HG_ARGS_<run> adds arguments to an eval (e.g. --hyper-pre $HG/runs/hyper-pre@x/hyper_pre.safetensors).
# Everything lives under $HG (default /root/hg): runs/<stage>/, logs/, the dataset in /dev/shm.
# A stage resumes from runs/<stage>/state-*.safetensors (weights, optimisers, random streams, step),
# which a state carried in state_local/<stage>/ seeds on a fresh machine.
set -euo pipefail
HG="${HG:-/root/hg}"
DATA="${HG_DATA:-/dev/shm/hypergan_data}"
MINUTES="${HG_MINUTES:-9}"
mkdir -p "$HG/runs" "$HG/logs"
SITE="${HYPERGAN_SITE:-/dev/shm/hypergan_site}"  # carried wheels, installed by build_data.sh
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

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
  # then carried weights, then the shipped float16 ones (f and the classifiers travel with the tree)
  for f in state_local/weights/*.safetensors assets/features.safetensors assets/generator.safetensors \
           assets/*_classifier.safetensors; do
    [ -f "$f" ] && [ ! -f "$HG/weights/$(basename "$f")" ] && cp "$f" "$HG/weights/"
  done
  echo "$HG/weights"
}

run_weights() {  # HG_WEIGHTS_<run> (e.g. HG_WEIGHTS_eval_before=assets: the shipped networks), else $2
  local var="HG_WEIGHTS_${1//[-@]/_}"
  echo "${!var:-$2}"
}

run_stage() {  # one stage in the foreground (called inside the background pipeline)
  # STAGE@VARIANT trains STAGE into runs/STAGE@VARIANT with the sets of HG_SET_<stage>_<variant>
  local run="$1" minutes="$2" stage="${1%%@*}"
  local w; w="$(weights_dir)"
  local args_var="HG_ARGS_${run//[-@]/_}"
  case "$stage" in
    pick-features)  # the best of the features@* runs becomes runs/features (models/runs/pick_features.py)
      python3 -m models.runs.pick_features "$HG"/runs/features@* --into "$HG/runs/features" \
        >>"$HG/logs/pick-features.log" 2>&1
      weights_dir >/dev/null; return 0 ;;
    pick-hyper)  # the best of the hyper-pre@* runs becomes runs/hyper-pre (models/runs/pick_hyper.py)
      python3 -m models.runs.pick_hyper "$HG"/runs/hyper-pre@* --into "$HG/runs/hyper-pre" \
        >>"$HG/logs/pick-hyper.log" 2>&1
      rm -f "$HG/weights/hyper_pre.safetensors"; weights_dir >/dev/null; return 0 ;;
    eval)  # the Table 1 analogue on the test split: G, G + H after S3 and after S4 (models/evaluation/table1.py)
      python3 -m app.cli eval --data "$DATA" --weights "$(run_weights "$run" "$w")" --split test --device cuda \
        --out "$HG/runs/$run" ${!args_var:-} >>"$HG/logs/$run.log" 2>&1; return 0 ;;
    eval-gan)  # the test-split evaluation of the GAN just trained (models/evaluation/gan_report.py)
      python3 -m models.evaluation.gan_report --data "$DATA" --weights "$(run_weights "$run" "$w")" --split test \
        --device cuda --out "$HG/runs/$run" ${!args_var:-} >>"$HG/logs/$run.log" 2>&1; return 0 ;;
  esac
  if [ -n "${HG_DEADLINE:-}" ]; then  # never train past the deadline (epoch s); picks and evaluations (under a minute) still run
    local left=$(( (HG_DEADLINE - $(date +%s)) / 60 ))
    [ "$left" -lt 1 ] && { echo "skip $stage: past the deadline" >>"$HG/logs/pipeline.log"; return 0; }
    [ "$left" -lt "${minutes%.*}" ] && minutes="$left"
  fi
  seed_state "$run"
  local sets_var="HG_SET_${run//[-@]/_}"  # e.g. HG_SET_gan="batch_size=128 r1_gamma=1", HG_SET_features_p3
  local init_var="HG_INIT_${run//[-@]/_}"  # e.g. HG_INIT_hyper_pre=state_local/weights/hyper_pre.safetensors
  w="$(run_weights "$run" "$w")"
  python3 -m app.cli train "$stage" --data "$DATA" --out "$HG/runs/$run" --weights "$w" \
    --minutes "$minutes" ${!init_var:+--init ${!init_var}} ${!sets_var:+--set ${!sets_var}} >>"$HG/logs/$run.log" 2>&1
  weights_dir >/dev/null
}

case "${1:-}" in
  start)
    shift
    # Builds the set from carried fonts and wheels, or reuses the finished build a held machine keeps.
    HYPERGAN_DATA="$DATA" HYPERGAN_SITE="$SITE" bash scripts/gpu/build_data.sh ${HG_DATA_ARGS:-} \
      >>"$HG/logs/data.log" 2>&1 || { tail -n 30 "$HG/logs/data.log"; exit 1; }
    tail -n 3 "$HG/logs/data.log"
    # A finished earlier pipeline (a start that only built the set) must not end this one's watch.
    sed -i '/^pipeline-done$/d' "$HG/logs/pipeline.log" 2>/dev/null || true
    # The stages run detached so they outlive this call while the machine is held.
    setsid nohup bash -c "
      set -u
      for group in $*; do
        for s in \${group//+/ }; do
          bash scripts/gpu/stages.sh _stage \"\$s\" &
        done
        wait
      done
      echo pipeline-done >> $HG/logs/pipeline.log
    " >/dev/null 2>&1 &
    echo "started: $*"
    ;;
  _stage) name="${2%%:*}"; minutes="${2#*:}"; [ "$minutes" = "$2" ] && minutes="$MINUTES"
          run_stage "$name" "$minutes" ;;
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
    # logs, metrics, evaluation tables and each run's two newest plots (all plots outgrow one returned file)
    tar -czf "$out/logs.tgz" -C "$HG" logs $(cd "$HG" && ls -d runs/*/metrics.jsonl runs/*/table.md runs/*/results.json \
      2>/dev/null || true) $(cd "$HG" && for d in runs/*/; do ls -t "$d"*.png 2>/dev/null | head -n 2; done)
    for f in "$HG"/logs/*.log; do echo "== $f"; tail -n 6 "$f"; done
    ;;
  pack)  # bring back resume states and weights: pack STAGE[/FILE] ... (<= 8 files in all; a GAN state is 5)
    out="${OUT:-/tmp/out}"; mkdir -p "$out"
    shift
    for item in "$@"; do
      stage="${item%%/*}"
      if [ "$item" = "$stage" ]; then
        for f in "$HG"/runs/"$stage"/state-*.safetensors; do cp "$f" "$out/$stage-$(basename "$f")"; done
      else
        cp "$HG/runs/$item" "$out/"
      fi
    done
    ls -la "$out"
    ;;
  *) echo "usage: stages.sh start STAGES... | watch SECONDS | collect | pack STAGE" >&2; exit 2 ;;
esac
