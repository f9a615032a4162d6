//! Where io_uring is refused (Docker's and containerd's default seccomp profiles,
//! `kernel.io_uring_disabled`), `--io auto` says so in one log line and serves on epoll, and
//! `--io uring` refuses to start with the same line.
//!
//! The broker is started under a seccomp filter that makes `io_uring_setup` fail with EPERM,
//! as Docker's default profile does, installed in the child between fork and exec, and
//! without `WARREN_IO` (CI sets it; here `--io` decides). Against an external broker
//! (`WARREN_TEST_AMQP_PORT`) the test that serves is skipped: no filter can be put on it.

mod support;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use lapin::BasicProperties;
use support::broker::{broker_command, free_port, STARTUP_LINE, STARTUP_TIMEOUT};
use support::lapin_client::{connect_channel, declare, get, publish};
use support::process::Process;
use support::{run_async, Broker, TempDir};

/// Installs a seccomp filter on the calling thread (and what it execs) that fails
/// io_uring_setup with EPERM and allows everything else.
fn deny_io_uring_setup() -> std::io::Result<()> {
    const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let nr = libc::SYS_io_uring_setup as u32;
    let filter = [
        // A = seccomp_data.nr
        libc::sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 1,
            k: nr,
        },
        libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl and seccomp on the calling (child) process with a valid, live program.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mode = libc::SECCOMP_SET_MODE_FILTER;
        if libc::syscall(
            libc::SYS_seccomp,
            mode,
            0,
            &program as *const libc::sock_fprog,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs the broker under the filter, without `WARREN_IO`.
fn without_io_uring(command: &mut Command) {
    command.env_remove("WARREN_IO");
    // SAFETY: the closure only makes async-signal-safe syscalls (prctl, seccomp).
    unsafe { command.pre_exec(deny_io_uring_setup) };
}

/// The broker's arguments with `--io io`.
fn io_args(io: &str) -> [&str; 4] {
    ["--shards", "2", "--io", io]
}

#[test]
fn auto_falls_back_to_epoll_with_one_line_when_io_uring_setup_is_refused() {
    let mut broker = Broker::start_with(&io_args("auto"), without_io_uring);
    if broker.is_external() {
        return; // no filter can be put on an external broker
    }
    // What it printed up to `Server startup complete`.
    let output = broker.output();
    let started = output.lines().position(|l| l.contains(STARTUP_LINE));
    let lines: Vec<&str> = output
        .lines()
        .take(started.map_or(usize::MAX, |i| i + 1))
        .collect();
    let refusals: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("io_uring is unavailable"))
        .collect();
    assert_eq!(
        refusals.len(),
        1,
        "expected exactly one line saying io_uring is unavailable, got: {lines:#?}"
    );
    assert!(
        refusals[0].contains("running on epoll instead") && refusals[0].contains("seccomp"),
        "expected the line to name the fallback and the fix, got: {}",
        refusals[0]
    );
    assert!(
        lines.iter().any(|l| l.contains("on epoll"))
            && lines.iter().any(|l| l.contains(STARTUP_LINE)),
        "expected the broker to start on epoll, got: {lines:#?}"
    );
    let url = broker.amqp_url();
    run_async(Duration::from_secs(60), async {
        let body = serve_one_message(&url).await;
        assert_eq!(
            body, b"over epoll",
            "expected the message back through the epoll backend"
        );
    });
}

#[test]
fn uring_refuses_to_start_with_the_same_line_when_io_uring_setup_is_refused() {
    let data_dir = TempDir::new("io-fallback");
    let mut command = broker_command(free_port(), data_dir.path(), &io_args("uring"));
    without_io_uring(&mut command);
    let broker = Process::spawn(command, "warren --io uring")
        .unwrap_or_else(|e| panic!("expected to spawn warren, got {e}"));
    let output = broker.finish(STARTUP_TIMEOUT);
    let lines: Vec<&str> = output.stdout.lines().chain(output.stderr.lines()).collect();
    let status = output.status;
    assert!(!status.success(), "expected a non-zero exit, got {status}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("io_uring is unavailable") && l.contains("--io epoll")),
        "expected the refusal to say why and how to fix it, got: {lines:#?}"
    );
}

/// Declares a queue, publishes one message and gets it back with lapin.
async fn serve_one_message(url: &str) -> Vec<u8> {
    let (_connection, channel) = connect_channel(url).await;
    let q = "io-fallback";
    declare(&channel, q, false).await;
    publish(&channel, "", q, b"over epoll", BasicProperties::default()).await;
    for _ in 0..100 {
        if let Some(delivery) = get(&channel, q, true).await {
            return delivery.data;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Vec::new()
}
