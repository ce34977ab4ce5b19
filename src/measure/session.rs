//! One timed variant: an ORT session at a given optimisation level, its I/O binding with pre-allocated
//! outputs, and the ops ORT turned the graph into.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use ort::memory::{AllocationDevice, Allocator};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{IoBinding, Session, SessionInputValue};
use ort::value::{DynTensor, DynTensorValueType, ValueType};
use ort::AsPointer;
use prost::Message;

use super::equivalence::OutputValues;
use super::inputs::{element_count, HostTensor};
use super::{DType, Level, MeasureOptions, ModelSource};
use super::{InputSpec, SessionConfig};
use crate::runtime::{self, Ep};

/// Pre-allocated output tensors, bound to one or more sessions.
pub(crate) struct Outputs(Vec<(String, DType, Vec<usize>, DynTensor)>);

/// A host tensor moved to `ep`'s device memory (CUDA), so that timed runs read and write the device only;
/// unchanged on the CPU.
fn on_device(t: DynTensor, ep: Ep, what: &str) -> Result<DynTensor> {
    match ep {
        Ep::Cpu => Ok(t),
        Ep::Cuda { device_id } => t
            .to(AllocationDevice::CUDA, device_id)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("copying {what} to CUDA device {device_id}")),
    }
}

impl Outputs {
    /// Allocate tensors shaped like `like` (outputs of a plain run), in `ep`'s device memory.
    pub fn allocate(like: &[OutputValues], ep: Ep) -> Result<Outputs> {
        let mut v = Vec::with_capacity(like.len());
        for o in like {
            let t = DynTensor::new(&Allocator::default(), o.dtype.to_ort(), o.shape.clone())
                .map_err(|e| anyhow!("{e}"))
                .with_context(|| format!("allocating output `{}`", o.name))?;
            let t = on_device(t, ep, &format!("output `{}`", o.name))?;
            v.push((o.name.clone(), o.dtype, o.shape.clone(), t));
        }
        Ok(Outputs(v))
    }

    /// Whether these tensors can receive outputs like `like` (same names, dtypes and shapes, same order).
    pub fn fits(&self, like: &[OutputValues]) -> bool {
        self.0.len() == like.len()
            && self.0.iter().zip(like).all(|((n, d, s, _), o)| *n == o.name && *d == o.dtype && *s == o.shape)
    }

    /// Current contents.
    pub fn read(&self) -> Result<Vec<OutputValues>> {
        self.0.iter().map(|(name, dtype, shape, t)| read_tensor(name, *dtype, shape, t)).collect()
    }
}

/// A built session ready to time: inputs and pre-allocated outputs bound.
pub(crate) struct Variant {
    pub label: String,
    session: Session,
    binding: IoBinding,
    /// Wait for the device after each run (CUDA), so a timing covers the GPU work.
    sync: bool,
}

impl Variant {
    /// Run once through the binding (outputs land in the pre-allocated tensors). This is the timed call:
    /// ORT's `RunWithBinding` directly, without building a `SessionOutputs` map on every iteration.
    #[inline]
    pub fn run_bound(&self) -> Result<()> {
        // SAFETY: session and binding are live for `self`; RunWithBinding takes (session, null run options, binding)
        // and returns a status that `result_from_status` takes ownership of. Calls are serialised by the caller.
        let status =
            unsafe { (ort::api().RunWithBinding)(self.session.ptr().cast_mut(), std::ptr::null(), self.binding.ptr()) };
        unsafe { ort::Error::result_from_status(status) }
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("running {} session", self.label))?;
        if self.sync {
            self.binding
                .synchronize_outputs()
                .map_err(|e| anyhow!("{e}"))
                .with_context(|| format!("synchronising {} outputs", self.label))?;
        }
        Ok(())
    }
}

impl Variant {
    /// Run once through the binding without any synchronisation: ORT's end-of-run device sync is off
    /// (`ro`) and the outputs are not synchronised, so runs queue on the device back to back. For CUDA
    /// event timing ([`super::events::clock_check`]) only; the caller synchronises afterwards.
    pub fn run_bound_async(&self, ro: &AsyncRun) -> Result<()> {
        // SAFETY: as in `run_bound`, with live run options.
        let status = unsafe { (ort::api().RunWithBinding)(self.session.ptr().cast_mut(), ro.0, self.binding.ptr()) };
        unsafe { ort::Error::result_from_status(status) }
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("running {} session without synchronising", self.label))
    }

    /// Wait for the bound outputs (the device's work).
    pub fn synchronize(&self) -> Result<()> {
        self.binding.synchronize_outputs().map_err(|e| anyhow!("{e}")).context("synchronising bound outputs")
    }
}

/// Run options with ORT's end-of-run device synchronisation off (`disable_synchronize_execution_providers`).
pub(crate) struct AsyncRun(*mut ort::sys::OrtRunOptions);

impl AsyncRun {
    pub fn new() -> Result<AsyncRun> {
        let mut p = std::ptr::null_mut();
        // SAFETY: valid out-pointer; the status is taken over by result_from_status.
        unsafe { ort::Error::result_from_status((ort::api().CreateRunOptions)(&mut p)) }
            .map_err(|e| anyhow!("{e}"))
            .context("creating run options")?;
        let ro = AsyncRun(p);
        let key = std::ffi::CString::new("disable_synchronize_execution_providers").expect("no NUL");
        let one = std::ffi::CString::new("1").expect("no NUL");
        // SAFETY: live options and NUL-terminated strings that outlive the call.
        unsafe { ort::Error::result_from_status((ort::api().AddRunConfigEntry)(ro.0, key.as_ptr(), one.as_ptr())) }
            .map_err(|e| anyhow!("{e}"))
            .context("setting disable_synchronize_execution_providers")?;
        Ok(ro)
    }
}

impl Drop for AsyncRun {
    fn drop(&mut self) {
        // SAFETY: created by CreateRunOptions, released once.
        unsafe { (ort::api().ReleaseRunOptions)(self.0) }
    }
}

/// ORT level for ours.
fn ort_level(level: Level) -> GraphOptimizationLevel {
    match level {
        Level::Disable => GraphOptimizationLevel::Disable,
        Level::Extended => GraphOptimizationLevel::Level2,
        Level::All => GraphOptimizationLevel::All,
    }
}

/// Session options shared by every variant. Sessions must not get different luck from the OS or the allocator:
/// - 1 thread: no pool at all, everything runs on the calling thread;
/// - N > 1 threads: the environment's shared pool of N threads (see `runtime::configure_pool`), spinning off:
///   per-session pools made identical sessions differ by up to 3%, and spinning workers steal the cores the next
///   session needs;
/// - sequential execution, and the environment's shared CPU arena (see `runtime`), so all variants place
///   intermediates alike.
fn configure(
    config: &SessionConfig,
    threads: usize,
    optimized: Option<&Path>,
    strict_gpu: bool,
) -> ort::Result<SessionBuilder> {
    let env = runtime::environment().map_err(|e| ort::Error::new(format!("{e:#}")))?;
    let mut b = Session::builder(env)?
        .with_optimization_level(ort_level(config.level))?
        .with_parallel_execution(false)?
        .with_env_allocators()?;
    if threads == 1 {
        b = b
            .with_independent_thread_pool()?
            .with_intra_threads(1)?
            .with_inter_threads(1)?
            .with_config_entry("session.intra_op.allow_spinning", "0")?
            .with_config_entry("session.inter_op.allow_spinning", "0")?;
    }
    if let Some(p) = optimized {
        // the optimised graph only: its initializers go to a file beside it that nothing reads, so that
        // listing its ops does not read a copy of every weight (the whole model's folded weights)
        let data = p.with_extension("data");
        let data = data.file_name().and_then(|n| n.to_str()).unwrap_or("optimized.data");
        b = b
            .with_optimized_model_path(p)?
            .with_config_entry("session.optimized_model_external_initializers_file_name", data)?
            .with_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")?;
    }
    if strict_gpu {
        b = b.with_config_entry("session.disable_cpu_ep_fallback", "1")?;
    }
    if !config.disabled.is_empty() {
        b = b.with_config_entry("optimization.disable_specified_optimizers", config.disabled_entry())?;
    }
    Ok(b)
}

fn commit(mut b: SessionBuilder, source: ModelSource<'_>) -> ort::Result<Session> {
    match source {
        ModelSource::Bytes(bytes) => b.commit_from_memory(bytes),
        ModelSource::Path(path) => b.commit_from_file(path),
    }
}

/// ORT's message when a node would run on the CPU while CPU fallback is disabled.
pub(crate) const FALLBACK_REFUSED: &str = "fallback to CPU EP has been explicitly disabled";

/// [`build_session`] for a pattern's unfused or runtime-fused model on CUDA: strictly on the GPU first;
/// if ORT must put some nodes on the CPU (it keeps shape arithmetic there: Shape, Gather, Concat of
/// int64 shapes), build it again with fallback allowed and say so (`true`). Never used for the
/// explicit-fused model, whose fused kernel must itself run on the GPU.
pub(crate) fn build_session_placed(
    source: ModelSource<'_>,
    level: Level,
    opts: &MeasureOptions,
    optimized: Option<&Path>,
    label: &str,
) -> Result<(Session, bool)> {
    match build_session(source, level, opts, optimized, label) {
        Ok(s) => Ok((s, false)),
        Err(e) if opts.strict_placement && format!("{e:#}").contains(FALLBACK_REFUSED) => {
            let relaxed = MeasureOptions { strict_placement: false, ..opts.clone() };
            Ok((build_session(source, level, &relaxed, optimized, label)?, true))
        }
        Err(e) => Err(e),
    }
}

/// Build a session for `level`; when `optimized` is given, ORT saves the optimised graph there.
pub(crate) fn build_session(
    source: ModelSource<'_>,
    level: Level,
    opts: &MeasureOptions,
    optimized: Option<&Path>,
    label: &str,
) -> Result<Session> {
    build_session_logged(source, &SessionConfig::level(level), opts, optimized, label, None)
}

/// [`build_session`] under a full [`SessionConfig`]; with `log`, ORT's verbose log of this session goes to it.
pub(crate) fn build_session_logged(
    source: ModelSource<'_>,
    config: &SessionConfig,
    opts: &MeasureOptions,
    optimized: Option<&Path>,
    label: &str,
    log: Option<ort::logging::LoggerFunction>,
) -> Result<Session> {
    let level = config.level;
    let gpu = matches!(opts.ep, Ep::Cuda { .. });
    let mut b = configure(config, opts.threads, optimized, gpu && opts.strict_placement)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("configuring {label} session"))?;
    if let Some(f) = log {
        let context = || format!("logging the {label} session");
        b = b.with_logger(f).map_err(|e| anyhow!("{e}")).with_context(context)?;
        b = b.with_log_level(ort::logging::LogLevel::Verbose).map_err(|e| anyhow!("{e}")).with_context(context)?;
    }
    // CUDA: on the measurement's own stream when it has one (for the clock check), else ORT's
    let stream = opts.cuda_stream.map(|p| p as *mut std::ffi::c_void);
    let tf32 = opts.precision != runtime::Precision::Fp32;
    let b = runtime::register_ep_with(b, opts.ep, opts.cuda_graph, stream, tf32)
        .with_context(|| format!("registering {} on the {label} session", opts.ep))?;
    commit(b, source).map_err(|e| anyhow!("{e}")).with_context(|| {
        let placement = if gpu && opts.strict_placement {
            " (CPU fallback is disabled: a node without a CUDA kernel fails the session instead of running on the CPU)"
        } else {
            ""
        };
        format!("creating {label} session (level {level}, ep {}){placement}", opts.ep)
    })
}

/// A `Disable`-level CUDA session that runs on `stream` (for CUDA event timing); the caller drops it
/// before the stream.
pub(crate) fn build_session_on_stream(
    model: &[u8],
    opts: &MeasureOptions,
    stream: *mut std::ffi::c_void,
) -> Result<Session> {
    let b = configure(&SessionConfig::level(Level::Disable), opts.threads, None, opts.strict_placement)
        .map_err(|e| anyhow!("{e}"))
        .context("configuring the event-timed session")?;
    let b = runtime::register_ep_with(b, opts.ep, false, Some(stream), opts.precision != runtime::Precision::Fp32)
        .with_context(|| format!("registering {} on the event-timed session", opts.ep))?;
    commit(b, ModelSource::Bytes(model)).map_err(|e| anyhow!("{e}")).context("creating the event-timed session")
}

/// Host tensors as ORT values, in `ep`'s device memory (CUDA: copied once, before any timing). The same
/// values are bound to every session.
pub(crate) fn to_ort_values(inputs: &[HostTensor], ep: Ep) -> Result<Vec<DynTensor>> {
    inputs
        .iter()
        .map(|h| {
            let mut t = DynTensor::new(&Allocator::default(), h.dtype.to_ort(), h.shape.clone())
                .map_err(|e| anyhow!("{e}"))
                .with_context(|| format!("allocating input `{}`", h.name))?;
            let ptr = t.data_ptr_mut().cast::<u8>();
            if ptr.is_null() || h.data.len() != element_count(&h.shape)? * h.dtype.size_bytes() {
                bail!(
                    "input `{}` has {} bytes, which does not match shape {:?} of {:?}",
                    h.name,
                    h.data.len(),
                    h.shape,
                    h.dtype
                );
            }
            // SAFETY: `t` was just allocated on the CPU with exactly this many bytes (checked above).
            unsafe { std::ptr::copy_nonoverlapping(h.data.as_ptr(), ptr, h.data.len()) };
            on_device(t, ep, &format!("input `{}`", h.name))
        })
        .collect()
}

/// Check the inputs cover exactly the session's inputs, with matching dtypes and fixed dims.
pub(crate) fn check_inputs(session: &Session, inputs: &[InputSpec]) -> Result<()> {
    for outlet in session.inputs() {
        let Some(h) = inputs.iter().find(|h| h.name == outlet.name()) else {
            return Err(crate::error::user(format!(
                "the model needs input `{}` but no value was given for it",
                outlet.name()
            )));
        };
        let ValueType::Tensor { ty, shape, .. } = outlet.dtype() else {
            bail!("model input `{}` is not a tensor", outlet.name());
        };
        if DType::from_ort(*ty) != Some(h.dtype) {
            return Err(crate::error::user(format!("input `{}`: the model expects {ty:?}, got {:?}", h.name, h.dtype)));
        }
        let dims_ok =
            shape.len() == h.shape.len() && shape.iter().zip(&h.shape).all(|(&d, &g)| d < 0 || d as usize == g);
        if !dims_ok {
            let want: Vec<i64> = shape.iter().copied().collect();
            return Err(crate::error::user(format!(
                "input `{}`: the model expects shape {want:?} (-1 = any), got {:?}",
                h.name, h.shape
            )));
        }
    }
    for h in inputs {
        if !session.inputs().iter().any(|o| o.name() == h.name) {
            return Err(crate::error::user(format!("`{}` is not an input of the model", h.name)));
        }
    }
    Ok(())
}

/// One plain (allocating) run; returns the outputs in session output order.
pub(crate) fn run_plain(
    session: &mut Session,
    names: &[String],
    values: &[DynTensor],
    label: &str,
) -> Result<Vec<OutputValues>> {
    let feed: Vec<(&str, SessionInputValue<'_>)> =
        names.iter().map(|n| n.as_str()).zip(values.iter().map(SessionInputValue::from)).collect();
    let out_names: Vec<String> = session.outputs().iter().map(|o| o.name().to_string()).collect();
    let outputs = session.run(feed).map_err(|e| anyhow!("{e}")).with_context(|| format!("running {label} session"))?;
    out_names
        .iter()
        .map(|name| {
            let v = outputs.get(name).with_context(|| format!("{label}: output `{name}` missing from the run"))?;
            let (dtype, shape) = tensor_type(name, v.dtype())?;
            let t = v
                .view()
                .downcast::<DynTensorValueType>()
                .map_err(|e| anyhow!("{e}"))
                .with_context(|| format!("output `{name}`"))?;
            read_tensor(name, dtype, &shape, &t)
        })
        .collect()
}

/// Bind `values` as inputs and `outputs` as outputs.
pub(crate) fn bind(
    session: Session,
    names: &[String],
    values: &[DynTensor],
    outputs: &mut Outputs,
    label: &str,
) -> Result<Variant> {
    let wrap = |e: ort::Error| anyhow!("{e}");
    let mut binding =
        session.create_binding().map_err(wrap).with_context(|| format!("creating the {label} I/O binding"))?;
    for (n, v) in names.iter().zip(values) {
        binding.bind_input(n.as_str(), v).map_err(wrap).with_context(|| format!("binding input `{n}` ({label})"))?;
    }
    for (name, _, _, t) in outputs.0.iter_mut() {
        binding
            .bind_output(name.as_str(), &mut *t)
            .map_err(wrap)
            .with_context(|| format!("binding output `{name}` ({label})"))?;
    }
    let sync = outputs.0.iter().any(|(_, _, _, t)| !t.memory_info().is_cpu_accessible())
        || values.iter().any(|v| !v.memory_info().is_cpu_accessible());
    Ok(Variant { label: label.to_string(), session, binding, sync })
}

fn tensor_type(name: &str, vt: &ValueType) -> Result<(DType, Vec<usize>)> {
    let ValueType::Tensor { ty, shape, .. } = vt else {
        bail!("output `{name}` is not a tensor ({vt:?}); fuseval measures tensor outputs only");
    };
    let dtype = DType::from_ort(*ty).with_context(|| format!("output `{name}` has unsupported element type {ty:?}"))?;
    let shape = shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<_>, _>>()
        .with_context(|| format!("output `{name}` has a negative dimension"))?;
    Ok((dtype, shape))
}

fn read_tensor(name: &str, dtype: DType, shape: &[usize], t: &DynTensor) -> Result<OutputValues> {
    if !t.memory_info().is_cpu_accessible() {
        let host = t
            .to(AllocationDevice::CPU, 0)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("copying output `{name}` from the device"))?;
        return read_tensor(name, dtype, shape, &host);
    }
    let nbytes = element_count(shape)? * dtype.size_bytes();
    let ptr = t.data_ptr().cast::<u8>();
    if nbytes == 0 {
        return Ok(OutputValues::from_bytes(name, dtype, shape.to_vec(), &[]));
    }
    if ptr.is_null() {
        bail!("output `{name}` has no data");
    }
    // SAFETY: a CPU tensor of `shape` × `dtype` holds exactly `nbytes` bytes at `ptr`.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, nbytes) };
    Ok(OutputValues::from_bytes(name, dtype, shape.to_vec(), bytes))
}

/// Op types of a serialized model's main graph, in graph order, prefixed with their domain when it is not the
/// default (`com.microsoft.FusedConv`, `Gemm`).
pub fn model_ops(bytes: &[u8]) -> Result<Vec<String>> {
    Ok(model_nodes(bytes)?.into_iter().map(|(_, op)| op).collect())
}

/// (name, op type as [`model_ops`] gives it) of every node of a serialized model's main graph, in graph order.
pub fn model_nodes(bytes: &[u8]) -> Result<Vec<(String, String)>> {
    // only the nodes' op types and domains: prost skips every other field (initializers above all)
    // without copying it, so listing a large model's ops costs no more memory than its node list
    #[derive(Clone, PartialEq, prost::Message)]
    struct Node {
        #[prost(string, tag = "3")]
        name: String,
        #[prost(string, tag = "4")]
        op_type: String,
        #[prost(string, tag = "7")]
        domain: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Graph {
        #[prost(message, repeated, tag = "1")]
        node: Vec<Node>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Model {
        #[prost(message, optional, tag = "7")]
        graph: Option<Graph>,
    }
    let model = Model::decode(bytes).context("decoding ONNX model")?;
    let graph = model.graph.context("ONNX model has no graph")?;
    Ok(graph
        .node
        .into_iter()
        .map(|n| {
            let op = if n.domain.is_empty() || n.domain == "ai.onnx" {
                n.op_type
            } else {
                format!("{}.{}", n.domain, n.op_type)
            };
            (n.name, op)
        })
        .collect())
}
