//! The brokers under test.
//!
//! Each test starts its own broker on a free loopback port with a fresh data directory, so
//! tests run in parallel without sharing state. The broker is the binary cargo built for this
//! test run (the harness never builds anything), started with the test's own environment, so
//! `WARREN_*` settings reach it, and killed by PID through its `Child` handle (never by name)
//! when its handle drops.
//!
//! Setting `WARREN_TEST_AMQP_PORT` points every test at an already running broker on
//! `127.0.0.1:$WARREN_TEST_AMQP_PORT` instead (that is how the suite is checked against a
//! real RabbitMQ, see `tests/rabbitmq-node.sh`). Tests then share one broker, so they use
//! `Broker::queue_name` to keep their queues apart; tests that must restart or measure the
//! broker skip themselves.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::Duration;

use super::process::Process;
use super::{fresh_dir, unique_suffix};

/// How long the broker may take to print `Server startup complete`.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The line the broker prints once it accepts connections.
pub const STARTUP_LINE: &str = "Server startup complete";
/// How long a broker may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Environment variable that selects an external broker.
pub const EXTERNAL_PORT_ENV: &str = "WARREN_TEST_AMQP_PORT";
/// Set to keep a failed test's data directory (its path is printed) instead of removing it.
pub const KEEP_DATA_ENV: &str = "WARREN_TEST_KEEP_DATA";
/// How often a start is retried on another port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: u32 = 5;

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

/// `amqp://guest:guest@127.0.0.1:PORT/%2f`
pub fn amqp_url(port: u16) -> String {
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}

/// The `warren` binary cargo built for this test run, with the test's environment (never
/// cleared: `WARREN_*` variables reach the broker) and `args`.
pub fn warren_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warren"));
    command.args(args);
    command
}

/// `warren --listen 127.0.0.1:<port> --data-dir <data_dir>` plus `extra_args` (see
/// [`warren_command`]).
pub fn broker_command(port: u16, data_dir: &Path, extra_args: &[&str]) -> Command {
    let listen = format!("127.0.0.1:{port}");
    let data = data_dir.to_str().expect("a UTF-8 data directory");
    let mut command = warren_command(&["--listen", &listen, "--data-dir", data]);
    // Many brokers run at once: the HTTP listeners only where a test asks for them.
    for flag in ["--management-port", "--prometheus-port"] {
        if !extra_args.contains(&flag) {
            command.args([flag, "0"]);
        }
    }
    command.args(extra_args);
    command
}

/// A broker under test: a process this harness spawned, or an external broker named by
/// `WARREN_TEST_AMQP_PORT`.
pub struct Broker {
    port: u16,
    process: Option<Process>,
    /// A data directory of the broker's own, removed on drop.
    owned_dir: Option<PathBuf>,
}

impl Broker {
    /// Starts `warren --listen 127.0.0.1:<free port> --data-dir <fresh dir>` plus
    /// `extra_args`, and waits until it prints `Server startup complete`. With
    /// `WARREN_TEST_AMQP_PORT` set, spawns nothing and returns a handle to that broker
    /// (`extra_args` are then ignored).
    pub fn start(extra_args: &[&str]) -> Broker {
        Broker::start_with(extra_args, |_| {})
    }

    /// [`Broker::start`], with `setup` applied to the broker's command before it is spawned
    /// (a `pre_exec` hook, a change of environment, ...). With `WARREN_TEST_AMQP_PORT` set,
    /// spawns nothing: `setup` is ignored then, like `extra_args`.
    pub fn start_with(extra_args: &[&str], setup: impl Fn(&mut Command)) -> Broker {
        if let Some(port) = external_port() {
            return Broker {
                port,
                process: None,
                owned_dir: None,
            };
        }
        let data_dir = fresh_dir("data");
        let mut broker = start_on_some_port(free_port(), &data_dir, extra_args, &setup, |_, _| {})
            .unwrap_or_else(|e| panic!("expected warren to start, got: {e}"));
        broker.owned_dir = Some(data_dir);
        broker
    }

    /// Starts `warren --listen 127.0.0.1:<port> --data-dir <data_dir>` plus `extra_args`, its
    /// command changed by `setup` (see [`Broker::start_with`]), and waits until it prints
    /// `Server startup complete`. Unlike [`Broker::start`], the data
    /// directory belongs to the caller: it is kept when this broker stops or drops, so another
    /// broker can be started on it. Never uses an external broker.
    ///
    /// Errs, with everything the broker printed, if it exits before startup completes or does
    /// not complete it within `STARTUP_TIMEOUT` (it is killed then).
    pub fn try_start_on(
        port: u16,
        data_dir: &Path,
        extra_args: &[&str],
        setup: &dyn Fn(&mut Command),
    ) -> Result<Broker, String> {
        let mut command = broker_command(port, data_dir, extra_args);
        setup(&mut command);
        let mut process = Process::spawn(command, &format!("warren on port {port}"))
            .map_err(|e| format!("cannot spawn the warren binary: {e}"))?;
        match process.wait_for_line(None, STARTUP_LINE, STARTUP_TIMEOUT) {
            Ok(_) => Ok(Broker {
                port,
                process: Some(process),
                owned_dir: None,
            }),
            Err(why) => {
                let status = process.kill();
                Err(format!(
                    "expected `{STARTUP_LINE}`, got {why} (exit status {status}); output:\n{}",
                    process.output()
                ))
            }
        }
    }

    /// The AMQP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`
    pub fn amqp_url(&self) -> String {
        amqp_url(self.port)
    }

    /// The data directory of a broker this harness started (`None` for an external one).
    pub fn data_dir(&self) -> Option<&Path> {
        self.owned_dir.as_deref()
    }

    /// True when the tests run against an external broker.
    pub fn is_external(&self) -> bool {
        self.process.is_none()
    }

    /// `base` for a broker of our own (so the tutorials use their real queue names),
    /// `base-<unique suffix>` for an external broker shared by tests and kept across runs.
    pub fn queue_name(&self, base: &str) -> String {
        if self.is_external() {
            format!("{base}-{}", unique_suffix())
        } else {
            base.to_string()
        }
    }

    /// The PID of the broker process this harness spawned (`None` for an external broker).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(Process::pid)
    }

    /// Everything the spawned broker printed so far (stdout and stderr).
    pub fn output(&mut self) -> String {
        self.process
            .as_mut()
            .map(Process::output)
            .unwrap_or_default()
    }

    /// SIGKILL through the `Child` handle (never by name), then reaps the process. Returns how
    /// it ended and everything it printed. Panics for an external broker.
    pub fn kill_9(mut self) -> (ExitStatus, String) {
        let mut process = self.take_process();
        let status = process.kill();
        (status, process.output())
    }

    /// Clean stop: SIGTERM to this child's PID, then waits up to `STOP_TIMEOUT` for it to exit.
    /// Returns how it ended and everything it printed. If it is still running then, kills it
    /// (SIGKILL) and panics. Panics for an external broker.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let mut process = self.take_process();
        process.terminate();
        match process.wait_timeout(STOP_TIMEOUT) {
            Some(status) => (status, process.output()),
            None => {
                process.kill();
                panic!(
                    "expected the broker to exit within {STOP_TIMEOUT:?} of SIGTERM, got still running (killed); output:\n{}",
                    process.output()
                );
            }
        }
    }

    fn take_process(&mut self) -> Process {
        self.process
            .take()
            .expect("expected a broker spawned by the harness, got an external one")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            if thread::panicking() {
                eprintln!(
                    "--- broker output (port {}) ---\n{}",
                    self.port,
                    process.output()
                );
            }
            // Dropping the process kills it by PID, through its handle.
        }
        if let Some(dir) = self.owned_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// [`Broker::try_start_on`] at `port`, moving to another free port (and telling `moved`)
/// should `port` have been taken meanwhile by another test's broker.
fn start_on_some_port(
    port: u16,
    data_dir: &Path,
    extra_args: &[&str],
    setup: &dyn Fn(&mut Command),
    mut moved: impl FnMut(u16, &str),
) -> Result<Broker, String> {
    let mut port = port;
    for attempt in 1.. {
        match Broker::try_start_on(port, data_dir, extra_args, setup) {
            Err(e) if attempt < PORT_ATTEMPTS && e.contains("in use") => {
                moved(port, &e);
                eprintln!("warren: port {port} is taken, starting on another one");
                port = free_port();
            }
            result => return result,
        }
    }
    unreachable!("the loop returns")
}

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
        amqp_url(self.port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The running process's PID (`None` while stopped).
    pub fn pid(&self) -> Option<u32> {
        self.current.as_ref().and_then(Broker::pid)
    }

    /// How many processes were started on this data directory so far.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// SIGKILL (by the child's PID, through its handle) and reap. Panics if not running.
    pub fn kill_9(&mut self) -> ExitStatus {
        let (status, output) = self.take_current("kill -9").kill_9();
        self.record(&output, &format!("killed with SIGKILL: {status}"));
        status
    }

    /// SIGTERM and wait for the exit (bounded by `STOP_TIMEOUT`). Panics if not running.
    pub fn stop(&mut self) -> ExitStatus {
        let (status, output) = self.take_current("SIGTERM").terminate();
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
    pub fn output(&mut self) -> String {
        let mut all = self.history.clone();
        if let Some(current) = &mut self.current {
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
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut failed = Vec::new();
        let started = start_on_some_port(port, &self.dir, &args, &|_| {}, |port, e| {
            failed.push(format!("--- could not start on port {port} ---\n{e}\n"))
        });
        self.starts += 1 + failed.len() as u32;
        for failure in failed {
            self.history.push_str(&failure);
        }
        match started {
            Ok(broker) => {
                self.port = broker.port();
                self.current = Some(broker);
            }
            Err(e) => panic!(
                "expected warren to start with data dir {:?}, got: {e}\nearlier processes:\n{}",
                self.dir, self.history
            ),
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
