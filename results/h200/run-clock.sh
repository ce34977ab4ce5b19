#!/usr/bin/env bash
# Second H200 call of issue 11: the clock check on the measured stream and the whole model's CPU placement,
# with the binary that has them. One quick bench of each model; output packed into $OUT/h200/clock.tar.gz.
set -u
ROOT=$(pwd); F=$ROOT/target/release/fuseval; W=/tmp/fuseval-h200-clock/clock; mkdir -p "$W" "$OUT/h200"
log() { echo "$*" | tee -a "$W/commands.txt"; }
pack() { tar -C "$(dirname "$W")" -czf "$OUT/h200/clock.tar.gz" --exclude='annotated.onnx' --exclude='graph.json' clock; cp "$W/commands.txt" "$OUT/h200/"; }
log "# $(date -u) $(sha256sum "$F")"; "$F" --version >>"$W/commands.txt" 2>&1
[[ -f models/resnet50.onnx && -f models/bert-base.onnx ]] || python3 models/make_models.py resnet50 bert-base >"$W/make_models.txt" 2>&1
sha256sum models/resnet50.onnx models/bert-base.onnx >>"$W/commands.txt"
for m in resnet50 bert-base; do
  extra=(); [[ $m == bert-base ]] && extra=(--input input_ids=1x128)
  log "[$SECONDS s] fuseval bench models/$m.onnx --ep cuda --quick --slim-annotated ${extra[*]} -o $m-b1-clock"
  timeout 200 "$F" bench "models/$m.onnx" --ep cuda --quick --slim-annotated "${extra[@]}" -o "$W/$m-b1-clock" --force >"$W/$m-b1-clock.txt" 2>"$W/$m-b1-clock.stderr.txt"
  log "    rc=$? at $SECONDS s"; pack
  grep -E "^GPU clock|^Replicates|^Whole model|kept some" "$W/$m-b1-clock.txt" "$W/$m-b1-clock.stderr.txt"
done
tail -5 "$W"/*.stderr.txt; pack
