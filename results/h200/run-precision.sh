#!/usr/bin/env bash
# fuseval on a lent NVIDIA H200, issue 14: the precision matrix. ResNet-50 at batch 1 and 32 and BERT-base
# at 1x128 and 8x128, each `--precision all` (strict fp32, TF32, fp16 converted by fuseval) in one bench
# run, --quick, --cuda-graph (carved patterns and whole models replayed from CUDA graphs where ORT can
# capture them), without the attribution. Runs on the GPU machine (no Rust, no network) from the repo root
# after ONNX Runtime's CUDA provider is staged:
#   bash .gpu/meta/assemble.sh && . .gpu/env.sh && PHASE=b1 bash results/h200/run-precision.sh
# PHASE=b1: ResNet-50 b1, BERT-base 1x128; PHASE=big: ResNet-50 b32, BERT-base 8x128; RUNS overrides the
# list (names below). Output: $OUT/h200/h200.tar.gz and the key files (see results/h200/common.sh).
# MODE=whole: instead, the whole models only (--whole-model-only, every replicate), each name once per
# label in REPEATS (default "a b": all names, then all again), into whole-LABEL/NAME, and
# `fuseval agreement` of the first two labels' runs into whole-agreement-NAME.txt.
set -u

SKIP_BENCH_AFTER=${SKIP_BENCH_AFTER:-480}
BENCH_END=${BENCH_END:-575}
EVENT_QUICK_AFTER=0
EVENT_START_BY=0
EVENT_END=0
SCRIPT=results/h200/run-precision.sh
KEY_FILES="commands.txt nvidia-smi.txt models.sha256"
. results/h200/common.sh

declare -A MODEL=(
  [resnet50-b1]=resnet50 [resnet50-b32]=resnet50 [bert-base-1x128]=bert-base [bert-base-8x128]=bert-base
)
declare -A INPUT=(
  [resnet50-b1]="--input input=1x3x224x224" [resnet50-b32]="--input input=32x3x224x224"
  [bert-base-1x128]="--input input_ids=1x128" [bert-base-8x128]="--input input_ids=8x128"
)
case ${PHASE:-b1} in
  b1) default="resnet50-b1 bert-base-1x128" ;;
  big) default="resnet50-b32 bert-base-8x128" ;;
  *) default="" ;;
esac
# bench_all NAME DIR FLAG: NAME's model at its input shape, --precision all with FLAG (--no-attribution or
# --whole-model-only), into DIR, stopped at BENCH_END; returns 1 (skipped) past SKIP_BENCH_AFTER.
bench_all() {
  local name=$1 d=$2 flag=$3 lim
  if ((SECONDS > SKIP_BENCH_AFTER)); then
    log "[$(stamp)] skipped ${d#"$W/"}: past ${SKIP_BENCH_AFTER} s"
    return 1
  fi
  lim=$((BENCH_END - SECONDS))
  ((lim < 30)) && lim=30
  mkdir -p "$d"
  # shellcheck disable=SC2086
  run_cmd "$lim" "$d/summary.txt" "$d/stderr.txt" \
    "$F" bench "models/${MODEL[$name]}.onnx" --ep cuda --quick --slim-annotated "$flag" --cuda-graph \
    --precision all ${INPUT[$name]} -o "$d" --force
  grep -m5 -iE '^(error|warning)' "$d/stderr.txt"
  return 0
}

if [[ ${MODE:-matrix} == whole ]]; then
  for label in ${REPEATS:-a b}; do
    for name in ${RUNS:-resnet50-b1 bert-base-1x128 resnet50-b32 bert-base-8x128}; do
      d=$W/whole-$label/$name
      bench_all "$name" "$d" --whole-model-only || continue
      grep -E '^Whole model:' "$d/summary.txt"
      rm -f "$d"/*.onnx "$d"/*/*.onnx "$d"/*/graph.* "$d"/graph.*
      pack
    done
  done
  set -- ${REPEATS:-a b}
  for name in ${RUNS:-resnet50-b1 bert-base-1x128 resnet50-b32 bert-base-8x128}; do
    if [[ $# -ge 2 && -d $W/whole-$1/$name && -d $W/whole-$2/$name ]]; then
      run_cmd 60 "$W/whole-agreement-$name.txt" - "$F" agreement "$W/whole-$1/$name" "$W/whole-$2/$name"
      grep -E '^(==|  whole model)' "$W/whole-agreement-$name.txt"
      KEY_FILES="$KEY_FILES whole-agreement-$name.txt"
    fi
  done
  log "# done $(date -u '+%Y-%m-%d %H:%M:%S UTC'), ${SECONDS} s"
  pack
  exit 0
fi

for name in ${RUNS:-$default}; do
  bench_all "$name" "$W/$name" --no-attribution || continue
  tail -25 "$W/$name/summary.txt"
  cp -f "$W/$name/summary.txt" "$W/$name.summary.txt"
  KEY_FILES="$KEY_FILES $name.summary.txt"
  rm -f "$W/$name"/*/*-fp16.onnx "$W/$name"/*/*-static.onnx
  pack
done
log "# done $(date -u '+%Y-%m-%d %H:%M:%S UTC'), ${SECONDS} s"
pack
