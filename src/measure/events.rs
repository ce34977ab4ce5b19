//! CUDA event timing, to check fuseval's host-clock timing of a GPU run against the device's own
//! clock. The CUDA runtime is opened at run time (`libcudart`), so nothing links against CUDA and CPU
//! builds are unaffected.

use std::ffi::c_void;

use anyhow::{anyhow, bail, Context, Result};
use libloading::Library;

type Err = i32;

/// The few CUDA runtime entry points event timing needs.
pub struct Cudart {
    _lib: Library,
    set_device: unsafe extern "C" fn(i32) -> Err,
    stream_create: unsafe extern "C" fn(*mut *mut c_void) -> Err,
    stream_destroy: unsafe extern "C" fn(*mut c_void) -> Err,
    event_create: unsafe extern "C" fn(*mut *mut c_void) -> Err,
    event_destroy: unsafe extern "C" fn(*mut c_void) -> Err,
    event_record: unsafe extern "C" fn(*mut c_void, *mut c_void) -> Err,
    event_synchronize: unsafe extern "C" fn(*mut c_void) -> Err,
    event_elapsed: unsafe extern "C" fn(*mut f32, *mut c_void, *mut c_void) -> Err,
}

fn check(code: Err, what: &str) -> Result<()> {
    if code != 0 {
        bail!("{what} failed with CUDA error {code}");
    }
    Ok(())
}

impl Cudart {
    /// Open libcudart (CUDA 13, 12, or unversioned) from the library path.
    pub fn open() -> Result<Cudart> {
        let mut last = None;
        for name in ["libcudart.so.13", "libcudart.so.12", "libcudart.so"] {
            // SAFETY: loading the CUDA runtime runs its initialisers only.
            match unsafe { Library::new(name) } {
                Ok(lib) => return Self::from_lib(lib),
                Err(e) => last = Some(e),
            }
        }
        Err(anyhow!(
            "cannot open the CUDA runtime (libcudart.so.13/.12): {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        ))
    }

    fn from_lib(lib: Library) -> Result<Cudart> {
        // SAFETY: the symbols have these C signatures in every CUDA runtime since 10.
        unsafe {
            macro_rules! sym {
                ($name:literal) => {
                    *lib.get($name).with_context(|| format!("libcudart has no {}", String::from_utf8_lossy($name)))?
                };
            }
            Ok(Cudart {
                set_device: sym!(b"cudaSetDevice"),
                stream_create: sym!(b"cudaStreamCreate"),
                stream_destroy: sym!(b"cudaStreamDestroy"),
                event_create: sym!(b"cudaEventCreate"),
                event_destroy: sym!(b"cudaEventDestroy"),
                event_record: sym!(b"cudaEventRecord"),
                event_synchronize: sym!(b"cudaEventSynchronize"),
                event_elapsed: sym!(b"cudaEventElapsedTime"),
                _lib: lib,
            })
        }
    }

    /// A new stream on `device`, for a session's `user_compute_stream`.
    pub fn stream(&self, device: i32) -> Result<Stream<'_>> {
        let mut s = std::ptr::null_mut();
        // SAFETY: plain CUDA runtime calls with valid out-pointers.
        unsafe {
            check((self.set_device)(device), "cudaSetDevice")?;
            check((self.stream_create)(&mut s), "cudaStreamCreate")?;
        }
        Ok(Stream { rt: self, ptr: s })
    }

    fn event(&self) -> Result<*mut c_void> {
        let mut e = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        unsafe { check((self.event_create)(&mut e), "cudaEventCreate")? };
        Ok(e)
    }
}

/// A CUDA stream; destroyed on drop (after every session using it).
pub struct Stream<'a> {
    rt: &'a Cudart,
    pub ptr: *mut c_void,
}

impl Stream<'_> {
    /// Milliseconds of device time between events recorded on this stream before and after `f`.
    pub fn time<F: FnMut() -> Result<()>>(&self, mut f: F) -> Result<f64> {
        let (a, b) = (self.rt.event()?, self.rt.event()?);
        let mut ms = 0f32;
        // SAFETY: events and stream are live; elapsed time is read after the end event completed.
        let r = unsafe {
            check((self.rt.event_record)(a, self.ptr), "cudaEventRecord")
                .and_then(|()| f())
                .and_then(|()| check((self.rt.event_record)(b, self.ptr), "cudaEventRecord"))
                .and_then(|()| check((self.rt.event_synchronize)(b), "cudaEventSynchronize"))
                .and_then(|()| check((self.rt.event_elapsed)(&mut ms, a, b), "cudaEventElapsedTime"))
        };
        // SAFETY: both events were created above.
        unsafe {
            (self.rt.event_destroy)(a);
            (self.rt.event_destroy)(b);
        }
        r.map(|()| ms as f64)
    }
}

impl Drop for Stream<'_> {
    fn drop(&mut self) {
        // SAFETY: created by cudaStreamCreate; sessions using it are dropped first by construction.
        unsafe {
            (self.rt.stream_destroy)(self.ptr);
        }
    }
}

/// The measurement's own check of its clock on CUDA: the timed session (unfused A), on the stream it was
/// measured on, run N times back to back between two CUDA events with no host synchronisation in between
/// (ORT's end-of-run sync off), against the host-clock time per run as fuseval takes it (every run
/// followed by a synchronisation). `host_vs_events` near 0: the host clock times the device's work; well
/// above 0: each timed run also pays the synchronisation and launch gap, which fusion can hide or not.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClockCheck {
    /// Per run, median over rounds: host clock with a sync per run, and device events without.
    pub host_ms: f64,
    pub event_ms: f64,
    /// host_ms / event_ms − 1.
    pub host_vs_events: f64,
    pub runs_per_round: usize,
    pub rounds: usize,
}

/// [`ClockCheck`] of `v`, a bound session built on `stream`.
pub(crate) fn clock_check(v: &super::session::Variant, stream: &Stream<'_>) -> Result<ClockCheck> {
    let ro = super::session::AsyncRun::new()?;
    let plan = Interleave { warmup: 20, settled: 5, min_runs: 5, max_runs: 2000, rounds: 16 };
    let (host, event, n) = interleave(v, stream, &plan, &|| v.run_bound_async(&ro))?;
    let rounds = plan.rounds;
    v.synchronize()?;
    let (host_ms, event_ms) = (crate::estimate::median(&host), crate::estimate::median(&event));
    Ok(ClockCheck { host_ms, event_ms, host_vs_events: host_ms / event_ms - 1.0, runs_per_round: n, rounds })
}

/// How [`interleave`] times: `warmup` synchronised runs, the median of those after the first `settled`
/// giving the runs per round (about 2 ms of work, within `min_runs..=max_runs`), then `rounds` rounds.
struct Interleave {
    warmup: usize,
    settled: usize,
    min_runs: usize,
    max_runs: usize,
    rounds: usize,
}

/// Rounds of the bound session `v` timed two ways, in alternating order: N runs by the host clock, each
/// synchronised (as fuseval times), and N runs of `event_run` between two CUDA events on `stream`. The
/// per-run milliseconds of each round, host and events, and N.
fn interleave(
    v: &super::session::Variant,
    stream: &Stream<'_>,
    plan: &Interleave,
    event_run: &dyn Fn() -> Result<()>,
) -> Result<(Vec<f64>, Vec<f64>, usize)> {
    let mut one = vec![];
    for _ in 0..plan.warmup {
        let t = std::time::Instant::now();
        v.run_bound()?;
        one.push(t.elapsed().as_secs_f64());
    }
    let one = crate::estimate::median(&one[plan.settled..]).max(1e-6);
    let n = ((2e-3 / one).ceil() as usize).clamp(plan.min_runs, plan.max_runs);
    let (mut host, mut event) = (vec![], vec![]);
    for r in 0..plan.rounds {
        let h = || -> Result<f64> {
            let t = std::time::Instant::now();
            for _ in 0..n {
                v.run_bound()?;
            }
            Ok(t.elapsed().as_secs_f64() * 1e3 / n as f64)
        };
        let e = || -> Result<f64> { Ok(stream.time(|| (0..n).try_for_each(|_| event_run()))? / n as f64) };
        if r % 2 == 0 {
            host.push(h()?);
            event.push(e()?);
        } else {
            event.push(e()?);
            host.push(h()?);
        }
    }
    Ok((host, event, n))
}

/// One model timed three ways on CUDA: fuseval's measurement (`compare`, unfused session), and a
/// session on a stream of our own timed both by the host clock (as fuseval times) and by CUDA events.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EventCheck {
    pub label: String,
    /// fuseval's median per-run latency of the model (unfused session of `compare`).
    pub fuseval_ms: f64,
    pub fuseval_ci_ms: crate::estimate::Estimate,
    /// The same session design on our stream: per-run host time and per-run event time, medians over rounds.
    pub host_ms: f64,
    pub event_ms: f64,
    pub event_ci_ms: crate::estimate::Estimate,
    /// fuseval_ms / event_ms − 1.
    pub fuseval_vs_events: f64,
    /// host_ms / event_ms − 1, on the same runs.
    pub host_vs_events: f64,
    pub rounds: usize,
    pub iters_per_round: usize,
}

/// Time `model` with CUDA events beside fuseval's own measurement of it.
pub fn event_check(
    label: &str,
    model: &[u8],
    specs: &[super::InputSpec],
    opts: &super::MeasureOptions,
) -> Result<EventCheck> {
    use super::session;
    let crate::runtime::Ep::Cuda { device_id } = opts.ep else {
        bail!("event timing needs --ep cuda");
    };
    let fuseval = super::compare(super::ModelSource::Bytes(model), specs, opts).context("fuseval's measurement")?;
    let rt = Cudart::open()?;
    let stream = rt.stream(device_id)?;
    let s = session::build_session_on_stream(model, opts, stream.ptr)?;
    let set = super::random_inputs(specs, opts.seed)?;
    let names: Vec<String> = set.iter().map(|h| h.name.clone()).collect();
    let values = session::to_ort_values(&set, opts.ep)?;
    let mut s = s;
    let like = session::run_plain(&mut s, &names, &values, "event-timed")?;
    let mut outs = session::Outputs::allocate(&like, opts.ep)?;
    let v = session::bind(s, &names, &values, &mut outs, "event-timed")?;
    let plan = Interleave { warmup: 50, settled: 25, min_runs: 1, max_runs: 10_000, rounds: 30 };
    let (host, event, iters) = interleave(&v, &stream, &plan, &|| v.run_bound())?;
    let rounds = plan.rounds;
    drop(v);
    let event_ci = crate::estimate::median_ci(&event, 2000, opts.seed);
    let host_ms = crate::estimate::median(&host);
    Ok(EventCheck {
        label: label.into(),
        fuseval_ms: fuseval.unfused.median_ms,
        fuseval_ci_ms: fuseval.unfused.ci_ms,
        host_ms,
        event_ms: event_ci.point,
        event_ci_ms: event_ci,
        fuseval_vs_events: fuseval.unfused.median_ms / event_ci.point - 1.0,
        host_vs_events: host_ms / event_ci.point - 1.0,
        rounds,
        iters_per_round: iters,
    })
}
