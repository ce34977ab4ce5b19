# Shared by the H200 scripts (results/h200/run.sh, results/h200-attribution/run.sh), sourced from the repo
# root after the script sets SCRIPT (its path), KEY_FILES (the files copied beside the archive) and its time
# limits: helpers (run_cmd, info, pack, smi_query), the machine's description, and the models.
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
  for f in $KEY_FILES; do
    [[ -f $W/$f ]] && cp -f "$W/$f" "$DEST/$f"
  done
}

smi_query() {
  nvidia-smi --query-gpu=timestamp,name,pci.bus_id,driver_version,pstate,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,power.draw,power.limit,temperature.gpu,utilization.gpu,memory.used,memory.total,persistence_mode,compute_mode --format=csv
}

# ---------------------------------------------------------------------------------------------------
log "# fuseval on an NVIDIA H200: $SCRIPT, started $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
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


# bench_model NAME MODEL: bench models/MODEL.onnx on CUDA (--quick, MODEL_ARGS[MODEL]) into $W/NAME, stopped at
# BENCH_END; skipped past SKIP_BENCH_AFTER or when the model is missing. Packs afterwards.
bench_model() {
  local name=$1 m=$2 lim
  if ((SECONDS > SKIP_BENCH_AFTER)); then
    log "[$(stamp)] skipped bench $name: past ${SKIP_BENCH_AFTER} s"
    return
  fi
  if [[ ! -s models/$m.onnx ]]; then
    log "[$(stamp)] skipped bench $name: models/$m.onnx is missing"
    return
  fi
  lim=$((BENCH_END - SECONDS))
  ((lim < 30)) && lim=30
  mkdir -p "$W/$name"
  # shellcheck disable=SC2086
  run_cmd "$lim" "$W/$name/summary.txt" "$W/$name/stderr.txt" \
    "$F" bench "models/$m.onnx" --ep cuda --quick --slim-annotated ${MODEL_ARGS[$m]} -o "$W/$name" --force
  grep -E '^(Model|Mode|Found):' "$W/$name/summary.txt" | head -3
  grep -m3 -iE '^(error|warning: no lock)' "$W/$name/stderr.txt"
  pack
}
