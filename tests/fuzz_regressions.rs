//! Every input the fuzzer (`fuzz/`) found crashing or hanging load → graph → pattern detection is kept in
//! `fixtures/bad/`: each must now end in a result or an error, without a panic, within a minute.

use std::sync::mpsc;
use std::time::Duration;

#[test]
fn fuzz_findings_stay_fixed() {
    let mut files: Vec<_> = std::fs::read_dir("fixtures/bad")
        .expect("fixtures/bad")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "fixtures/bad holds the fuzzer's findings");
    for f in files {
        let (tx, rx) = mpsc::channel();
        let path = f.clone();
        // a thread, so that a hang fails the test instead of stalling it; a panic ends the thread early
        std::thread::spawn(move || {
            let _ = fuseval::pipeline::prepare(&path, &[]);
            let _ = tx.send(());
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("prepare panicked on {}", f.display()),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("prepare hangs on {}", f.display()),
        }
    }
}
