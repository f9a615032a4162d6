//! Start-up: a second broker must not share a port (every shard binds with SO_REUSEPORT, which
//! would silently split clients between two brokers) or a data directory; and every broker the
//! harness starts, restarted ones included, runs with the test's environment (the broker reads
//! `WARREN_*` variables).

mod support;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::time::Duration;

use support::broker::{broker_command, free_port};
use support::process::Process;
use support::{RestartableBroker, TempDir};

/// How long a second broker may take to refuse to start.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a second `warren` on `port` and `data_dir`; returns its exit success and its stderr.
fn second_broker(port: u16, data_dir: &Path) -> (bool, String) {
    let mut second = Process::spawn(broker_command(port, data_dir, &[]), "the second broker")
        .unwrap_or_else(|e| panic!("expected to spawn warren, got {e}"));
    let Some(status) = second.wait_timeout(REFUSAL_TIMEOUT) else {
        second.kill();
        panic!(
            "expected the second broker to refuse to start, got it running after {REFUSAL_TIMEOUT:?}; output:\n{}",
            second.output()
        );
    };
    (status.success(), second.stdout_stderr().1)
}

#[test]
fn a_second_broker_on_the_same_port_refuses_to_start() {
    let Some(first) = RestartableBroker::start(&[]) else {
        return; // an external broker: nothing of ours to collide with
    };
    let other_dir = TempDir::new("second");
    let (ok, stderr) = second_broker(first.port(), other_dir.path());
    assert!(!ok, "expected a non-zero exit, got success");
    assert!(
        stderr.contains("Address already in use"),
        "expected 'Address already in use' on stderr, got {stderr:?}"
    );
}

#[test]
fn a_second_broker_on_the_same_data_dir_refuses_to_start() {
    let Some(first) = RestartableBroker::start(&[]) else {
        return;
    };
    let (ok, stderr) = second_broker(free_port(), first.data_dir());
    assert!(!ok, "expected a non-zero exit, got success");
    assert!(
        stderr.contains("in use by another Warren process"),
        "expected the data-directory lock error on stderr, got {stderr:?}"
    );
}

/// The environment of process `pid`, from /proc.
fn environment_of(pid: u32) -> BTreeMap<OsString, OsString> {
    let raw = std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|e| panic!("expected to read /proc/{pid}/environ, got {e}"));
    raw.split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| {
            let at = entry.iter().position(|b| *b == b'=')?;
            Some((
                OsString::from_vec(entry[..at].to_vec()),
                OsString::from_vec(entry[at + 1..].to_vec()),
            ))
        })
        .collect()
}

/// Asserts that the broker process `pid` has every variable of the test's environment, with
/// the same value.
fn assert_inherits_test_environment(pid: u32, when: &str) {
    let broker_env = environment_of(pid);
    let mut checked = 0;
    for (key, value) in std::env::vars_os() {
        assert_eq!(
            broker_env.get(&key),
            Some(&value),
            "expected the broker ({when}) to run with the test's {key:?}={value:?}, got {:?}",
            broker_env.get(&key)
        );
        checked += 1;
    }
    assert!(
        checked > 0 && broker_env.contains_key(&OsString::from("PATH")),
        "expected a test environment with PATH to compare against, got {checked} variables"
    );
}

#[test]
fn brokers_run_with_the_test_environment_also_after_a_restart() {
    let Some(mut broker) = RestartableBroker::start(&[]) else {
        return; // an external broker: its environment is not ours
    };
    let pid = broker.pid().expect("a running broker");
    assert_inherits_test_environment(pid, "first start");
    broker.restart_after_kill_9();
    let pid = broker.pid().expect("a running broker");
    assert_inherits_test_environment(pid, "after kill -9 and a restart");
    broker.restart_clean();
    let pid = broker.pid().expect("a running broker");
    assert_inherits_test_environment(pid, "after SIGTERM and a restart");
}
