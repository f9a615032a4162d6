//! Start-up refusals: a second broker must not share a port (every shard binds with
//! SO_REUSEPORT, which would silently split clients between two brokers) or a data directory.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fresh_dir, RestartableBroker};

/// Runs a second `warren` with `args`; returns its exit success and its stderr.
fn second_broker(args: &[String]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn warren");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("expected the second broker to refuse to start, got it running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("second broker output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_second_broker_on_the_same_port_refuses_to_start() {
    let Some(first) = RestartableBroker::start(&[]) else {
        return; // an external broker: nothing of ours to collide with
    };
    let other_dir = fresh_dir("second");
    let (ok, stderr) = second_broker(&[
        "--listen".into(),
        format!("127.0.0.1:{}", first.port()),
        "--data-dir".into(),
        other_dir.display().to_string(),
    ]);
    assert!(!ok, "expected a non-zero exit, got success");
    assert!(
        stderr.contains("Address already in use"),
        "expected 'Address already in use' on stderr, got {stderr:?}"
    );
    let _ = std::fs::remove_dir_all(other_dir);
}

#[test]
fn a_second_broker_on_the_same_data_dir_refuses_to_start() {
    let Some(first) = RestartableBroker::start(&[]) else {
        return;
    };
    let (ok, stderr) = second_broker(&[
        "--listen".into(),
        format!("127.0.0.1:{}", common::free_port()),
        "--data-dir".into(),
        first.data_dir().display().to_string(),
    ]);
    assert!(!ok, "expected a non-zero exit, got success");
    assert!(
        stderr.contains("in use by another Warren process"),
        "expected the data-directory lock error on stderr, got {stderr:?}"
    );
}
