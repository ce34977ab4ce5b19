#!/usr/bin/env bash
# The exact commands behind results/<gpu>/ (issue 6). Runs on the lent GPU machine, after
#   bash .gpu/meta/assemble.sh && . .gpu/env.sh
# with the release binary carried as .gpu/bin/fuseval. `part1`: models, calibrate --quick, event check;
# `part2`: ResNet-50 and BERT-base at batch 1 and a larger batch. Everything lands in $OUT/results.tar.gz
# (a few files come back from that machine, so they travel as one archive).
set -uo pipefail
F=$PWD/.gpu/bin/fuseval
W=/tmp/fx            # outlives a command while the machine stays warm
mkdir -p "$W"
export PYTHONUNBUFFERED=1
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' | tr -cd 'A-Za-z0-9._-')
case "$gpu" in *H200*) preset=h200 ;; *H100*PCIe*) preset=h100-pcie ;; *H100*) preset=h100-sxm ;; *) preset= ;; esac
run() { echo "+ $*" | tee -a "$W/commands.txt"; /usr/bin/time -f "  %e s wall" "$@"; }
case "${1:-}" in
part1)
  nvidia-smi | tee "$W/nvidia-smi.txt"
  [[ -f models/resnet50.onnx && -f models/bert-base.onnx ]] || run python3 models/make_models.py > "$W/make_models.txt" 2>&1 || tail -20 "$W/make_models.txt"
  cp models/*.onnx "$W/" 2>/dev/null
  run "$F" calibrate --hardware "$gpu" --ep cuda --quick ${preset:+--preset $preset} -o "$W/calibrate-quick.json" --force > "$W/calibrate-quick.txt" 2> "$W/calibrate-quick.err"
  tail -45 "$W/calibrate-quick.txt"
  run "$F" eventcheck --ep cuda -o "$W/eventcheck.json" > "$W/eventcheck.txt" 2>&1
  cat "$W/eventcheck.txt"
  ;;
part2)
  for m in resnet50 bert-base; do [[ -f models/$m.onnx ]] || cp "$W/$m.onnx" models/; done
  cal=(--calibration "$W/calibrate-quick.json")
  run "$F" bench models/resnet50.onnx --ep cuda --quick "${cal[@]}" --slim-annotated -o "$W/resnet50-b1" --force > "$W/resnet50-b1.txt" 2>&1
  run "$F" bench models/resnet50.onnx --ep cuda --quick "${cal[@]}" --slim-annotated --input input=32x3x224x224 -o "$W/resnet50-b32" --force > "$W/resnet50-b32.txt" 2>&1
  run "$F" bench models/bert-base.onnx --ep cuda --quick "${cal[@]}" --slim-annotated -o "$W/bert-base-b1" --force > "$W/bert-base-b1.txt" 2>&1
  run "$F" bench models/bert-base.onnx --ep cuda --quick "${cal[@]}" --slim-annotated --input input_ids=8x128 -o "$W/bert-base-b8" --force > "$W/bert-base-b8.txt" 2>&1
  for f in resnet50-b1 resnet50-b32 bert-base-b1 bert-base-b8; do echo "== $f"; grep -A12 "^Instances" "$W/$f.txt"; done
  ;;
part3)
  run "$F" bench models/resnet50.onnx --ep cuda --quick --cuda-graph --no-whole-model --slim-annotated -o "$W/resnet50-b1-graph" --force > "$W/resnet50-b1-graph.txt" 2>&1
  run "$F" bench models/bert-base.onnx --ep cuda --quick --cuda-graph --no-whole-model --slim-annotated -o "$W/bert-base-b1-graph" --force > "$W/bert-base-b1-graph.txt" 2>&1
  for f in resnet50-b1-graph bert-base-b1-graph; do echo "== $f"; grep -A8 "^Instances" "$W/$f.txt"; done
  ;;
part4)
  # BERT-base again after CUDA placement learned to allow the shape arithmetic ORT keeps on the CPU;
  # the calibration comes from part1 (carried as .gpu/fx/calibrate-quick.json).
  [[ -f models/bert-base.onnx ]] || run python3 models/make_models.py bert-base > "$W/make_models.txt" 2>&1 || tail -20 "$W/make_models.txt"
  cal=(--calibration .gpu/fx/calibrate-quick.json)
  run "$F" bench models/bert-base.onnx --ep cuda --quick "${cal[@]}" --slim-annotated -o "$W/bert-base-b1" --force > "$W/bert-base-b1.txt" 2>&1
  run "$F" bench models/bert-base.onnx --ep cuda --quick "${cal[@]}" --slim-annotated --input input_ids=8x128 -o "$W/bert-base-b8" --force > "$W/bert-base-b8.txt" 2>&1
  run "$F" bench models/bert-base.onnx --ep cuda --quick --cuda-graph --no-whole-model --slim-annotated -o "$W/bert-base-b1-graph" --force > "$W/bert-base-b1-graph.txt" 2>&1
  for f in bert-base-b1 bert-base-b8 bert-base-b1-graph; do echo "== $f"; grep -A12 "^Instances" "$W/$f.txt"; grep "^warning" "$W/$f.txt" | head -5; done
  ;;
esac
(cd "$W" && tar --exclude='*.onnx.data' --exclude='resnet50.onnx' --exclude='bert-base.onnx' -czf "$OUT/results.tar.gz" .)
ls -la "$OUT"
