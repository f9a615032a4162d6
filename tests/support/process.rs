//! Child processes whose stdout and stderr are captured line by line: the brokers under test
//! and the client scripts.
//!
//! A process is stopped only through its `Child` handle (SIGKILL) or by signalling the PID of
//! a child not yet reaped (SIGTERM), so no other process can be hit; it is killed when its
//! handle drops. It inherits the test's environment.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the output of an ended process may take to reach the reader threads.
const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipe {
    Stdout,
    Stderr,
}

#[derive(Default)]
struct Captured {
    stdout: String,
    stderr: String,
    /// Both pipes, in the order the lines were read.
    all: String,
}

/// A running child process with its output captured.
pub struct Process {
    child: Option<Child>,
    name: String,
    lines: Receiver<(Pipe, String)>,
    captured: Arc<Mutex<Captured>>,
    pipes_closed: Receiver<()>,
    status: Option<ExitStatus>,
}

/// What a finished process printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics with the process's output unless it exited 0.
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

impl Process {
    /// Spawns `command` (stdin closed, stdout and stderr captured); `name` names it in failure
    /// messages.
    pub fn spawn(mut command: Command, name: &str) -> std::io::Result<Process> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let captured = Arc::new(Mutex::new(Captured::default()));
        let (line_tx, lines) = mpsc::channel();
        let (closed_tx, pipes_closed) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        forward_lines(
            stdout,
            Pipe::Stdout,
            line_tx.clone(),
            closed_tx.clone(),
            Arc::clone(&captured),
        );
        forward_lines(
            stderr,
            Pipe::Stderr,
            line_tx,
            closed_tx,
            Arc::clone(&captured),
        );
        Ok(Process {
            child: Some(child),
            name: name.to_string(),
            lines,
            captured,
            pipes_closed,
            status: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The PID while the process has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until the process prints a line containing `needle` (on `from`, or on either
    /// pipe) and returns it. Errs, saying what came instead, if the process exits first or no
    /// such line comes within `timeout`; the process keeps running then.
    pub fn wait_for_line(
        &mut self,
        from: Option<Pipe>,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let wanted =
            |pipe: Pipe, line: &str| from.is_none_or(|p| p == pipe) && line.contains(needle);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no such line within {timeout:?}"));
            }
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok((pipe, line)) if wanted(pipe, &line) => return Ok(line),
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                // Both pipes closed: the process is ending; wait for it below.
                Err(RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_millis(10)),
            }
            if let Some(status) = self.try_wait() {
                // It ended: look through what it printed last.
                let drain_until = Instant::now() + PIPE_DRAIN;
                while let Ok((pipe, line)) = self
                    .lines
                    .recv_timeout(drain_until.saturating_duration_since(Instant::now()))
                {
                    if wanted(pipe, &line) {
                        return Ok(line);
                    }
                }
                return Err(format!("exit ({status}) first"));
            }
        }
    }

    /// The exit status, if the process has ended (it is reaped then).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.status = Some(status);
                    self.child = None;
                }
            }
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL through the `Child` handle, then reaps the process; returns how it ended.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(mut child) = self.child.take() {
            // Not reaped yet, so the PID is still this child's.
            let _ = child.kill();
            let status = child
                .wait()
                .unwrap_or_else(|e| panic!("expected to reap {}, got {e}", self.name));
            self.status = Some(status);
        }
        self.status.expect("an ended process has a status")
    }

    /// Sends SIGTERM to the process's PID; false if it has already been reaped.
    pub fn terminate(&mut self) -> bool {
        if self.try_wait().is_some() {
            return false;
        }
        let child = self.child.as_ref().expect("a running child");
        // Not reaped yet, so the PID is still this child's (at worst a zombie).
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(
            rc,
            0,
            "expected kill(SIGTERM) on pid {pid} ({}) to succeed, got {}",
            self.name,
            std::io::Error::last_os_error()
        );
        true
    }

    /// Waits for the process to exit and returns its output; kills it and panics with its
    /// output if it does not exit within `timeout`.
    pub fn finish(mut self, timeout: Duration) -> Output {
        match self.wait_timeout(timeout) {
            Some(status) => {
                let (stdout, stderr) = self.stdout_stderr();
                Output {
                    status,
                    stdout,
                    stderr,
                }
            }
            None => {
                self.kill();
                let (stdout, stderr) = self.stdout_stderr();
                panic!(
                    "expected {} to exit within {timeout:?}, got still running (killed)\nstdout:\n{stdout}\nstderr:\n{stderr}",
                    self.name
                );
            }
        }
    }

    /// Everything the process printed so far, both pipes in the order read. Once it has
    /// ended, waits (briefly) for the pipes to be read to the end.
    pub fn output(&mut self) -> String {
        self.drain_if_ended();
        self.captured
            .lock()
            .map(|c| c.all.clone())
            .unwrap_or_default()
    }

    /// (stdout, stderr) so far, read to the end if the process has ended.
    pub fn stdout_stderr(&mut self) -> (String, String) {
        self.drain_if_ended();
        self.captured
            .lock()
            .map(|c| (c.stdout.clone(), c.stderr.clone()))
            .unwrap_or_default()
    }

    fn drain_if_ended(&mut self) {
        if self.try_wait().is_some() {
            let deadline = Instant::now() + PIPE_DRAIN;
            for _ in 0..2 {
                let left = deadline.saturating_duration_since(Instant::now());
                if self.pipes_closed.recv_timeout(left).is_err() {
                    break;
                }
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // By PID, through the handle: never by name.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads `source` line by line into `captured` and `lines` until EOF, then reports the pipe
/// closed.
fn forward_lines<R: Read + Send + 'static>(
    source: R,
    pipe: Pipe,
    lines: Sender<(Pipe, String)>,
    closed: Sender<()>,
    captured: Arc<Mutex<Captured>>,
) {
    thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut c) = captured.lock() {
                let own = match pipe {
                    Pipe::Stdout => &mut c.stdout,
                    Pipe::Stderr => &mut c.stderr,
                };
                own.push_str(&line);
                own.push('\n');
                c.all.push_str(&line);
                c.all.push('\n');
            }
            // Nobody may be listening any more; keep draining the pipe.
            let _ = lines.send((pipe, line));
        }
        let _ = closed.send(());
    });
}

/// Runs `command` to completion within `timeout` and panics, with its output, unless it exits
/// 0 (or if it cannot be started). `what` names it in the messages.
pub fn run_to_success(command: Command, what: &str, timeout: Duration) -> Output {
    let process = Process::spawn(command, what)
        .unwrap_or_else(|e| panic!("expected to start {what}, got {e}"));
    let output = process.finish(timeout);
    output.assert_success(what);
    output
}
