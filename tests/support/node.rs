//! Node.js helpers for the amqplib tutorial tests: provisions amqplib
//! under `target/test-node` once, and runs the scripts in `tests/js/`.
//!
//! Provisioning is race-free across parallel test processes the same way
//! the harness builds its pika venv: each installer works in a private
//! staging directory and renames it into place; the rename is atomic, so
//! `target/test-node/node_modules` only ever appears complete, and a loser
//! of the race throws its copy away.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The amqplib version the tutorial scripts run with.
pub const AMQPLIB_VERSION: &str = "0.10";
/// Bounds `npm install`.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(180);

/// `target/test-node/node_modules`, installing amqplib on first use.
pub fn node_modules() -> PathBuf {
    static MODULES: OnceLock<PathBuf> = OnceLock::new();
    MODULES.get_or_init(provision).clone()
}

fn provision() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("test-node");
    let modules = root.join("node_modules");
    if modules.join("amqplib").join("package.json").exists() {
        return modules;
    }
    std::fs::create_dir_all(&root)
        .unwrap_or_else(|e| panic!("expected to create {root:?}, got {e}"));
    let staging = root.join(format!("staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .unwrap_or_else(|e| panic!("expected to create {staging:?}, got {e}"));
    let mut child = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(&staging)
        .arg(format!("amqplib@{AMQPLIB_VERSION}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("expected to run npm install, got {e}"));
    let (stdout, stderr) = drain(&mut child);
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("expected npm install amqplib to finish within {INSTALL_TIMEOUT:?}, got still running (killed)");
            }
        }
    };
    assert!(
        status.success(),
        "expected npm install amqplib@{AMQPLIB_VERSION} to succeed, got {status}:\n{}\n{}",
        stdout.recv().unwrap_or_default(),
        stderr.recv().unwrap_or_default()
    );
    if std::fs::rename(staging.join("node_modules"), &modules).is_err() {
        // Another process won the race; use its node_modules.
    }
    let _ = std::fs::remove_dir_all(&staging);
    assert!(
        modules.join("amqplib").exists(),
        "expected {modules:?}/amqplib after provisioning, got nothing"
    );
    modules
}

/// Reads a child's stdout and stderr to strings on their own threads.
fn drain(child: &mut Child) -> (Receiver<String>, Receiver<String>) {
    let spawn_reader = |pipe: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = String::new();
            let mut pipe = pipe;
            let _ = pipe.read_to_string(&mut buf);
            let _ = tx.send(buf);
        });
        rx
    };
    let out = spawn_reader(Box::new(child.stdout.take().expect("piped stdout")));
    let err = spawn_reader(Box::new(child.stderr.take().expect("piped stderr")));
    (out, err)
}

/// Path of a script in tests/js/.
pub fn js_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("js")
        .join(name)
}

/// What a finished script printed and how it exited.
#[derive(Debug)]
pub struct ScriptOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ScriptOutput {
    /// Panics with the script's output unless it exited 0.
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "expected {what} to exit 0, got {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }

    /// Lines of stdout containing `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.stdout
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

/// A running Node script whose stdout can be watched line by line. Killed
/// (through its `Child` handle) on drop.
pub struct NodeProcess {
    child: Option<Child>,
    name: String,
    lines: Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    stdout_done: Receiver<()>,
    stderr_done: Receiver<()>,
}

/// Starts `node tests/js/<script> args...` with NODE_PATH on the
/// provisioned node_modules.
pub fn spawn_node(script: &str, args: &[&str]) -> NodeProcess {
    let modules = node_modules();
    let mut child = Command::new("node")
        .arg(js_script(script))
        .args(args)
        .env("NODE_PATH", &modules)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("expected to start node {script}, got {e}"));
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let (line_tx, lines) = mpsc::channel();
    let (out_done_tx, stdout_done) = mpsc::channel();
    let (err_done_tx, stderr_done) = mpsc::channel();
    let out_pipe = child.stdout.take().expect("piped stdout");
    let err_pipe = child.stderr.take().expect("piped stderr");
    {
        let stdout = Arc::clone(&stdout);
        thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut s) = stdout.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
                let _ = line_tx.send(line);
            }
            let _ = out_done_tx.send(());
        });
    }
    {
        let stderr = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = String::new();
            let _ = BufReader::new(err_pipe).read_to_string(&mut buf);
            if let Ok(mut s) = stderr.lock() {
                s.push_str(&buf);
            }
            let _ = err_done_tx.send(());
        });
    }
    NodeProcess {
        child: Some(child),
        name: script.to_string(),
        lines,
        stdout,
        stderr,
        stdout_done,
        stderr_done,
    }
}

impl NodeProcess {
    /// Waits until the script prints a line containing `needle`; kills it
    /// and panics with its output if it does not within `timeout`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => {
                    if let Some(mut child) = self.child.take() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    let (stdout, stderr) = self.collect();
                    panic!(
                        "expected {} to print a line with {needle:?} within {timeout:?}, got none\nstdout:\n{stdout}\nstderr:\n{stderr}",
                        self.name
                    );
                }
            }
        }
    }

    /// Waits for the script to exit; kills it and panics if it does not
    /// within `timeout`.
    pub fn finish(mut self, timeout: Duration) -> ScriptOutput {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("running child");
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let (stdout, stderr) = self.collect();
                    panic!(
                        "expected {} to exit within {timeout:?}, got still running (killed)\nstdout:\n{stdout}\nstderr:\n{stderr}",
                        self.name
                    );
                }
            }
        };
        let (stdout, stderr) = self.collect();
        ScriptOutput {
            status,
            stdout,
            stderr,
        }
    }

    /// Stdout and stderr after the pipes closed (bounded wait).
    fn collect(&self) -> (String, String) {
        let _ = self.stdout_done.recv_timeout(Duration::from_secs(2));
        let _ = self.stderr_done.recv_timeout(Duration::from_secs(2));
        let out = self.stdout.lock().map(|s| s.clone()).unwrap_or_default();
        let err = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        (out, err)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `node tests/js/<script> args...` to completion within `timeout`.
pub fn run_node(script: &str, args: &[&str], timeout: Duration) -> ScriptOutput {
    spawn_node(script, args).finish(timeout)
}
