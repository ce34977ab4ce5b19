//! Records the git commit the binary is built from (and whether the tree had uncommitted changes), so
//! that every result names the code that made it (`Metadata::fuseval_commit`).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // uncommitted changes to tracked files, or new files git does not ignore
    let dirty = git(&["status", "--porcelain", "--untracked-files=normal"]).is_some_and(|s| !s.is_empty());
    println!("cargo:rustc-env=FUSEVAL_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=FUSEVAL_GIT_DIRTY={}", if dirty { "1" } else { "0" });
    for p in ["src", "Cargo.toml", "Cargo.lock", "build.rs", ".git/HEAD", ".git/index", ".git/refs"] {
        println!("cargo:rerun-if-changed={p}");
    }
}
