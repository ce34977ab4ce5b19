#!/usr/bin/env bash
# fuseval on a lent NVIDIA H200: two quick bench runs of ResNet-50 and of BERT-base (batch 1), the CUDA
# event check, and each model's run-to-run agreement. Runs on the GPU machine (no Rust, no network) from
# the repo root, after ONNX Runtime's CUDA provider is staged (../shared/gpu/stage-ort-cuda.sh):
#   bash .gpu/meta/assemble.sh && . .gpu/env.sh && bash results/h200/run.sh
# with the release binary carried as target/release/fuseval.
#
# The device tool brings back at most 8 files from $OUT (16 MiB each, at most two folders down), so the
# work happens in a folder under /tmp, laid out as h200/<run>/{summary.txt,stderr.txt,calibration.json,...},
# and is packed after every step into $OUT/h200/h200.tar.gz; beside it come commands.txt, nvidia-smi.txt,
# models.sha256, eventcheck.txt and the two agreement-*.txt (7 files). Unpack with `tar -xzf h200.tar.gz`.
# The models themselves are never copied out.
#
# Time: the device call allows 600 s in all. A bench starts only while the script's clock is at most
# SKIP_BENCH_AFTER (480 s) and is stopped (SIGTERM: fuseval keeps the instances it finished, exit 130 or
# 124 from timeout) at BENCH_END (510 s); the event check starts only before EVENT_START_BY (520 s), with
# --quick after EVENT_QUICK_AFTER (440 s), and is stopped at EVENT_END (550 s). Agreements always run.
set -u

SKIP_BENCH_AFTER=${SKIP_BENCH_AFTER:-480}
BENCH_END=${BENCH_END:-510}
EVENT_QUICK_AFTER=${EVENT_QUICK_AFTER:-440}
EVENT_START_BY=${EVENT_START_BY:-520}
EVENT_END=${EVENT_END:-550}
SCRIPT=results/h200/run.sh
KEY_FILES="commands.txt nvidia-smi.txt models.sha256 eventcheck.txt agreement-resnet50.txt agreement-bert-base.txt"
. results/h200/common.sh

# ---------------------------------------------------------------------------------------------------
# bench: each model twice, interleaved so that a model's two runs are minutes apart
declare -A MODEL_ARGS=(
  [resnet50]=""                          # input f32[batch,3,224,224]: batch defaults to 1
  [bert-base]="--input input_ids=1x128"  # batch and sequence are shared symbols: mask and type ids follow
)
for run in resnet50:r1 bert-base:r1 resnet50:r2 bert-base:r2; do
  m=${run%%:*}
  bench_model "$m-b1-${run##*:}" "$m"
done

{
  echo
  echo "## nvidia-smi --query-gpu (after the bench runs, $(date -u '+%H:%M:%S UTC'))"
  smi_query
} >>"$W/nvidia-smi.txt" 2>&1

# ---------------------------------------------------------------------------------------------------
# fuseval's host-clock timing against CUDA events
if ((SECONDS > EVENT_START_BY)); then
  log "[$(stamp)] skipped eventcheck: past ${EVENT_START_BY} s"
else
  q=()
  ((SECONDS > EVENT_QUICK_AFTER)) && q=(--quick) && log "[$(stamp)] eventcheck with --quick: past ${EVENT_QUICK_AFTER} s"
  lim=$((EVENT_END - SECONDS))
  run_cmd "$lim" "$W/eventcheck.txt" "$W/eventcheck.stderr.txt" \
    "$F" eventcheck --ep cuda "${q[@]}" -o "$W/eventcheck.json"
  cat "$W/eventcheck.txt"
fi
pack

# ---------------------------------------------------------------------------------------------------
# run-to-run agreement of each model's two runs (whatever of them exists, finished or cut short)
for m in resnet50 bert-base; do
  a=$W/$m-b1-r1
  b=$W/$m-b1-r2
  if [[ -f $a/calibration.json && -f $b/calibration.json ]]; then
    run_cmd "60" "$W/agreement-$m.txt" "$W/agreement-$m.stderr.txt" "$F" agreement "$a" "$b"
    run_cmd "60" "$W/agreement-$m.json" "$W/agreement-$m.json.stderr.txt" "$F" agreement --json "$a" "$b"
  else
    log "[$(stamp)] skipped agreement $m: $(for d in "$a" "$b"; do [[ -f $d/calibration.json ]] || printf '%s ' "${d#"$W/"}/calibration.json"; done)missing"
  fi
done

{
  echo
  echo "## nvidia-smi --query-gpu (at the end, $(date -u '+%H:%M:%S UTC'))"
  smi_query
} >>"$W/nvidia-smi.txt" 2>&1
log "# done $(date -u '+%Y-%m-%d %H:%M:%S UTC'), ${SECONDS} s"
pack

# ---------------------------------------------------------------------------------------------------
# the reply carries the end of the output: keep the essentials last
echo
echo "================ agreement ================"
for m in resnet50 bert-base; do
  [[ -f $W/agreement-$m.txt ]] && { echo "== $m"; sed -n 1,8p "$W/agreement-$m.txt"; }
done
echo
echo "================ commands.txt (steps, exit codes, times) ================"
grep -E '^\[|^    rc=|^skipped|^WARNING|^left out|^archive|^# done' "$W/commands.txt"
echo
ls -la "$DEST"
