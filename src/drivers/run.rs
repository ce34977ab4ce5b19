//! What keeps a long `bench` run safe: Ctrl-C / SIGTERM handling, the machine-wide lock that keeps two
//! runs from timing each other, the model fingerprint `--resume` checks, and `fuseval merge`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::error::{Error, ExitCode};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    // async-signal-safe only: an atomic swap, write(2) and _exit(2)
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        unsafe { libc::_exit(ExitCode::Interrupted.code()) };
    }
    let msg = b"\ninterrupted: stopping after the current instance (again to quit at once)\n";
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

/// Catch SIGINT and SIGTERM: the first sets the flag [`interrupted`] reads, the second exits at once.
pub fn install_signal_handlers() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error()).context("installing the signal handler");
            }
        }
    }
    Ok(())
}

/// SIGPIPE back to its default (end the process) where Rust ignores it, so that printing into a closed
/// pipe ends the command quietly instead of panicking.
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL, before any thread is started
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Whether Ctrl-C or SIGTERM has arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// What to do when another bench run holds the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LockMode {
    /// Wait for it to finish.
    Wait,
    /// Exit with code 4.
    Fail,
    /// Warn and measure anyway (timings may be disturbed).
    Warn,
}

/// Overrides the lock file's path (tests use it to hold a lock of their own).
pub const LOCK_VAR: &str = "FUSEVAL_LOCK";

/// The lock file: `$FUSEVAL_LOCK`, else `bench.lock` in the cache directory.
pub fn lock_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(LOCK_VAR).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let dir = crate::runtime::cache_dir(&crate::runtime::LibraryVars::from_env())?;
    Ok(dir.join("bench.lock"))
}

/// An exclusive `flock` on the lock file, released when dropped (or when the process dies).
pub struct RunLock {
    file: File,
    pub path: PathBuf,
}

fn try_flock(f: &File) -> Result<bool> {
    use std::os::fd::AsRawFd;
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e).context("flock")
    }
}

fn holder(f: &mut File) -> String {
    let mut s = String::new();
    let _ = f.seek(SeekFrom::Start(0)).and_then(|_| f.read_to_string(&mut s));
    let s = s.trim();
    if s.is_empty() {
        "another fuseval bench (pid unknown)".into()
    } else {
        s.to_string()
    }
}

impl RunLock {
    /// Take the lock at `path`. `Ok(None)` when `mode` is warn and someone else holds it; with `mode` fail,
    /// [`Error::Locked`]; interrupted while waiting, [`Error::Interrupted`].
    pub fn acquire(path: &Path, mode: LockMode) -> Result<Option<RunLock>> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        let mut told = false;
        while !try_flock(&file).with_context(|| format!("locking {}", path.display()))? {
            let who = holder(&mut file);
            match mode {
                LockMode::Fail => {
                    return Err(Error::Locked(format!(
                        "another bench run holds {}: {who}; rerun with --lock wait or --lock warn",
                        path.display()
                    ))
                    .into())
                }
                LockMode::Warn => {
                    eprintln!(
                        "warning: another bench run holds {}: {who}; measuring anyway, timings may be disturbed",
                        path.display()
                    );
                    return Ok(None);
                }
                LockMode::Wait => {
                    if !told {
                        eprintln!("waiting for another bench run to finish: {who} holds {}", path.display());
                        told = true;
                    }
                    if interrupted() {
                        return Err(Error::Interrupted.into());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        let me = format!("pid {} ({})", std::process::id(), crate::calibration::utc_now());
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Some(RunLock { file, path: path.to_path_buf() }))
    }
}

/// Take the machine-wide lock ([`lock_path`]) for a measuring run. A lock file that cannot be made (a
/// cache directory that cannot be written) only warns: it must not stop the run.
pub fn take_lock(mode: LockMode) -> Result<Option<RunLock>> {
    match lock_path().and_then(|path| RunLock::acquire(&path, mode)) {
        Ok(l) => Ok(l),
        Err(e) if matches!(ExitCode::of(&e), ExitCode::Locked | ExitCode::Interrupted) => Err(e),
        Err(e) => {
            eprintln!("warning: no lock against concurrent runs: {e:#}");
            Ok(None)
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}
