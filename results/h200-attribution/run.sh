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
MAX_FILE_BYTES=$((8 * 1024 * 1024))       # nothing bigger goes into the archive
MAX_TAR_BYTES=$((15 * 1024 * 1024))       # the device tool returns files up to 16 MiB

export PYTHONUNBUFFERED=1
ROOT=$PWD
F=$ROOT/target/release/fuseval
if [[ -z ${OUT:-} ]]; then echo "OUT is unset: run this through the device tool (or set OUT=/some/dir)"; exit 2; fi
DEST=$OUT/h200
WROOT=/tmp/fuseval-h200
W=$WROOT/h200
rm -rf "$WROOT"
mkdir -p "$DEST" "$W"
HAVE_TIMEOUT=0; command -v timeout >/dev/null 2>&1 && HAVE_TIMEOUT=1

stamp() { printf '%s +%ds' "$(date -u +%H:%M:%S)" "$SECONDS"; }
log() { printf '%s\n' "$*" | tee -a "$W/commands.txt"; }

# run_cmd LIMIT_S STDOUT STDERR CMD...: run CMD with its output in the files (STDERR '-' = with stdout),
# stopped after LIMIT_S seconds when LIMIT_S is not empty; log the command, its exit code and its time.
run_cmd() {
  local lim=$1 out=$2 err=$3 t=$SECONDS rc
  shift 3
  local shown="$*"
  shown=${shown//"$W/"/}
  shown=${shown//"$ROOT/"/}
  local redir="2> ${err#"$W/"}"
  [[ $err == - ]] && redir="2>&1"
  log "[$(stamp)] + $shown > ${out#"$W/"} $redir${lim:+   (time limit ${lim} s)}"
  if [[ $err == - ]]; then
    if [[ -n $lim && $HAVE_TIMEOUT == 1 ]]; then timeout -k 10 "$lim" "$@" >"$out" 2>&1; else "$@" >"$out" 2>&1; fi
  else
    if [[ -n $lim && $HAVE_TIMEOUT == 1 ]]; then timeout -k 10 "$lim" "$@" >"$out" 2>"$err"; else "$@" >"$out" 2>"$err"; fi
  fi
  rc=$?
  local why=""
  case $rc in
    0) ;;
    3) why=" (bench: some instances skipped)" ;;
    124) why=" (stopped by the time limit)" ;;
    130) why=" (interrupted; finished instances kept)" ;;
    137) why=" (killed after the time limit)" ;;
    *) why=" (failed)" ;;
  esac
  log "    rc=$rc$why, $((SECONDS - t)) s"
  return $rc
}

# info CMD...: a short diagnostic command, its output straight into commands.txt.
info() {
  log "[$(stamp)] + $*"
  "$@" 2>&1 | tee -a "$W/commands.txt"
  local rc=${PIPESTATUS[0]}
  [[ $rc == 0 ]] || log "    rc=$rc"
}

# Pack the work folder into $DEST/h200.tar.gz (files under 8 MiB only) and copy the small key files.
pack() {
  local list=$WROOT/pack.list big
  (cd "$WROOT" && find h200 -type f -size -$((MAX_FILE_BYTES / 1024))k | sort >"$list")
  big=$(cd "$WROOT" && find h200 -type f -size +$((MAX_FILE_BYTES / 1024 - 1))k)
  if [[ -n $big ]]; then
    grep -qF "left out of the archive" "$W/commands.txt" 2>/dev/null ||
      log "left out of the archive (over $((MAX_FILE_BYTES / 1048576)) MiB): $(echo $big)"
  fi
  if tar -C "$WROOT" -czf "$WROOT/h200.tar.gz.part" -T "$list" 2>>"$WROOT/pack.err"; then
    if (($(stat -c %s "$WROOT/h200.tar.gz.part") > MAX_TAR_BYTES)); then
      grep -vE '/(annotated\.onnx|graph\.json|graph\.dot)$' "$list" >"$list.small"
      tar -C "$WROOT" -czf "$WROOT/h200.tar.gz.part" -T "$list.small" 2>>"$WROOT/pack.err"
      grep -qF "archive over" "$W/commands.txt" || log "archive over $((MAX_TAR_BYTES / 1048576)) MiB: annotated.onnx and graph.* left out"
    fi
    mv -f "$WROOT/h200.tar.gz.part" "$DEST/h200.tar.gz"
  fi
  local f
  for f in commands.txt nvidia-smi.txt models.sha256 resnet50-b1.summary.txt bert-base-b1.summary.txt; do
    [[ -f $W/$f ]] && cp -f "$W/$f" "$DEST/$f"
  done
}

smi_query() {
  nvidia-smi --query-gpu=timestamp,name,pci.bus_id,driver_version,pstate,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,power.draw,power.limit,temperature.gpu,utilization.gpu,memory.used,memory.total,persistence_mode,compute_mode --format=csv
}

# ---------------------------------------------------------------------------------------------------
log "# fuseval on an NVIDIA H200: results/h200-attribution/run.sh, started $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
log "# work folder $W (packed into \$OUT/h200/h200.tar.gz after every step); repo root $ROOT"
log "# limits: bench starts until +${SKIP_BENCH_AFTER}s, stops at +${BENCH_END}s; eventcheck starts until +${EVENT_START_BY}s (--quick after +${EVENT_QUICK_AFTER}s), stops at +${EVENT_END}s"
info date -u
info uname -a
info nproc
info free -g
[[ -f $ROOT/.gpu/meta/version ]] && log "ONNX Runtime staged: $(cat "$ROOT/.gpu/meta/version")"
log "ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-<unset>}"
log "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-<unset>}"
if [[ -x $F ]] || chmod +x "$F" 2>/dev/null; then
  info "$F" --version
  info sha256sum "$F"
  "$F" agreement --help >/dev/null 2>&1 || log "WARNING: this fuseval has no working \`agreement\` subcommand (built before it?)"
else
  log "WARNING: $F is missing: carry target/release/fuseval"
fi

# nvidia-smi: read-only queries (the card's settings are left alone)
{
  echo "## nvidia-smi ($(date -u '+%Y-%m-%d %H:%M:%S UTC'), before the runs)"
  nvidia-smi
  echo
  echo "## nvidia-smi --query-gpu (before)"
  smi_query
  echo
  echo "## nvidia-smi -q -d CLOCK,PERFORMANCE,POWER,TEMPERATURE (before)"
  nvidia-smi -q -d CLOCK,PERFORMANCE,POWER,TEMPERATURE
} >"$W/nvidia-smi.txt" 2>&1
log "[$(stamp)] + nvidia-smi; nvidia-smi --query-gpu=...; nvidia-smi -q -d CLOCK,PERFORMANCE,POWER,TEMPERATURE > nvidia-smi.txt"
head -20 "$W/nvidia-smi.txt"
smi_query 2>&1 | tee -a "$W/commands.txt"
info python3 -c 'import sys, torch, torchvision, transformers, onnx, onnxruntime as o; print("python", sys.version.split()[0], "| torch", torch.__version__, "| torchvision", torchvision.__version__, "| transformers", transformers.__version__, "| onnx", onnx.__version__, "| onnxruntime (python)", o.__version__, "| cuda available", torch.cuda.is_available())'
pack

# ---------------------------------------------------------------------------------------------------
# models (random weights, fixed seeds; models/make_models.py [resnet50] [bert-base], no argument = both)
need=()
for m in resnet50 bert-base; do [[ -s models/$m.onnx ]] || need+=("$m"); done
if ((${#need[@]})); then
  run_cmd "" "$W/make_models.txt" - python3 models/make_models.py "${need[@]}"
  tail -5 "$W/make_models.txt"
else
  log "[$(stamp)] models/resnet50.onnx and models/bert-base.onnx already here (an earlier call on this machine): not remade"
fi
have=()
for m in resnet50 bert-base; do [[ -s models/$m.onnx ]] && have+=("models/$m.onnx"); done
if ((${#have[@]})); then
  sha256sum "${have[@]}" >"$W/models.sha256"
  log "[$(stamp)] + sha256sum ${have[*]} > models.sha256"
  cat "$W/models.sha256" | tee -a "$W/commands.txt"
  info ls -l "${have[@]}"
else
  log "WARNING: no model was made"
fi
pack

# ---------------------------------------------------------------------------------------------------
# bench with the attribution, each model once (RUNS overrides: "resnet50 bert-base")
declare -A MODEL_ARGS=(
  [resnet50]=""
  [bert-base]="--input input_ids=1x128"
)
for m in ${RUNS:-resnet50 bert-base}; do
  name=$m-b1
  if ((SECONDS > SKIP_BENCH_AFTER)); then
    log "[$(stamp)] skipped bench $name: past ${SKIP_BENCH_AFTER} s"
    continue
  fi
  lim=$((BENCH_END - SECONDS))
  ((lim < 30)) && lim=30
  mkdir -p "$W/$name"
  # shellcheck disable=SC2086
  run_cmd "$lim" "$W/$name/summary.txt" "$W/$name/stderr.txt" \
    "$F" bench "models/$m.onnx" --ep cuda --quick --slim-annotated ${MODEL_ARGS[$m]} -o "$W/$name" --force
  cp -f "$W/$name/summary.txt" "$W/$name.summary.txt"
  pack
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
