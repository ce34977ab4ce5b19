#!/usr/bin/env bash
# fuseval on a lent NVIDIA H200, issue 12: quick bench runs of ResNet-50 and BERT-base (batch 1) with the
# whole-model attribution to ORT's transformers (on by default) on the CUDA provider. Runs on the GPU machine (no Rust, no network) from
# the repo root, after ONNX Runtime's CUDA provider is staged (../shared/gpu/stage-ort-cuda.sh):
#   bash .gpu/meta/assemble.sh && . .gpu/env.sh && bash results/h200-attribution/run.sh
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

SKIP_BENCH_AFTER=${SKIP_BENCH_AFTER:-450}
BENCH_END=${BENCH_END:-560}
EVENT_QUICK_AFTER=${EVENT_QUICK_AFTER:-440}
EVENT_START_BY=${EVENT_START_BY:-520}
EVENT_END=${EVENT_END:-550}
SCRIPT=results/h200-attribution/run.sh
KEY_FILES="commands.txt nvidia-smi.txt models.sha256 resnet50-b1.summary.txt bert-base-b1.summary.txt"
. results/h200/common.sh

# ---------------------------------------------------------------------------------------------------
# bench with the attribution, each model once (RUNS overrides: "resnet50 bert-base")
declare -A MODEL_ARGS=(
  [resnet50]=""
  [bert-base]="--input input_ids=1x128"
)
for m in ${RUNS:-resnet50 bert-base}; do
  bench_model "$m-b1" "$m"
  [[ -f $W/$m-b1/summary.txt ]] && cp -f "$W/$m-b1/summary.txt" "$W/$m-b1.summary.txt" && pack
done
log "# done $(date -u '+%Y-%m-%d %H:%M:%S UTC'), ${SECONDS} s"
pack
echo
for m in ${RUNS:-resnet50 bert-base}; do
  echo "================ $m ================"
  sed -n '/^In context/,/^Headline/p' "$W/$m-b1/summary.txt" 2>/dev/null | head -40
done
grep -E '^\[|^    rc=|^skipped|^WARNING|^# done' "$W/commands.txt"
ls -la "$DEST"
