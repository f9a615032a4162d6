//! The management web UI in a real browser: `tests/ui/browse.js` drives headless Chromium
//! (Debian's package, through playwright-core) against a broker started with
//! `--management-port`, as a person would: logs in, creates a queue, publishes a message and
//! gets it back, watches the overview's rate chart move, checks the phone layout, deletes the
//! queue, and takes screenshots.
//!
//! Provisioning: playwright-core goes under `target/` like the other client libraries
//! (`support::scripts`); Chromium is installed with apt-get when `/usr/bin/chromium` is missing
//! (the tests run as root on a fresh Debian machine). `CHROMIUM=/path` uses another binary.
//!
//! `WARREN_UI_SCREENSHOTS=1` copies the screenshots to `tests/ui/screenshots/` (committed, for
//! the README); otherwise they stay in a temporary directory removed after the test.

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use support::broker::{external_port, free_port};
use support::process::Process;
use support::scripts::playwright_node_modules;
use support::{Broker, TempDir};

/// Debian's Chromium.
const DEBIAN_CHROMIUM: &str = "/usr/bin/chromium";
/// Bounds `apt-get update` and `apt-get install chromium` each.
const APT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the management port may take to accept connections after startup.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
/// Bounds the browser script (it needs about 20 s; the chart waits for rate samples).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
/// The screenshots the script must leave (it takes a few more, for the phone layout).
const SCREENSHOTS: &[&str] = &["overview.png", "queues.png", "queue.png"];
/// Set to `1` to copy the screenshots into the repository.
const SCREENSHOTS_ENV: &str = "WARREN_UI_SCREENSHOTS";

#[test]
fn the_ui_works_in_a_browser() {
    if external_port().is_some() {
        eprintln!("skipped: the management port of an external broker is unknown");
        return;
    }
    let chromium = chromium();
    let node_modules = playwright_node_modules();
    let http_port = free_port();
    let broker = Broker::start(&["--management-port", &http_port.to_string()]);
    wait_for_listener(http_port);

    let shots = TempDir::new("ui-screenshots");
    let output = browse(http_port, shots.path(), &chromium, &node_modules);
    output.assert_success("tests/ui/browse.js (the browser test of the management UI)");
    eprintln!("{}", output.stdout);
    for name in SCREENSHOTS {
        assert!(
            shots.path().join(name).is_file(),
            "expected the script to save {name}, got no such file\nstdout:\n{}",
            output.stdout
        );
    }
    if std::env::var(SCREENSHOTS_ENV).as_deref() == Ok("1") {
        keep_screenshots(shots.path());
    }
    drop(broker);
}

/// Runs `tests/ui/browse.js` against the UI on `http_port`, saving screenshots in `shots`.
fn browse(
    http_port: u16,
    shots: &Path,
    chromium: &Path,
    node_modules: &Path,
) -> support::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/browse.js");
    let mut node = Command::new("node");
    node.arg(script)
        .arg(format!("http://127.0.0.1:{http_port}/"))
        .arg(shots)
        .env("NODE_PATH", node_modules)
        .env("CHROMIUM", chromium);
    Process::spawn(node, "tests/ui/browse.js")
        .unwrap_or_else(|e| panic!("expected to start node for tests/ui/browse.js, got {e}"))
        .finish(SCRIPT_TIMEOUT)
}

/// `$CHROMIUM`, else Debian's chromium, installed with apt-get if it is missing.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(DEBIAN_CHROMIUM);
    if !path.exists() {
        // A fresh machine's package lists may be empty or stale: update them first.
        apt_get(&["update", "-q"]);
        apt_get(&["install", "-y", "-q", "chromium"]);
    }
    assert!(
        path.exists(),
        "expected apt-get to install {DEBIAN_CHROMIUM} for the UI test, got no such file"
    );
    path
}

/// Runs `apt-get args`, failing the test with a message that says why Chromium is needed.
fn apt_get(args: &[&str]) {
    let what = format!("apt-get {}", args.join(" "));
    let mut command = Command::new("apt-get");
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    let output = Process::spawn(command, &what)
        .unwrap_or_else(|e| {
            panic!("the UI test needs Chromium ({DEBIAN_CHROMIUM}) but cannot run {what}: {e}")
        })
        .finish(APT_TIMEOUT);
    assert!(
        output.status.success(),
        "the UI test needs Chromium ({DEBIAN_CHROMIUM}) but {what} failed ({}); install it \
         (apt-get install chromium, as root) or set CHROMIUM=/path/to/chromium\nstdout:\n{}\nstderr:\n{}",
        output.status,
        output.stdout,
        output.stderr
    );
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
fn wait_for_listener(port: u16) {
    let deadline = Instant::now() + HTTP_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "expected the management API on 127.0.0.1:{port} within {HTTP_TIMEOUT:?}, got nothing"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Copies every PNG in `shots` to `tests/ui/screenshots/`.
fn keep_screenshots(shots: &Path) {
    let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/screenshots");
    std::fs::create_dir_all(&keep).unwrap_or_else(|e| panic!("expected to create {keep:?}: {e}"));
    let entries = std::fs::read_dir(shots).unwrap_or_else(|e| panic!("reading {shots:?}: {e}"));
    for entry in entries.map(|e| e.expect("a directory entry")) {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "png") {
            let to = keep.join(entry.file_name());
            std::fs::copy(&path, &to).unwrap_or_else(|e| panic!("copying {path:?} to {to:?}: {e}"));
            eprintln!("kept {}", to.display());
        }
    }
}
