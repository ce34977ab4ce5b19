#!/usr/bin/env bash
# fuseval on a lent NVIDIA H200, issue 14 (first step): ResNet-50 and BERT-base (batch 1) benched as they
# are (fp32 weights; ORT's CUDA default runs MatMul and Conv on TF32) and converted to fp16 by fuseval
# (`fuseval convert --to fp16`), --quick, without the attribution. Runs on the GPU machine (no Rust, no
# network) from the repo root after ONNX Runtime's CUDA provider is staged:
#   bash .gpu/meta/assemble.sh && . .gpu/env.sh && bash results/h200-fp16/run.sh
# with the release binary carried as target/release/fuseval. Output: $OUT/h200/h200.tar.gz and the key files
# (see results/h200/common.sh).
set -u

SKIP_BENCH_AFTER=${SKIP_BENCH_AFTER:-470}
BENCH_END=${BENCH_END:-575}
EVENT_QUICK_AFTER=0
EVENT_START_BY=0
EVENT_END=0
SCRIPT=results/h200-fp16/run.sh
KEY_FILES="commands.txt nvidia-smi.txt models.sha256 resnet50-b1.summary.txt resnet50-fp16-b1.summary.txt bert-base-fp16-b1.summary.txt bert-base-b1.summary.txt"
. results/h200/common.sh

for m in resnet50 bert-base; do
  if [[ -s models/$m.onnx && ! -s models/$m-fp16.onnx ]]; then
    run_cmd 120 "$W/convert-$m.txt" - "$F" convert "models/$m.onnx" --to fp16 -o "models/$m-fp16.onnx"
    cat "$W/convert-$m.txt" | head -5
  fi
done
[[ -s models/resnet50-fp16.onnx ]] && sha256sum models/*-fp16.onnx >>"$W/models.sha256"
pack

declare -A MODEL_ARGS=(
  [resnet50]="--no-attribution"
  [resnet50-fp16]="--no-attribution"
  [bert-base]="--no-attribution --input input_ids=1x128"
  [bert-base-fp16]="--no-attribution --input input_ids=1x128"
)
for m in ${RUNS:-resnet50 resnet50-fp16 bert-base-fp16 bert-base}; do
  bench_model "$m-b1" "$m"
  [[ -f $W/$m-b1/summary.txt ]] && cp -f "$W/$m-b1/summary.txt" "$W/$m-b1.summary.txt" && pack
done
log "# done $(date -u '+%Y-%m-%d %H:%M:%S UTC'), ${SECONDS} s"
pack
