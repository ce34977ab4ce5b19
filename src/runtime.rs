//! ONNX Runtime with no extra install step: find (or fetch once) the shared library, initialise one
//! process-wide environment, pick execution providers strictly, and describe the host hardware.
//!
//! Library resolution: `$ORT_DYLIB_PATH` if set; else a per-user cache
//! (`$FUSEVAL_CACHE`, `$XDG_CACHE_HOME/fuseval` or `~/.cache/fuseval`), filled on first use by
//! `python3 -m pip download onnxruntime==1.31.1` and extracting the library from the wheel.

use std::ffi::{CStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The ONNX Runtime release fuseval is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";
/// File name of the library inside the wheel (`onnxruntime/capi/<name>`) and in the cache.
pub const ORT_LIB_NAME: &str = "libonnxruntime.so.1.31.1";

/// Path of the ONNX Runtime shared library to load; downloads it into the cache if needed.
pub fn ort_library() -> Result<PathBuf> {
    let vars = LibraryVars::from_env();
    resolve_library(&vars, &mut fetch_into_cache)
}

/// The environment variables that decide where the library comes from (taken as values so tests need
/// not touch the process environment).
#[derive(Clone, Debug, Default)]
pub struct LibraryVars {
    pub ort_dylib_path: Option<OsString>,
    pub fuseval_cache: Option<OsString>,
    pub xdg_cache_home: Option<OsString>,
    pub home: Option<OsString>,
}

impl LibraryVars {
    /// Read the variables from the process environment (empty values count as unset).
    pub fn from_env() -> Self {
        let get = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        LibraryVars {
            ort_dylib_path: get("ORT_DYLIB_PATH"),
            fuseval_cache: get("FUSEVAL_CACHE"),
            xdg_cache_home: get("XDG_CACHE_HOME"),
            home: get("HOME"),
        }
    }
}

/// The cache directory for these variables: `$FUSEVAL_CACHE`, `$XDG_CACHE_HOME/fuseval` or `~/.cache/fuseval`.
pub fn cache_dir(vars: &LibraryVars) -> Result<PathBuf> {
    if let Some(dir) = &vars.fuseval_cache {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = &vars.xdg_cache_home {
        return Ok(PathBuf::from(dir).join("fuseval"));
    }
    if let Some(home) = &vars.home {
        return Ok(PathBuf::from(home).join(".cache").join("fuseval"));
    }
    bail!("no cache directory for ONNX Runtime: set FUSEVAL_CACHE (or HOME), or set ORT_DYLIB_PATH to libonnxruntime.so.{ORT_VERSION}")
}

/// Resolve the library path: `ORT_DYLIB_PATH` (must exist), else the cached copy, else `fetch(path)`
/// to create the cached copy.
pub fn resolve_library(vars: &LibraryVars, fetch: &mut dyn FnMut(&Path) -> Result<()>) -> Result<PathBuf> {
    if let Some(p) = &vars.ort_dylib_path {
        let path = PathBuf::from(p);
        if !path.is_file() {
            return Err(crate::error::user(format!(
                "ORT_DYLIB_PATH points at {}, which does not exist (or is not a file); set it to the ONNX Runtime \
                 {ORT_VERSION} library, e.g. .../site-packages/onnxruntime/capi/{ORT_LIB_NAME}, or unset it to let \
                 fuseval fetch one",
                path.display()
            )));
        }
        return Ok(path);
    }
    let path = cache_dir(vars)?.join(format!("onnxruntime-{ORT_VERSION}")).join(ORT_LIB_NAME);
    if path.is_file() {
        return Ok(path);
    }
    fetch(&path).with_context(|| {
        format!(
            "could not obtain ONNX Runtime {ORT_VERSION} automatically (into {}).\n\
             Fix: install python3 with pip and retry, or run `pip install onnxruntime=={ORT_VERSION}` and set \
             ORT_DYLIB_PATH=<site-packages>/onnxruntime/capi/{ORT_LIB_NAME}",
            path.display()
        )
    })?;
    if !path.is_file() {
        bail!("fetching ONNX Runtime reported success but {} is missing", path.display());
    }
    Ok(path)
}

/// Download the `onnxruntime` wheel with pip and extract the library to `dest` (atomically: temp name + rename,
/// so concurrent processes are safe).
fn fetch_into_cache(dest: &Path) -> Result<()> {
    let dir = dest.parent().context("cache path has no parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating cache directory {}", dir.display()))?;
    let tmp = TempDir::new_in(dir, ".download").context("creating a download directory in the cache")?;

    // The library does not depend on the Python version: try the interpreter's own wheel first, then a fixed
    // CPython 3.12 manylinux one (for interpreters onnxruntime ships no wheel for).
    let fixed = [
        "--python-version".to_string(),
        "3.12".into(),
        "--implementation".into(),
        "cp".into(),
        "--abi".into(),
        "cp312".into(),
        "--platform".into(),
        format!("manylinux_2_28_{}", std::env::consts::ARCH),
    ];
    let mut errors = Vec::new();
    for extra in [&[][..], &fixed[..]] {
        let out = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"])
            .args(extra)
            .arg(format!("onnxruntime=={ORT_VERSION}"))
            .arg("-d")
            .arg(&tmp.0)
            .output()
            .context("running `python3 -m pip download` (is python3 installed?)")?;
        if out.status.success() {
            errors.clear();
            break;
        }
        errors.push(format!(
            "{} ({}):\n{}",
            if extra.is_empty() { "pip download" } else { "pip download for cp312/manylinux_2_28" },
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if !errors.is_empty() {
        bail!("`python3 -m pip download onnxruntime=={ORT_VERSION}` failed:\n{}", errors.join("\n"));
    }
    let wheel = std::fs::read_dir(&tmp.0)
        .with_context(|| format!("listing {}", tmp.0.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .context("pip download succeeded but left no .whl file")?;

    // Extract with python's zipfile (no dependency on `unzip`), to a unique temp name next to `dest`.
    let part = dir.join(format!(".{ORT_LIB_NAME}.{}.part", std::process::id()));
    let script = "import sys, zipfile, shutil\n\
                  with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    \
                  shutil.copyfileobj(src, dst)\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&wheel)
        .arg(format!("onnxruntime/capi/{ORT_LIB_NAME}"))
        .arg(&part)
        .output()
        .context("running python3 to extract the library from the wheel")?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&part);
        bail!(
            "extracting onnxruntime/capi/{ORT_LIB_NAME} from {} failed:\n{}",
            wheel.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::rename(&part, dest).with_context(|| format!("moving {} to {}", part.display(), dest.display()))?;
    Ok(())
}

/// A private directory, removed with everything in it on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new directory in the system's temporary directory.
    pub fn new() -> Result<Self> {
        Self::new_in(&std::env::temp_dir(), "fuseval")
    }

    /// A new directory `PREFIX-PID-NANOS-N` in `parent` (N counts the process's temporary directories).
    pub fn new_in(parent: &Path, prefix: &str) -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("{prefix}-{}-{nanos}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Intra-op threads of the environment's shared pool (fixed when the environment is created).
static POOL_THREADS: OnceLock<usize> = OnceLock::new();

fn default_pool_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Fix the size of the shared intra-op thread pool that multi-threaded measurements use (default: all logical
/// cores). ONNX Runtime allows one environment per process, so this only works before the environment exists,
/// or with the size it already has.
///
/// Why a shared pool: each session owning its own workers made identical sessions differ by up to 3% at
/// 2 threads (the OS placed each session's workers differently); one pool gives every session the same threads.
pub fn configure_pool(threads: usize) -> Result<()> {
    if threads == 0 {
        return Err(crate::error::user("threads must be at least 1"));
    }
    let fixed = *POOL_THREADS.get_or_init(|| threads);
    if fixed != threads {
        return Err(crate::error::user(format!(
            "this process already runs ONNX Runtime with a shared pool of {fixed} threads; measure with 1 or {fixed} \
             threads, or use a separate process for {threads}"
        )));
    }
    Ok(())
}

struct Loaded {
    env: ort::environment::Environment,
    path: PathBuf,
}

/// The environment, or why it could not be created (message, and whether it is the user's to fix).
static ENV: OnceLock<std::result::Result<Loaded, (String, bool)>> = OnceLock::new();

/// The process-wide ONNX Runtime environment, created on first use (loads the library). It carries the shared CPU
/// arena and, with more than one core, the shared intra-op pool (see [`configure_pool`]).
/// A failure is remembered: later calls return the same error.
pub fn environment() -> Result<&'static ort::environment::Environment> {
    loaded().map(|l| &l.env)
}

fn loaded() -> Result<&'static Loaded> {
    let state = ENV.get_or_init(|| init().map_err(|e| (format!("{e:#}"), crate::error::is_user_error(&e))));
    match state {
        Ok(l) => Ok(l),
        Err((msg, true)) => Err(crate::error::user(msg.clone())).context("initialising ONNX Runtime"),
        Err((msg, false)) => Err(anyhow!("{msg}")).context("initialising ONNX Runtime"),
    }
}

fn init() -> Result<Loaded> {
    let path = ort_library()?;
    let builder =
        ort::init_from(&path).map_err(|e| anyhow!("{e}")).with_context(|| format!("loading {}", path.display()))?;
    let threads = *POOL_THREADS.get_or_init(default_pool_threads);
    let mut builder = builder;
    if threads > 1 {
        let pool = ort::environment::GlobalThreadPoolOptions::default()
            .with_intra_threads(threads)
            .and_then(|o| o.with_inter_threads(1))
            .and_then(|o| o.with_spin_control(false))
            .map_err(|e| anyhow!("{e}"))
            .context("configuring the shared thread pool")?;
        builder = builder.with_global_thread_pool(pool);
    }
    let env = builder
        .with_name("fuseval")
        .with_telemetry(false)
        .build()
        .map_err(|e| anyhow!("{e}"))
        .context("creating the ONNX Runtime environment")?;
    register_shared_cpu_arena(&env).context("registering the shared CPU arena")?;
    Ok(Loaded { env, path })
}

/// Register one CPU arena allocator on the environment. Sessions opt in with `session.use_env_allocators`; the
/// measurement sessions all do, so their intermediate tensors come from the same arena (and, run one after another,
/// the same addresses). With per-session arenas, two identical sessions differed by up to 1% from cache placement
/// alone, which no number of rounds averages away.
fn register_shared_cpu_arena(env: &ort::environment::Environment) -> Result<()> {
    use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
    use ort::AsPointer;
    let info = MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Arena, MemoryType::Default)
        .map_err(|e| anyhow!("{e}"))?;
    // SAFETY: env and info are live; a null arena config means ORT's defaults; the status is taken over below.
    let status = unsafe { (ort::api().CreateAndRegisterAllocator)(env.ptr().cast_mut(), info.ptr(), std::ptr::null()) };
    unsafe { ort::Error::result_from_status(status) }.map_err(|e| anyhow!("{e}"))
}

/// The path of the ONNX Runtime library in use, once it is loaded.
pub fn ort_library_in_use() -> Option<String> {
    match ENV.get() {
        Some(Ok(l)) => Some(l.path.display().to_string()),
        _ => None,
    }
}

/// What made a result: the ONNX Runtime library, the fuseval commit and the command line. Flattened into
/// every results file's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    /// The ONNX Runtime library that ran it.
    #[serde(default)]
    pub ort_library: Option<String>,
    /// The fuseval commit the binary was built from (` (dirty)` with uncommitted changes).
    #[serde(default)]
    pub fuseval_commit: Option<String>,
    /// The exact command line.
    #[serde(default)]
    pub command_line: Vec<String>,
}

impl Provenance {
    /// This process's.
    pub fn current() -> Provenance {
        Provenance {
            ort_library: ort_library_in_use(),
            fuseval_commit: Some(fuseval_commit()),
            command_line: command_line(),
        }
    }
}

/// The commit this binary was built from, `unknown` outside a git checkout, with ` (dirty)` when the tree
/// had uncommitted changes.
pub fn fuseval_commit() -> String {
    let commit = env!("FUSEVAL_GIT_COMMIT");
    if env!("FUSEVAL_GIT_DIRTY") == "1" {
        format!("{commit} (dirty)")
    } else {
        commit.to_string()
    }
}

/// The command line this process was started with.
pub fn command_line() -> Vec<String> {
    std::env::args().collect()
}

/// Version of the loaded ONNX Runtime library (from its `GetVersionString`); falls back to the version in the
/// library's file name, then to [`ORT_VERSION`]. Does not initialise the runtime.
pub fn ort_version() -> String {
    let Some(Ok(l)) = ENV.get() else {
        return ORT_VERSION.to_string();
    };
    if let Some(v) = version_from_library(&l.path) {
        return v;
    }
    l.path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("libonnxruntime.so."))
        .unwrap_or(ORT_VERSION)
        .to_string()
}

/// Ask the already-loaded library for its version (`OrtGetApiBase()->GetVersionString()`).
fn version_from_library(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: RTLD_NOLOAD only returns a handle if the library is already loaded (it is: ort loaded it);
    // OrtGetApiBase has the signature declared by ort-sys and returns a static table.
    unsafe {
        let handle = libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return None;
        }
        let sym = libc::dlsym(handle, c"OrtGetApiBase".as_ptr());
        let version = if sym.is_null() {
            None
        } else {
            let get_base: unsafe extern "C" fn() -> *const ort::sys::OrtApiBase = std::mem::transmute(sym);
            let base = get_base();
            if base.is_null() {
                None
            } else {
                let s = ((*base).GetVersionString)();
                (!s.is_null()).then(|| CStr::from_ptr(s).to_string_lossy().into_owned())
            }
        };
        libc::dlclose(handle);
        version
    }
}

/// Execution provider for every session of a measurement. Registration is strict: no silent CPU fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ep {
    Cpu,
    Cuda { device_id: i32 },
}

impl fmt::Display for Ep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ep::Cpu => f.write_str("cpu"),
            Ep::Cuda { device_id } => write!(f, "cuda:{device_id}"),
        }
    }
}

impl std::str::FromStr for Ep {
    type Err = anyhow::Error;

    /// Parses `cpu`, `cuda` (device 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "cpu" => Ok(Ep::Cpu),
            "cuda" => Ok(Ep::Cuda { device_id: 0 }),
            _ => match s.strip_prefix("cuda:").map(str::parse::<i32>) {
                Some(Ok(id)) if id >= 0 => Ok(Ep::Cuda { device_id: id }),
                _ => {
                    Err(crate::error::user(format!("unknown execution provider `{s}` (expected cpu, cuda or cuda:N)")))
                }
            },
        }
    }
}

/// The precision a measurement computes in: `fp32` strict (CUDA `use_tf32=0`), `tf32` (ORT's CUDA default:
/// fp32 MatMul and Conv on TF32 tensor cores), `fp16` (the model converted by `onnx::fp16`). The CPU
/// provider computes fp32 only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Tf32,
    Fp16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Tf32, Precision::Fp16];

    /// What a provider computes in when nothing is asked: fp32 on the CPU, TF32 on CUDA.
    pub fn default_for(ep: Ep) -> Precision {
        match ep {
            Ep::Cpu => Precision::Fp32,
            Ep::Cuda { .. } => Precision::Tf32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Fp16 => "fp16",
        }
    }

    /// Whether `ep` can compute in this precision: the CPU provider only in fp32 (its fp16 "kernels" are
    /// casts to fp32 and back, which would measure the casts).
    pub fn check(self, ep: Ep) -> Result<()> {
        match (ep, self) {
            (Ep::Cpu, Precision::Fp32) | (Ep::Cuda { .. }, _) => Ok(()),
            (Ep::Cpu, p) => Err(crate::error::user(format!(
                "--precision {p}: ONNX Runtime's CPU provider computes in fp32 only (it runs fp16 nodes through casts \
                 to fp32, and has no TF32); use --ep cuda, or leave --precision out"
            ))),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Register `ep` on a session builder, strictly: any failure is an error that says why. CPU needs nothing.
pub fn register_ep(
    builder: ort::session::builder::SessionBuilder,
    ep: Ep,
) -> Result<ort::session::builder::SessionBuilder> {
    register_ep_with(builder, ep, false, None, true)
}

/// [`register_ep`], with CUDA graphs on or off, optionally a CUDA stream of the caller's for the session to
/// run on, and TF32 on or off (`use_tf32`; ORT's default is on) (CUDA only; all ignored on the CPU).
///
/// # Safety of `stream`
/// A given stream must stay alive as long as every session built from this builder.
pub fn register_ep_with(
    builder: ort::session::builder::SessionBuilder,
    ep: Ep,
    cuda_graph: bool,
    stream: Option<*mut std::ffi::c_void>,
    tf32: bool,
) -> Result<ort::session::builder::SessionBuilder> {
    match ep {
        Ep::Cpu => Ok(builder),
        Ep::Cuda { device_id } => {
            use ort::ep::ExecutionProvider;
            let compiled_in = ort::ep::CUDA::is_available().unwrap_or(false);
            let mut cuda =
                ort::ep::CUDA::default().with_device_id(device_id).with_cuda_graph(cuda_graph).with_tf32(tf32);
            if let Some(s) = stream {
                // SAFETY: the caller keeps the stream alive longer than the sessions (see above).
                cuda = unsafe { cuda.with_compute_stream(s.cast()) };
            }
            let dispatch = cuda.build().error_on_failure();
            match builder.with_execution_providers([dispatch]) {
                Ok(b) => Ok(b),
                Err(e) => {
                    let why = if compiled_in {
                        "the CUDA provider is present but failed to start: check the NVIDIA driver, CUDA 13 / cuDNN 9 \
                         libraries on the library path, and that the device exists"
                    } else {
                        "this ONNX Runtime build has no CUDA execution provider (the PyPI `onnxruntime` wheel is \
                         CPU-only); install `onnxruntime-gpu` and set ORT_DYLIB_PATH to its libonnxruntime.so"
                    };
                    Err(anyhow!("{}", e.message())).context(format!("cannot use CUDA device {device_id}: {why}"))
                }
            }
        }
    }
}

/// The host a measurement ran on (for result metadata).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardware {
    pub cpu_model: String,
    pub logical_cores: usize,
    pub memory_bytes: u64,
    pub os: String,
    /// The GPU measured on, with `--ep cuda`; absent on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Gpu>,
}

/// A CUDA device and its software stack, as `nvidia-smi` and the loaded libraries report them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    pub device_id: i32,
    pub name: String,
    pub memory_mib: u64,
    pub driver_version: String,
    /// The CUDA version the driver supports (nvidia-smi's "CUDA Version").
    pub cuda_driver_version: String,
    /// The CUDA runtime and cuDNN libraries found on the library path, e.g. `libcudart.so.13.0.96`.
    pub cuda_runtime: String,
    pub cudnn: String,
    pub compute_capability: String,
}

/// [`hardware`], plus the GPU when `ep` is CUDA.
pub fn hardware_for(ep: Ep) -> Hardware {
    let mut h = hardware();
    if let Ep::Cuda { device_id } = ep {
        h.gpu = Some(gpu_info(device_id));
    }
    h
}

/// Ask `nvidia-smi` about a device; fields it cannot give are "unknown".
pub fn gpu_info(device_id: i32) -> Gpu {
    let query = |fields: &str| -> Option<Vec<String>> {
        let out = std::process::Command::new("nvidia-smi")
            .args([&format!("--id={device_id}"), &format!("--query-gpu={fields}"), "--format=csv,noheader,nounits"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().split(", ").map(|s| s.trim().to_string()).collect())
    };
    let f = query("name,memory.total,driver_version").unwrap_or_default();
    let cc = query("compute_cap").and_then(|v| v.first().cloned()).unwrap_or_else(|| "unknown".into());
    let cuda_driver_version = std::process::Command::new("nvidia-smi")
        .output()
        .ok()
        .and_then(|o| {
            let s = String::from_utf8_lossy(&o.stdout).to_string();
            let at = s.find("CUDA Version:")?;
            s[at + 13..].split_whitespace().next().map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into());
    let get = |i: usize| f.get(i).cloned().unwrap_or_else(|| "unknown".into());
    Gpu {
        device_id,
        name: get(0),
        memory_mib: f.get(1).and_then(|m| m.parse().ok()).unwrap_or(0),
        driver_version: get(2),
        cuda_driver_version,
        cuda_runtime: find_library("libcudart.so").unwrap_or_else(|| "unknown".into()),
        cudnn: find_library("libcudnn.so").unwrap_or_else(|| "unknown".into()),
        compute_capability: cc,
    }
}

/// The fullest versioned file name of a shared library on the library path (`LD_LIBRARY_PATH`, then
/// the linker cache), e.g. `libcudnn.so.9.8.0`.
fn find_library(stem: &str) -> Option<String> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("LD_LIBRARY_PATH").map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
    if let Ok(out) = std::process::Command::new("ldconfig").arg("-p").output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((_, path)) = line.split_once("=> ") {
                if path.contains(stem) {
                    if let Some(d) = Path::new(path.trim()).parent() {
                        dirs.push(d.to_path_buf());
                    }
                }
            }
        }
    }
    let mut best: Option<String> = None;
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(stem) && best.as_ref().is_none_or(|b| name.len() > b.len()) {
                best = Some(name);
            }
        }
    }
    best
}

/// Describe this machine. Never fails: unknown fields are "unknown" or 0.
pub fn hardware() -> Hardware {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = ["model name", "Hardware", "cpu model", "Processor"]
        .iter()
        .find_map(|key| field(&cpuinfo, key))
        .unwrap_or_else(|| "unknown".to_string());
    let logical_cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_bytes = field(&meminfo, "MemTotal")
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .map(|kib| kib * 1024)
        .unwrap_or(0);
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let pretty = field_eq(&release, "PRETTY_NAME").unwrap_or_else(|| std::env::consts::OS.to_string());
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    let os = if kernel.is_empty() { pretty } else { format!("{pretty} (kernel {kernel}, {})", std::env::consts::ARCH) };
    Hardware { cpu_model, logical_cores, memory_bytes, os, gpu: None }
}

/// `key : value` lookup in /proc-style text.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// `KEY="value"` lookup in os-release text.
fn field_eq(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ep_display_and_parse() {
        assert_eq!(Ep::Cpu.to_string(), "cpu");
        assert_eq!(Ep::Cuda { device_id: 1 }.to_string(), "cuda:1");
        assert_eq!("cuda".parse::<Ep>().unwrap(), Ep::Cuda { device_id: 0 });
        assert_eq!("CUDA:3".parse::<Ep>().unwrap(), Ep::Cuda { device_id: 3 });
        assert!("tpu".parse::<Ep>().is_err());
        assert!("cuda:-1".parse::<Ep>().is_err());
    }

    #[test]
    fn precision_defaults_checks_and_names() {
        assert_eq!(Precision::default_for(Ep::Cpu), Precision::Fp32);
        assert_eq!(Precision::default_for(Ep::Cuda { device_id: 0 }), Precision::Tf32);
        assert!(Precision::Fp32.check(Ep::Cpu).is_ok());
        for p in [Precision::Tf32, Precision::Fp16] {
            let e = p.check(Ep::Cpu).unwrap_err();
            assert!(format!("{e}").contains(&format!("--precision {p}")), "{e}");
        }
        for p in Precision::ALL {
            assert!(p.check(Ep::Cuda { device_id: 0 }).is_ok());
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.name()));
        }
    }

    #[test]
    fn cache_dir_precedence() {
        let mut v = LibraryVars { home: Some("/h".into()), ..Default::default() };
        assert_eq!(cache_dir(&v).unwrap(), PathBuf::from("/h/.cache/fuseval"));
        v.xdg_cache_home = Some("/x".into());
        assert_eq!(cache_dir(&v).unwrap(), PathBuf::from("/x/fuseval"));
        v.fuseval_cache = Some("/f".into());
        assert_eq!(cache_dir(&v).unwrap(), PathBuf::from("/f"));
        assert!(cache_dir(&LibraryVars::default()).is_err());
    }

    #[test]
    fn proc_fields() {
        assert_eq!(field("model name\t: Xeon\nflags : x", "model name").as_deref(), Some("Xeon"));
        assert_eq!(field_eq("NAME=x\nPRETTY_NAME=\"Debian 12\"", "PRETTY_NAME").as_deref(), Some("Debian 12"));
    }
}
