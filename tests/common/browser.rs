//! Headless Chromium for the report tests: the DOM after the page's script ran, and a screenshot.
//! `.ci/run` installs Debian's `chromium`; `FUSEVAL_CHROMIUM` names another browser binary.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The browser binary, or a panic that says how to get one.
pub fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("FUSEVAL_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
        if let Ok(o) = Command::new("which").arg(name).output() {
            if o.status.success() {
                return PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            }
        }
    }
    panic!("no Chromium found: install it (Debian: `apt-get install chromium`; .ci/run does) or set FUSEVAL_CHROMIUM")
}

fn url(page: &Path) -> String {
    format!("file://{}", page.canonicalize().expect("the page exists").display())
}

fn headless(page: &Path, extra: &[&str], profile: &Path) -> std::process::Output {
    let mut c = Command::new(chromium());
    c.args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url(page));
    c.output().expect("run chromium")
}

/// The DOM Chromium built from `page`, after its scripts ran.
pub fn dump_dom(page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let o = headless(page, &["--virtual-time-budget=3000", "--dump-dom"], profile.path());
    let dom = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success() && dom.contains("<html"),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    dom
}

/// A `w`×`h` screenshot of `page` into `png`.
pub fn screenshot(page: &Path, png: &Path, w: u32, h: u32) {
    let profile = tempfile::tempdir().unwrap();
    let o = headless(
        page,
        &[&format!("--screenshot={}", png.display()), &format!("--window-size={w},{h}"), "--virtual-time-budget=3000"],
        profile.path(),
    );
    assert!(o.status.success() && png.exists(), "chromium --screenshot failed: {}", String::from_utf8_lossy(&o.stderr));
}

/// Distinct colours, and the fraction of pixels that are not white, of an RGB(A) PNG.
pub fn png_stats(png: &Path) -> (usize, f64) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let step = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let mut colours = std::collections::HashSet::new();
    let mut not_white = 0usize;
    let px = bytes.len() / step;
    for p in bytes.chunks_exact(step) {
        colours.insert((p[0], p[1], p[2]));
        if p[0] < 250 || p[1] < 250 || p[2] < 250 {
            not_white += 1;
        }
    }
    (colours.len(), not_white as f64 / px.max(1) as f64)
}

/// How many times `needle` occurs in `hay`.
pub fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}
