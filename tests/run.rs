//! Failures during a run: a bench killed partway and resumed, an instance that fails and is skipped,
//! merging runs, and the lock against two runs at once. All run the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fuseval::calibration::{CalibrationFile, Status};
use fuseval::error::ExitCode;

const BIN: &str = env!("CARGO_BIN_EXE_fuseval");
const RESNET: &str = "fixtures/mini_resnet50_legacy.onnx";

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fuseval-run-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A bench command with a lock file of its own (the tests in this file run at the same time).
fn bench_cmd(lock: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env(fuseval::drivers::run::LOCK_VAR, lock).env_remove(fuseval::pipeline::FAIL_PATTERN_VAR).arg("bench");
    c
}

fn quick(model: &str, out: &Path) -> Vec<String> {
    [model, "--quick", "--no-whole-model", "--threads", "1", "-o", out.to_str().unwrap()]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn read_cal(path: &Path) -> CalibrationFile {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// With two replicates, a record on disk after the first pass has one: resume measures it again, whole,
/// and keeps the records that had both.
#[test]
fn resume_measures_records_missing_a_replicate_again() {
    let out = tmp("resume-reps");
    let lock = out.with_extension("lock");
    let cal_path = out.join("calibration.json");
    // the MLP and its sub-matches: three distinct records
    let mut args = quick("fixtures/patterns/mlp.onnx", &out);
    args.push("--all-patterns".into());
    let o = bench_cmd(&lock).args(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(ExitCode::Ok.code()), "{}", text(&o));
    let full = read_cal(&cal_path);
    assert!(full.fusion_profiles.len() >= 2 && full.fusion_profiles.iter().all(|r| r.replicates.len() == 2));
    // as if killed during the second pass: the first record lost its second replicate
    let mut cut = full.clone();
    cut.complete = false;
    cut.fusion_profiles[0].replicates.truncate(1);
    std::fs::write(&cal_path, serde_json::to_vec_pretty(&cut).unwrap()).unwrap();
    let o = bench_cmd(&lock).args(["--resume", out.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(ExitCode::Ok.code()), "{}", text(&o));
    let done = read_cal(&cal_path);
    assert!(done.complete);
    assert_eq!(done.fusion_profiles.len(), full.fusion_profiles.len());
    assert_eq!(done.fusion_profiles[0].replicates.len(), 2, "measured again, both replicates");
    assert_ne!(done.fusion_profiles[0].unfused_latency_ms, full.fusion_profiles[0].unfused_latency_ms);
    for (new, old) in done.fusion_profiles.iter().zip(&full.fusion_profiles).skip(1) {
        assert_eq!(serde_json::to_string(new).unwrap(), serde_json::to_string(old).unwrap(), "kept as it was");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn killed_bench_keeps_finished_results_and_resume_completes_them() {
    let out = tmp("kill");
    let lock = out.with_extension("lock");
    let cal_path = out.join("calibration.json");
    // one replicate per instance, so that a record is finished as soon as it is on disk (with two, the
    // first pass writes records that still wait for their second replicate: resume measures those again,
    // see resume_measures_records_missing_a_replicate_again)
    let mut args = quick(RESNET, &out);
    args.extend(["--replicates".to_string(), "1".to_string()]);
    let mut child = bench_cmd(&lock).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();

    // wait for at least two finished records, then SIGTERM
    let deadline = Instant::now() + Duration::from_secs(120);
    let partial = loop {
        assert!(Instant::now() < deadline, "no 2 records in calibration.json in time");
        assert!(child.try_wait().unwrap().is_none(), "bench finished before it could be killed");
        if let Ok(bytes) = std::fs::read(&cal_path) {
            // every version on disk is valid JSON (atomic writes)
            let c: CalibrationFile =
                serde_json::from_slice(&bytes).expect("calibration.json is valid JSON while running");
            if c.fusion_profiles.len() >= 2 {
                break c;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(ExitCode::Interrupted.code()), "{status:?}");

    let killed = read_cal(&cal_path);
    assert!(!killed.complete);
    assert!(killed.fusion_profiles.len() >= partial.fusion_profiles.len());
    let p = fuseval::pipeline::prepare(Path::new(RESNET), &[]).unwrap();
    let total = fuseval::pipeline::distinct_count(&p, false);
    assert!(killed.fusion_profiles.len() < total, "the kill came too late to test resume");

    // an existing output is not overwritten without --force or --resume
    let o = bench_cmd(&lock).args(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(ExitCode::BadInput.code()), "{}", text(&o));
    assert!(text(&o).contains("--force") && text(&o).contains("--resume"), "{}", text(&o));
    // --resume takes no measurement options
    let o = bench_cmd(&lock).args(["--resume", out.to_str().unwrap(), "--seed", "7"]).output().unwrap();
    assert_eq!(o.status.code(), Some(ExitCode::BadInput.code()), "{}", text(&o));

    let o = bench_cmd(&lock).args(["--resume", out.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(ExitCode::Ok.code()), "{}", text(&o));
    let done = read_cal(&cal_path);
    assert!(done.complete);
    assert_eq!(done.fusion_profiles.len(), total);
    // the records from before the kill are kept exactly, not measured again
    for old in &killed.fusion_profiles {
        let new = done.fusion_profiles.iter().find(|r| r.signature == old.signature).expect("old record kept");
        assert_eq!(serde_json::to_string(new).unwrap(), serde_json::to_string(old).unwrap());
        assert_eq!(new.unfused_latency_ms, old.unfused_latency_ms);
    }
    let mut sigs: Vec<&str> = done.fusion_profiles.iter().map(|r| r.signature.as_str()).collect();
    sigs.sort();
    sigs.dedup();
    assert_eq!(sigs.len(), total, "no instance measured twice");
    for f in ["graph.json", "graph.dot", "annotated.onnx"] {
        assert!(out.join(f).exists(), "{f}");
    }

    // a complete file resumes to itself
    let o = bench_cmd(&lock).args(["--resume", out.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(ExitCode::Ok.code()), "{}", text(&o));
    assert_eq!(read_cal(&cal_path).fusion_profiles.len(), total);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_second_signal_exits_at_once_leaving_valid_json() {
    let out = tmp("twice");
    let lock = out.with_extension("lock");
    let cal_path = out.join("calibration.json");
    let mut child =
        bench_cmd(&lock).args(quick(RESNET, &out)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cal_path.exists() {
        assert!(Instant::now() < deadline, "no calibration.json in time");
        assert!(child.try_wait().unwrap().is_none(), "bench finished before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // two different signals back to back: both are delivered (two of one kind could merge)
    for sig in [libc::SIGINT, libc::SIGTERM] {
        assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(ExitCode::Interrupted.code()), "{status:?}");
    let cal = read_cal(&cal_path);
    assert!(!cal.complete);
    assert!(!cal.fusion_profiles.is_empty());
    // it exited at once: no final write of the other files
    assert!(!out.join("graph.json").exists());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn resume_refuses_a_changed_model() {
    let out = tmp("changed");
    let lock = out.with_extension("lock");
    let model = tmp("changed-model.onnx");
    std::fs::copy("fixtures/patterns/add_relu.onnx", &model).unwrap();
    let o = bench_cmd(&lock).args(quick(model.to_str().unwrap(), &out)).output().unwrap();
    assert_eq!(o.status.code(), Some(ExitCode::Ok.code()), "{}", text(&o));
    // the same bytes plus one: a different file
    let mut bytes = std::fs::read(&model).unwrap();
    bytes.push(0);
    std::fs::write(&model, bytes).unwrap();
    let before = std::fs::read(out.join("calibration.json")).unwrap();
    let o = bench_cmd(&lock).args(["--resume", out.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(ExitCode::BadInput.code()), "{}", text(&o));
    assert!(text(&o).contains("changed"), "{}", text(&o));
    assert_eq!(std::fs::read(out.join("calibration.json")).unwrap(), before);
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_file(&model);
}

#[test]
fn a_failing_instance_is_skipped_and_the_run_goes_on() {
    // the residual blocks' pattern (Conv2d_Add_ReLU since issue 10; Add_ReLU before)
    for (hook, reason) in [("Conv2d_Add_ReLU", "injected failure"), ("Conv2d_Add_ReLU!", "internal error (panic)")] {
        let out = tmp(&format!("fail{}", hook.len()));
        let lock = out.with_extension("lock");
        let o =
            bench_cmd(&lock).env(fuseval::pipeline::FAIL_PATTERN_VAR, hook).args(quick(RESNET, &out)).output().unwrap();
        assert_eq!(o.status.code(), Some(ExitCode::Skipped.code()), "{}", text(&o));
        let cal = read_cal(&out.join("calibration.json"));
        assert!(cal.complete);
        let skipped: Vec<_> = cal.fusion_profiles.iter().filter(|r| r.status == Status::Skipped).collect();
        assert!(!skipped.is_empty());
        for r in &skipped {
            assert_eq!(r.fusion_pattern, "Conv2d_Add_ReLU");
            assert!(r.skip_reason.as_deref().unwrap_or("").contains(reason), "{:?}", r.skip_reason);
        }
        // everything else was measured
        assert!(cal.fusion_profiles.iter().any(|r| r.status == Status::Measured));
        assert!(cal
            .fusion_profiles
            .iter()
            .filter(|r| r.fusion_pattern != "Conv2d_Add_ReLU")
            .all(|r| r.status == Status::Measured));
        let n: usize = skipped.iter().map(|r| r.instances.len()).sum();
        let summary = String::from_utf8_lossy(&o.stdout);
        assert!(summary.contains(&format!("{n} skipped ({} distinct)", skipped.len())), "{summary}");
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn merge_keeps_each_run_with_its_metadata() {
    let a = tmp("merge-a");
    let b = tmp("merge-b");
    let lock = a.with_extension("lock");
    for (model, out) in [("fixtures/patterns/conv_bn_relu.onnx", &a), ("fixtures/patterns/add_relu.onnx", &b)] {
        let o = bench_cmd(&lock).args(quick(model, out)).output().unwrap();
        assert_eq!(o.status.code(), Some(ExitCode::Ok.code()), "{}", text(&o));
    }
    let merged = tmp("merged.json");
    let (ja, jb) = (a.join("calibration.json"), b.join("calibration.json"));
    let merge = |extra: &[&str]| {
        Command::new(BIN)
            .arg("merge")
            .args([ja.to_str().unwrap(), jb.to_str().unwrap(), "-o", merged.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = merge(&[]);
    assert_eq!(o.status.code(), Some(ExitCode::Ok.code()), "{}", text(&o));
    let m: fuseval::calibration::merge::MergedFile = serde_json::from_slice(&std::fs::read(&merged).unwrap()).unwrap();
    assert_eq!(m.kind, "merged");
    assert_eq!(m.runs.len(), 2);
    let (ra, rb) = (read_cal(&ja), read_cal(&jb));
    for (run, orig) in m.runs.iter().zip([&ra, &rb]) {
        assert_eq!(serde_json::to_value(run).unwrap(), serde_json::to_value(orig).unwrap());
    }
    assert!(m.runs[0].metadata.model.ends_with("conv_bn_relu.onnx"));
    assert!(m.runs[1].metadata.model.ends_with("add_relu.onnx"));
    assert!(m.runs[0].fusion_profiles.iter().any(|r| r.fusion_pattern == "Conv2d_BN_ReLU"));
    assert!(m.runs[1].fusion_profiles.iter().any(|r| r.fusion_pattern == "Add_ReLU"));

    // no overwrite without --force
    let before = std::fs::read(&merged).unwrap();
    let o = merge(&[]);
    assert_eq!(o.status.code(), Some(ExitCode::BadInput.code()), "{}", text(&o));
    assert!(text(&o).contains("--force"), "{}", text(&o));
    assert_eq!(std::fs::read(&merged).unwrap(), before);
    let o = merge(&["--force"]);
    assert_eq!(o.status.code(), Some(ExitCode::Ok.code()), "{}", text(&o));

    // a merged file merges again, its runs flattened
    let again = tmp("merged2.json");
    let o = Command::new(BIN)
        .args(["merge", merged.to_str().unwrap(), ja.to_str().unwrap(), "-o", again.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(ExitCode::Ok.code()), "{}", text(&o));
    let m2: fuseval::calibration::merge::MergedFile = serde_json::from_slice(&std::fs::read(&again).unwrap()).unwrap();
    assert_eq!(m2.runs.len(), 3);

    // not a calibration file: bad input
    let o = Command::new(BIN)
        .args(["merge", RESNET, ja.to_str().unwrap(), "-o", tmp("x.json").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(ExitCode::BadInput.code()), "{}", text(&o));
    for p in [&a, &b] {
        let _ = std::fs::remove_dir_all(p);
    }
    let _ = std::fs::remove_file(&merged);
    let _ = std::fs::remove_file(&again);
}

/// Hold the lock file as another run would: an exclusive flock, with a pid in it.
fn hold_lock(path: &Path, who: &str) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::create(path).unwrap();
    std::fs::write(path, who).unwrap();
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    f
}

#[test]
fn a_held_lock_fails_warns_or_waits() {
    let out = tmp("lock");
    let lock = out.with_extension("lock");
    let held = hold_lock(&lock, "pid 424242 (test)");

    let o = bench_cmd(&lock)
        .args(quick("fixtures/patterns/add_relu.onnx", &out))
        .args(["--lock", "fail"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(ExitCode::Locked.code()), "{}", text(&o));
    assert!(text(&o).contains("pid 424242"), "{}", text(&o));
    assert!(!out.join("calibration.json").exists());

    let o = bench_cmd(&lock)
        .args(quick("fixtures/patterns/add_relu.onnx", &out))
        .args(["--lock", "warn"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(ExitCode::Ok.code()), "{}", text(&o));
    assert!(text(&o).contains("pid 424242"), "{}", text(&o));
    std::fs::remove_dir_all(&out).unwrap();

    // wait (the default): it says who holds the lock, and goes on once it is released
    let mut child = bench_cmd(&lock)
        .args(quick("fixtures/patterns/add_relu.onnx", &out))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("waiting") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0, "bench did not wait for the lock");
    }
    assert!(line.contains("pid 424242"), "{line}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "bench did not wait for the lock");
    assert!(!out.join("calibration.json").exists());
    drop(held);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(ExitCode::Ok.code()));
    assert!(out.join("calibration.json").exists());
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_file(&lock);
}

#[test]
fn help_documents_the_exit_codes() {
    let o = Command::new(BIN).args(["bench", "--help"]).output().unwrap();
    let s = text(&o);
    for code in ["130", "--resume", "--lock"] {
        assert!(s.contains(code), "{s}");
    }
    let o = Command::new(BIN).arg("--help").output().unwrap();
    assert!(text(&o).contains("Exit codes"), "{}", text(&o));
}
