//! Shared harness for Warren's integration tests.
//!
//! Each test starts its own broker (`Broker::start`) on a free loopback port
//! with a fresh data directory, so tests run in parallel without sharing
//! state. The broker is the binary cargo built for this test run; the
//! harness never builds anything itself and never kills anything by name:
//! the child is killed through its `Child` handle when the `Broker` drops.
//!
//! Setting `WARREN_TEST_AMQP_PORT` points every test at an already running
//! broker on `127.0.0.1:$WARREN_TEST_AMQP_PORT` instead (that is how the
//! suite is checked against a real RabbitMQ, see `tests/rabbitmq-node.sh`).
//! Tests then share one broker, so they use `Broker::queue_name` to keep
//! their queues apart.
//!
//! The Python helpers run the pika tutorial scripts in `tests/py/` from a
//! virtualenv under `target/test-venv`, created once and shared by all tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the broker may take to print `Server startup complete`.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The line the broker prints once it accepts connections.
pub const STARTUP_LINE: &str = "Server startup complete";
/// Environment variable that selects an external broker.
pub const EXTERNAL_PORT_ENV: &str = "WARREN_TEST_AMQP_PORT";

/// A broker under test: a child process this harness spawned, or an
/// external broker named by `WARREN_TEST_AMQP_PORT`.
pub struct Broker {
    port: u16,
    child: Option<Child>,
    data_dir: Option<PathBuf>,
    output: Arc<Mutex<String>>,
}

impl Broker {
    /// Starts `warren --listen 127.0.0.1:<free port> --data-dir <fresh dir>`
    /// plus `extra_args`, and waits until it prints `Server startup complete`.
    /// With `WARREN_TEST_AMQP_PORT` set, spawns nothing and returns a handle
    /// to that broker (`extra_args` are then ignored).
    pub fn start(extra_args: &[&str]) -> Broker {
        if let Some(port) = external_port() {
            return Broker {
                port,
                child: None,
                data_dir: None,
                output: Arc::new(Mutex::new(String::new())),
            };
        }

        let port = free_port();
        let data_dir = fresh_dir("data");
        let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("expected to spawn the warren binary, got {e}"));

        let output = Arc::new(Mutex::new(String::new()));
        let (line_tx, line_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        forward_lines(stdout, line_tx.clone(), Arc::clone(&output));
        forward_lines(stderr, line_tx, Arc::clone(&output));

        let mut broker = Broker {
            port,
            child: Some(child),
            data_dir: Some(data_dir),
            output,
        };
        broker.wait_for_startup(&line_rx);
        broker
    }

    fn wait_for_startup(&mut self, lines: &Receiver<String>) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "expected `{STARTUP_LINE}` within {STARTUP_TIMEOUT:?}, got none; output:\n{}",
                    self.output()
                );
            }
            match lines.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) if line.contains(STARTUP_LINE) => return,
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {}
            }
            let child = self.child.as_mut().expect("spawned broker");
            if let Ok(Some(status)) = child.try_wait() {
                // Let the reader threads catch the last lines.
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "expected the broker to print `{STARTUP_LINE}`, got exit ({status}); output:\n{}",
                    self.output()
                );
            }
        }
    }

    /// The AMQP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// True when the tests run against an external broker.
    pub fn is_external(&self) -> bool {
        self.child.is_none()
    }

    /// `base` for a broker of our own (so the tutorials use their real queue
    /// names), `base-<unique suffix>` for an external broker shared by tests
    /// and kept across runs.
    pub fn queue_name(&self, base: &str) -> String {
        if self.is_external() {
            format!("{base}-{}", unique_suffix())
        } else {
            base.to_string()
        }
    }

    /// Everything the spawned broker printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if thread::panicking() {
                eprintln!(
                    "--- broker output (port {}) ---\n{}",
                    self.port,
                    self.output()
                );
            }
            // By PID, through the handle: never by name.
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The external broker's port, if `WARREN_TEST_AMQP_PORT` is set.
pub fn external_port() -> Option<u16> {
    let value = std::env::var(EXTERNAL_PORT_ENV).ok()?;
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    Some(value.parse().unwrap_or_else(|e| {
        panic!("expected {EXTERNAL_PORT_ENV} to be a port, got {value:?} ({e})")
    }))
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A suffix unique across processes and calls: pid, a counter and the clock.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{n}-{}", std::process::id(), nanos % 1_000_000_000_000)
}

/// A fresh, empty directory under cargo's target tmp dir.
pub fn fresh_dir(kind: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("warren-{kind}-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("expected to create {dir:?}, got {e}"));
    dir
}

/// Reads `source` line by line into `output` and `lines` until EOF.
fn forward_lines<R: Read + Send + 'static>(
    source: R,
    lines: mpsc::Sender<String>,
    output: Arc<Mutex<String>>,
) {
    thread::spawn(move || {
        let reader = BufReader::new(source);
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Ok(mut out) = output.lock() {
                out.push_str(&line);
                out.push('\n');
            }
            // The receiver may be gone (startup seen); keep draining the pipe.
            let _ = lines.send(line);
        }
    });
}

// ---------------------------------------------------------------------------
// Python (pika) helpers
// ---------------------------------------------------------------------------

/// The pika version the tutorial scripts run with.
pub const PIKA_VERSION: &str = "1.3.2";

/// `target/test-venv/bin/python`, creating the venv with pika on first use.
///
/// Creation is race-free across parallel test processes: each builds its own
/// venv in a private directory and renames it into place; the rename is
/// atomic, so `target/test-venv` only ever appears complete. A loser of the
/// race throws its copy away.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(provision_venv).clone()
}

fn provision_venv() -> PathBuf {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let venv = target.join("test-venv");
    let python = venv.join("bin").join("python");
    if python.exists() {
        return python;
    }
    let staging = target.join(format!("test-venv.tmp-{}", unique_suffix()));
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("expected to run {what}, got {e}"));
        assert!(
            out.status.success(),
            "expected {what} to succeed, got {}:\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&staging),
        "python3 -m venv",
    );
    run(
        Command::new(staging.join("bin").join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(format!("pika=={PIKA_VERSION}")),
        "pip install pika",
    );
    // A venv records its own path in bin/ scripts, but `bin/python -m ...`
    // and plain script runs work from the renamed directory.
    if std::fs::rename(&staging, &venv).is_err() {
        // Another process won the race; use its venv.
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        python.exists(),
        "expected {python:?} after provisioning, got nothing"
    );
    python
}

/// Path of a script in tests/py/.
pub fn py_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("py")
        .join(name)
}

/// What a finished Python script printed and how it exited.
#[derive(Debug)]
pub struct PyOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl PyOutput {
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

/// A running Python script whose stdout can be watched line by line.
/// Killed (by its `Child` handle) on drop.
pub struct PyProcess {
    child: Option<Child>,
    name: String,
    lines: Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    stdout_done: Receiver<()>,
    stderr_done: Receiver<()>,
}

/// Starts `tests/py/<script> args...` with the venv's Python.
pub fn spawn_python(script: &str, args: &[&str]) -> PyProcess {
    let python = python();
    let mut child = Command::new(&python)
        .arg("-u")
        .arg(py_script(script))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("expected to start {script}, got {e}"));
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
    PyProcess {
        child: Some(child),
        name: script.to_string(),
        lines,
        stdout,
        stderr,
        stdout_done,
        stderr_done,
    }
}

impl PyProcess {
    /// Waits until the script prints a line containing `needle`; panics with
    /// its output if it does not within `timeout`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => {
                    let snapshot = self.kill_and_collect();
                    panic!(
                        "expected {} to print a line with {needle:?} within {timeout:?}, got none\nstdout:\n{}\nstderr:\n{}",
                        self.name, snapshot.stdout, snapshot.stderr
                    );
                }
            }
        }
    }

    /// Waits for the script to exit; kills it and panics if it does not
    /// within `timeout`.
    pub fn finish(mut self, timeout: Duration) -> PyOutput {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("running child");
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let out = self.collect();
                    panic!(
                        "expected {} to exit within {timeout:?}, got still running (killed)\nstdout:\n{}\nstderr:\n{}",
                        self.name, out.0, out.1
                    );
                }
            }
        };
        let (stdout, stderr) = self.collect();
        PyOutput {
            status,
            stdout,
            stderr,
        }
    }

    fn kill_and_collect(&mut self) -> PyOutput {
        let mut child = self.child.take().expect("running child");
        let _ = child.kill();
        let status = child.wait().expect("wait for killed child");
        let (stdout, stderr) = self.collect();
        PyOutput {
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

impl Drop for PyProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `tests/py/<script> args...` to completion (bounded by `timeout`).
pub fn run_python(script: &str, args: &[&str], timeout: Duration) -> PyOutput {
    spawn_python(script, args).finish(timeout)
}

/// True if a TCP connection to 127.0.0.1:`port` succeeds.
pub fn port_accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_ok()
}

// ---------------------------------------------------------------------------
// Brokers that are stopped and started again on the same data directory
// ---------------------------------------------------------------------------

/// How long a broker may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

impl Broker {
    /// Starts `warren --listen 127.0.0.1:<port> --data-dir <data_dir>` plus `extra_args` and
    /// waits until it prints `Server startup complete`. Unlike [`Broker::start`], the data
    /// directory belongs to the caller: it is kept when this broker stops or drops, so another
    /// broker can be started on it. Never uses an external broker.
    ///
    /// Errs, with everything the broker printed, if it exits before startup completes or does
    /// not complete it within `STARTUP_TIMEOUT` (it is killed then).
    pub fn try_start_on(port: u16, data_dir: &Path, extra_args: &[&str]) -> Result<Broker, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot spawn the warren binary: {e}"))?;
        let output = Arc::new(Mutex::new(String::new()));
        let (line_tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        forward_lines(stdout, line_tx.clone(), Arc::clone(&output));
        forward_lines(stderr, line_tx, Arc::clone(&output));
        let mut broker = Broker {
            port,
            child: Some(child),
            data_dir: None,
            output,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let (status, output) = broker.kill_9_with_output();
                return Err(format!(
                    "no `{STARTUP_LINE}` within {STARTUP_TIMEOUT:?} (killed: {status}); output:\n{output}"
                ));
            }
            match lines.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) if line.contains(STARTUP_LINE) => return Ok(broker),
                Ok(_) | Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
            }
            let child = broker.child.as_mut().expect("spawned broker");
            if let Ok(Some(status)) = child.try_wait() {
                broker.child = None;
                // Let the reader threads catch the last lines.
                thread::sleep(Duration::from_millis(100));
                return Err(format!(
                    "exited ({status}) before `{STARTUP_LINE}`; output:\n{}",
                    broker.output()
                ));
            }
        }
    }

    /// [`Broker::try_start_on`], panicking on failure.
    pub fn start_on(port: u16, data_dir: &Path, extra_args: &[&str]) -> Broker {
        Broker::try_start_on(port, data_dir, extra_args).unwrap_or_else(|e| {
            panic!("expected warren to start on port {port} with data dir {data_dir:?}, got: {e}")
        })
    }

    /// The PID of the broker process this harness spawned (`None` for an external broker).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL through the `Child` handle (never by name), then reaps the process. Returns how
    /// it ended. Panics for an external broker.
    pub fn kill_9(self) -> ExitStatus {
        self.kill_9_with_output().0
    }

    /// [`Broker::kill_9`], also returning everything the broker printed.
    pub fn kill_9_with_output(mut self) -> (ExitStatus, String) {
        let mut child = self
            .child
            .take()
            .expect("expected a broker spawned by the harness, got an external one");
        // A child not yet reaped keeps its PID, so this cannot hit another process.
        let _ = child.kill();
        let status = child
            .wait()
            .unwrap_or_else(|e| panic!("expected to reap the killed broker, got {e}"));
        thread::sleep(Duration::from_millis(50));
        (status, self.output())
    }

    /// Clean stop: SIGTERM to this child's PID, then waits up to `STOP_TIMEOUT` for it to exit
    /// and returns how it ended. If it is still running then, kills it (SIGKILL) and panics.
    /// Panics for an external broker.
    pub fn terminate(self) -> ExitStatus {
        self.terminate_with_output().0
    }

    /// [`Broker::terminate`], also returning everything the broker printed.
    pub fn terminate_with_output(mut self) -> (ExitStatus, String) {
        let mut child = self
            .child
            .take()
            .expect("expected a broker spawned by the harness, got an external one");
        if let Ok(Some(status)) = child.try_wait() {
            return (status, self.output());
        }
        // Not reaped yet, so the PID is still this child's (at worst a zombie).
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(
            rc,
            0,
            "expected kill(SIGTERM) on pid {pid} to succeed, got {}",
            std::io::Error::last_os_error()
        );
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    thread::sleep(Duration::from_millis(100));
                    panic!(
                        "expected the broker (pid {pid}) to exit within {STOP_TIMEOUT:?} of SIGTERM, got still running (killed); output:\n{}",
                        self.output()
                    );
                }
            }
        };
        thread::sleep(Duration::from_millis(50));
        (status, self.output())
    }
}

/// Set to keep a failed test's data directory (its path is printed) instead of removing it.
pub const KEEP_DATA_ENV: &str = "WARREN_TEST_KEEP_DATA";

/// A broker whose data directory outlives its processes: killed (SIGKILL) or stopped
/// (SIGTERM), then started again on the same directory, port and arguments. The directory is
/// removed on drop (kept if the test panics and `WARREN_TEST_KEEP_DATA` is set). Everything
/// each process printed is kept and shown if the test panics.
pub struct RestartableBroker {
    dir: PathBuf,
    args: Vec<String>,
    port: u16,
    current: Option<Broker>,
    /// Output of the processes that already ended, oldest first.
    history: String,
    starts: u32,
}

impl RestartableBroker {
    /// Starts `warren` on a free port and a fresh data directory with `extra_args`. Returns
    /// `None` when the tests run against an external broker (`WARREN_TEST_AMQP_PORT`), which
    /// the harness cannot restart.
    pub fn start(extra_args: &[&str]) -> Option<RestartableBroker> {
        if external_port().is_some() {
            return None;
        }
        let mut broker = RestartableBroker {
            dir: fresh_dir("durable"),
            args: extra_args.iter().map(|s| s.to_string()).collect(),
            port: free_port(),
            current: None,
            history: String::new(),
            starts: 0,
        };
        broker.start_again();
        Some(broker)
    }

    /// The AMQP port of the current (or last) process.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f` for the current (or last) process.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The running process's PID (`None` while stopped).
    pub fn pid(&self) -> Option<u32> {
        self.current.as_ref().and_then(Broker::pid)
    }

    pub fn is_running(&self) -> bool {
        self.current.is_some()
    }

    /// How many processes were started on this data directory so far.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// SIGKILL (by the child's PID, through its handle) and reap. Panics if not running.
    pub fn kill_9(&mut self) -> ExitStatus {
        let broker = self.take_current("kill -9");
        let (status, output) = broker.kill_9_with_output();
        self.record(&output, &format!("killed with SIGKILL: {status}"));
        status
    }

    /// SIGTERM and wait for the exit (bounded by `STOP_TIMEOUT`). Panics if not running.
    pub fn stop(&mut self) -> ExitStatus {
        let broker = self.take_current("SIGTERM");
        let (status, output) = broker.terminate_with_output();
        self.record(&output, &format!("stopped with SIGTERM: {status}"));
        status
    }

    /// Starts a new process on the same data directory and port (and arguments), waiting for
    /// `Server startup complete`. Should the port have been taken meanwhile (by another test's
    /// broker), moves to a free port; `port()` and `amqp_url()` follow. Panics if already
    /// running or if the broker does not start.
    pub fn start_again(&mut self) {
        self.start_on(self.port);
    }

    /// Starts a new process on the same data directory (and arguments) on another free port.
    pub fn start_again_on_new_port(&mut self) {
        self.start_on(free_port());
    }

    /// SIGKILL, then start again on the same data directory and port.
    pub fn restart_after_kill_9(&mut self) {
        self.kill_9();
        self.start_again();
    }

    /// SIGTERM (asserting a clean exit), then start again on the same data directory and port.
    pub fn restart_clean(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "expected the broker to exit 0 after SIGTERM, got {status}; output:\n{}",
            self.output()
        );
        self.start_again();
    }

    /// Everything every process on this data directory printed, oldest first.
    pub fn output(&self) -> String {
        let mut all = self.history.clone();
        if let Some(current) = &self.current {
            all.push_str(&format!(
                "--- process #{} (port {}, running) ---\n",
                self.starts, self.port
            ));
            all.push_str(&current.output());
        }
        all
    }

    fn start_on(&mut self, port: u16) {
        assert!(
            self.current.is_none(),
            "expected the broker to be stopped before starting it again"
        );
        let owned = self.args.clone();
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        let mut port = port;
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.starts += 1;
            match Broker::try_start_on(port, &self.dir, &args) {
                Ok(broker) => {
                    self.port = port;
                    self.current = Some(broker);
                    return;
                }
                Err(e) if attempts < 5 && e.contains("in use") => {
                    self.record(&e, &format!("could not start on port {port}"));
                    eprintln!("warren: port {port} is taken, starting on another one");
                    port = free_port();
                }
                Err(e) => panic!(
                    "expected warren to start on port {port} with data dir {:?}, got: {e}\nearlier processes:\n{}",
                    self.dir, self.history
                ),
            }
        }
    }

    fn take_current(&mut self, what: &str) -> Broker {
        self.current
            .take()
            .unwrap_or_else(|| panic!("expected a running broker to {what}, got none"))
    }

    fn record(&mut self, output: &str, how: &str) {
        self.history.push_str(&format!(
            "--- process #{} (port {}), {how} ---\n{output}",
            self.starts, self.port
        ));
    }
}

impl Drop for RestartableBroker {
    fn drop(&mut self) {
        let keep = thread::panicking() && std::env::var_os(KEEP_DATA_ENV).is_some();
        if thread::panicking() {
            eprintln!(
                "--- earlier broker processes on {:?} ---\n{}",
                self.dir, self.history
            );
        }
        // Kills the running process, if any (by PID, through its handle).
        drop(self.current.take());
        if keep {
            eprintln!("data directory kept: {:?}", self.dir);
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
