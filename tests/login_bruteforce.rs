//! A login brute force from one address, mixing wrong passwords with malformed SASL responses
//! (random bytes, empty, 64 KiB, NULs only, AMQPLAIN tables with wrong types) over raw TCP and
//! wrong passwords through lapin. The broker must stay up, refuse every attempt with
//! RabbitMQ's connection.close 403 ACCESS_REFUSED, lock the address out after
//! `--login-failures-max` failures (even the right password) until `--login-failure-window`
//! has passed, never log a password, and keep its memory bounded.
//!
//! Warren only: the lockout flags are Warren's (RabbitMQ has no per-address limit).

mod support;

use std::time::{Duration, Instant};

use lapin::{Connection, ConnectionProperties};
use support::raw::{self, Args, Ending};
use support::{run_async, Broker};

const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts over raw TCP; memory is measured after the first `WARM_UP` of them.
const ATTEMPTS: usize = 3000;
const WARM_UP: usize = 300;
/// Growth of the broker's resident memory allowed over the attempts after warm-up.
const RSS_GROWTH_MAX_KIB: u64 = 64 * 1024;
const FAILURES_MAX: &str = "5";
const WINDOW_SECS: u64 = 2;
/// In every password the test sends: the log must never show it.
const SECRET: &str = "pw-SECRET";

fn refusal(mechanism: &str) -> String {
    format!(
        "ACCESS_REFUSED - Login was refused using authentication mechanism {mechanism}. \
         For details see the broker logfile."
    )
}

/// A small xorshift generator: the same "random" responses on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// An AMQPLAIN response: a field table without its length prefix.
fn amqplain(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, kind, value) in entries {
        out.push(key.len() as u8);
        out.extend_from_slice(key.as_bytes());
        out.push(*kind);
        out.extend_from_slice(value);
    }
    out
}

fn long_string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

/// Attempt `i`: (mechanism, response), one of eight kinds, none of them a valid login.
fn attempt_response(i: usize, rng: &mut Rng) -> (&'static str, Vec<u8>) {
    let password = format!("{SECRET}-{i}");
    match i % 8 {
        0 => ("PLAIN", format!("\0guest\0{password}").into_bytes()),
        1 => {
            let len = 1 + (rng.next() % 300) as usize;
            ("PLAIN", rng.bytes(len))
        }
        2 => ("PLAIN", Vec::new()),
        3 => {
            let huge = format!("\0guest\0{password}{}", "x".repeat(64 * 1024));
            ("PLAIN", huge.into_bytes())
        }
        4 => ("PLAIN", vec![0; 1 + i % 16]),
        5 => {
            let wrong_types = amqplain(&[
                ("LOGIN", b'I', &7i32.to_be_bytes()),
                ("PASSWORD", b'F', &0u32.to_be_bytes()),
            ]);
            ("AMQPLAIN", wrong_types)
        }
        6 => {
            let wrong = amqplain(&[
                ("LOGIN", b'S', &long_string("guest")),
                ("PASSWORD", b'S', &long_string(&password)),
            ]);
            ("AMQPLAIN", wrong)
        }
        _ => {
            let len = (rng.next() % 200) as usize;
            ("AMQPLAIN", rng.bytes(len))
        }
    }
}

/// Protocol header and connection.start-ok with `response`; how the broker answered.
fn start_ok(port: u16, mechanism: &str, response: &[u8]) -> raw::Client {
    let mut client = raw::Client::tcp(port, "the guesser");
    client.write_all(raw::PROTOCOL_HEADER);
    client.expect(0, raw::CONNECTION_START);
    let args = Args::new()
        .table(&[("product", raw::s("brute force"))])
        .short(mechanism)
        .long(response)
        .short("en_US");
    client.send(0, raw::CONNECTION_START_OK, args);
    client
}

/// The attempt must end in connection.close 403 with RabbitMQ's text.
fn expect_refused(port: u16, mechanism: &str, response: &[u8], what: &str) {
    let mut client = start_ok(port, mechanism, response);
    match client.connection_ending() {
        Ending::Close {
            reply_code,
            reply_text,
        } => assert_eq!(
            (reply_code, reply_text.as_str()),
            (403, refusal(mechanism).as_str()),
            "expected {what} to be refused with 403"
        ),
        other => panic!("expected connection.close 403 for {what}, got {other:?}"),
    }
}

/// The right password: connection.tune comes.
fn expect_accepted(port: u16) {
    let mut client = start_ok(port, "PLAIN", b"\0guest\0guest");
    client.expect(0, raw::CONNECTION_TUNE);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("expected the broker (pid {pid}) to be alive, got {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

async fn lapin_login(port: u16, password: &str) -> Result<(), String> {
    let url = format!("amqp://guest:{password}@127.0.0.1:{port}/%2f");
    let attempt = Connection::connect(&url, ConnectionProperties::default());
    let connection = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = connection.close(200, "bye").await;
    Ok(())
}

/// Waits out the failure window (counted from its first failure, long past).
fn wait_out_the_window() {
    std::thread::sleep(Duration::from_millis(WINDOW_SECS * 1000 + 300));
}

#[test]
fn brute_force_with_malformed_responses_is_refused_and_harmless() {
    let window = WINDOW_SECS.to_string();
    let args = [
        "--login-failures-max",
        FAILURES_MAX,
        "--login-failure-window",
        &window,
    ];
    let mut broker = Broker::start(&args);
    let Some(pid) = broker.pid() else {
        eprintln!("skipped: the lockout flags are Warren's");
        return;
    };
    let port = broker.port();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let mut rss_after_warm_up = 0;
    for i in 0..ATTEMPTS {
        if i == WARM_UP {
            rss_after_warm_up = rss_kib(pid);
        }
        let (mechanism, response) = attempt_response(i, &mut rng);
        expect_refused(
            port,
            mechanism,
            &response,
            &format!("attempt {i} ({} bytes)", response.len()),
        );
    }
    let grown = rss_kib(pid).saturating_sub(rss_after_warm_up);
    assert!(
        grown < RSS_GROWTH_MAX_KIB,
        "expected resident memory to stay bounded, got {grown} KiB more after {} attempts",
        ATTEMPTS - WARM_UP
    );
    eprintln!(
        "{ATTEMPTS} attempts in {:?}, RSS +{grown} KiB",
        started.elapsed()
    );
    lockout_then_recovery(port);
    let output = broker.output();
    assert!(
        !output.contains(SECRET),
        "a password reached the log:\n{output}"
    );
    assert!(
        output.contains("too many failed logins from 127.0.0.1"),
        "{output}"
    );
}

/// Past the limit even the right password is refused (raw and lapin), until the window ends.
fn lockout_then_recovery(port: u16) {
    wait_out_the_window();
    for i in 0..5 {
        let response = format!("\0guest\0{SECRET}-fresh-{i}");
        expect_refused(port, "PLAIN", response.as_bytes(), "a fresh wrong password");
    }
    expect_refused(
        port,
        "PLAIN",
        b"\0guest\0guest",
        "the right password while locked out",
    );
    run_async(TEST_TIMEOUT, async move {
        for i in 0..10 {
            let refused = lapin_login(port, &format!("{SECRET}-lapin-{i}")).await;
            assert!(refused.is_err(), "expected a wrong password to be refused");
        }
        let refused = lapin_login(port, "guest").await;
        assert!(
            refused.is_err(),
            "expected the right password to be refused while locked out"
        );
    });
    wait_out_the_window();
    expect_accepted(port);
    run_async(TEST_TIMEOUT, async move {
        if let Err(e) = lapin_login(port, "guest").await {
            panic!("expected guest to log in through lapin after the window, got {e}");
        }
    });
}
