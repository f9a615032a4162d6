//! Where io_uring is refused (Docker's and containerd's default seccomp profiles,
//! `kernel.io_uring_disabled`), `--io auto` says so in one log line and serves on epoll, and
//! `--io uring` refuses to start with the same line.
//!
//! The broker is started under a seccomp filter that makes `io_uring_setup` fail with EPERM,
//! as Docker's default profile does, installed in the child between fork and exec.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

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

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// Starts warren with `io` under the filter; returns the child and its output lines.
fn start_without_io_uring(io: &str, port: u16) -> (Child, mpsc::Receiver<String>) {
    let data =
        std::env::temp_dir().join(format!("warren-io-fallback-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut command = Command::new(env!("CARGO_BIN_EXE_warren"));
    command
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--shards",
            "2",
            "--io",
            io,
        ])
        .arg("--data-dir")
        .arg(&data)
        .env_remove("WARREN_IO")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure only makes async-signal-safe syscalls (prctl, seccomp).
    unsafe { command.pre_exec(deny_io_uring_setup) };
    let mut child = command.spawn().expect("warren starts");
    let (tx, rx) = mpsc::channel();
    for out in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (child, rx)
}

/// Output lines until one contains `wanted` (or the process ends / 30 s pass).
fn lines_until(rx: &mpsc::Receiver<String>, wanted: &str) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        let done = line.contains(wanted);
        seen.push(line);
        if done {
            break;
        }
    }
    seen
}

#[test]
fn auto_falls_back_to_epoll_with_one_line_when_io_uring_setup_is_refused() {
    let port = free_port();
    let (mut child, rx) = start_without_io_uring("auto", port);
    let lines = lines_until(&rx, "Server startup complete");
    let refusals: Vec<&String> = lines
        .iter()
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
            && lines.iter().any(|l| l.contains("Server startup complete")),
        "expected the broker to start on epoll, got: {lines:#?}"
    );
    let body = serve_one_message(port);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        body, b"over epoll",
        "expected the message back through the epoll backend"
    );
}

#[test]
fn uring_refuses_to_start_with_the_same_line_when_io_uring_setup_is_refused() {
    let port = free_port();
    let (mut child, rx) = start_without_io_uring("uring", port);
    let status = child.wait().expect("warren exits");
    let lines: Vec<String> = rx.iter().collect();
    assert!(!status.success(), "expected a non-zero exit, got {status}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("io_uring is unavailable") && l.contains("--io epoll")),
        "expected the refusal to say why and how to fix it, got: {lines:#?}"
    );
}

/// Declares a queue, publishes one message and gets it back with lapin.
fn serve_one_message(port: u16) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        let conn = Connection::connect(&uri, ConnectionProperties::default())
            .await
            .expect("connects over epoll");
        let channel = conn.create_channel().await.expect("a channel");
        let q = "io-fallback";
        channel
            .queue_declare(q, QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("queue.declare");
        channel
            .basic_publish(
                "",
                q,
                BasicPublishOptions::default(),
                b"over epoll",
                BasicProperties::default(),
            )
            .await
            .expect("basic.publish");
        for _ in 0..100 {
            let got = channel
                .basic_get(q, BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get");
            if let Some(message) = got {
                return message.delivery.data.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Vec::new()
    })
}
