//! TLS (AMQPS): a broker with `--tls-cert`/`--tls-key` also listens on `--tls-port`. lapin and
//! pika work over it, `openssl s_client` completes TLS 1.2 and 1.3 handshakes and TLS 1.1 is
//! refused; with `--tls-verify-peer` a client certificate logs in with EXTERNAL as the user
//! its CN names (and only if that user exists), and `--tls-fail-if-no-peer-cert` refuses a
//! client without one. A plaintext client on the TLS port and a TLS client on the plain port
//! each get a clear close and a log line. SIGHUP reloads the certificate: an open connection
//! keeps working and a new one sees the new certificate. The certificates are made by
//! `openssl` in the test. The backend is whatever `WARREN_IO` says, as for every test.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lapin::tcp::OwnedTLSConfig;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use support::broker::free_port;
use support::lapin_client::{close_quietly, declare, get_eventually, open_channel, publish};
use support::scripts::python;
use support::{fresh_dir, run_async, Broker};

const TEST_TIMEOUT: Duration = Duration::from_secs(120);
const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// A test CA, a server certificate for localhost and 127.0.0.1, and client certificates.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn new() -> Certs {
        let dir = fresh_dir("tls");
        let certs = Certs { dir };
        certs.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=Warren Test CA",
        ]);
        std::fs::write(
            certs.path("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("write server.ext");
        // X.509 v3 (with extensions): webpki refuses v1 certificates.
        std::fs::write(
            certs.path("client.ext"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .expect("write client.ext");
        certs.issue("server", "/CN=localhost", "server.ext");
        certs.issue("guest", "/O=Warren/CN=guest", "client.ext");
        certs.issue("nobody", "/O=Warren/CN=nobody", "client.ext");
        std::fs::write(
            certs.path("san.ext"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:guest\n",
        )
        .expect("write san.ext");
        certs.issue("san", "/O=Warren/CN=someone-else", "san.ext");
        certs
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).to_str().expect("UTF-8 path").to_string()
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("expected openssl to run");
        assert!(
            out.status.success(),
            "expected openssl {args:?} to succeed, got {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `NAME.pem` and `NAME.key`, signed by the CA.
    fn issue(&self, name: &str, subject: &str, ext: &str) {
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        self.openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            ext,
        ]);
    }

    /// The broker flags for TLS on `tls_port`, plus `extra`.
    fn flags(&self, tls_port: u16, extra: &[&str]) -> Vec<String> {
        let mut flags = vec![
            "--tls-port".to_string(),
            tls_port.to_string(),
            "--tls-cert".to_string(),
            self.arg("server.pem"),
            "--tls-key".to_string(),
            self.arg("server.key"),
            "--tls-ca".to_string(),
            self.arg("ca.pem"),
        ];
        flags.extend(extra.iter().map(|s| s.to_string()));
        flags
    }
}

/// A broker with TLS on a free port; `None` against an external broker (these tests need
/// the broker's own flags).
fn tls_broker(certs: &Certs, extra: &[&str]) -> Option<(Broker, u16)> {
    if support::broker::external_port().is_some() {
        eprintln!("skipped: TLS tests start their own broker");
        return None;
    }
    let tls_port = free_port();
    let flags = certs.flags(tls_port, extra);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Some((Broker::start(&flags), tls_port))
}

/// Waits until the broker printed a line containing `needle`.
fn wait_for_log(broker: &mut Broker, needle: &str) -> String {
    let deadline = Instant::now() + LOG_TIMEOUT;
    loop {
        let output = broker.output();
        if let Some(line) = output.lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "expected a log line with {needle:?} within {LOG_TIMEOUT:?}, got:\n{output}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `openssl s_client` against 127.0.0.1:`port` with `args`; its stdout and stderr together.
fn s_client(port: u16, args: &[&str]) -> String {
    let connect = format!("127.0.0.1:{port}");
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &connect, "-servername", "localhost"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("expected openssl s_client to start");
    // Q: quit once connected; closing stdin ends it too.
    let _ = child.stdin.take().map(|mut stdin| stdin.write_all(b"Q\n"));
    let out = child.wait_with_output().expect("openssl s_client output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn connect_tls(port: u16, ca: &Path) -> Connection {
    let url = format!("amqps://guest:guest@127.0.0.1:{port}/%2f");
    let config = OwnedTLSConfig {
        identity: None,
        cert_chain: Some(std::fs::read_to_string(ca).expect("read ca.pem")),
    };
    let attempt = Connection::connect_with_config(&url, ConnectionProperties::default(), config);
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .expect("expected a TLS connection within 10 s")
        .unwrap_or_else(|e| panic!("expected lapin to connect over TLS, got {e}"))
}

/// Publishes `body` to `queue` and gets it back on `connection`.
async fn round_trip(connection: &Connection, queue: &str, body: &str) {
    let channel = open_channel(connection).await;
    declare(&channel, queue, false).await;
    publish(
        &channel,
        "",
        queue,
        body.as_bytes(),
        BasicProperties::default(),
    )
    .await;
    let delivery = get_eventually(&channel, queue).await;
    assert_eq!(
        String::from_utf8_lossy(&delivery.data),
        body,
        "expected the message back over TLS"
    );
}

#[test]
fn lapin_publishes_and_gets_over_tls() {
    let certs = Certs::new();
    let Some((_broker, tls_port)) = tls_broker(&certs, &[]) else {
        return;
    };
    let ca = certs.path("ca.pem");
    run_async(TEST_TIMEOUT, async move {
        let connection = connect_tls(tls_port, &ca).await;
        for i in 0..20 {
            // Bodies larger than a TLS record too.
            let body = format!("{i}-{}", "x".repeat(i * 4096));
            round_trip(&connection, "tls-lapin", &body).await;
        }
        close_quietly(connection).await;
    });
}

/// Runs tests/py/tls_client.py; its last output line.
fn pika(port: u16, certs: &Certs, queue: &str, mode: &str, client: Option<&str>) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/tls_client.py");
    let mut command = Command::new(python());
    command
        .arg("-B")
        .arg(script)
        .args([&port.to_string(), &certs.arg("ca.pem"), queue, mode]);
    if let Some(client) = client {
        command.args([
            certs.arg(&format!("{client}.pem")),
            certs.arg(&format!("{client}.key")),
        ]);
    }
    let out = command.output().expect("expected tls_client.py to run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "expected tls_client.py to exit 0, got {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().last().unwrap_or_default().to_string()
}

#[test]
fn pika_publishes_and_gets_over_tls() {
    let certs = Certs::new();
    let Some((_broker, tls_port)) = tls_broker(&certs, &[]) else {
        return;
    };
    let line = pika(tls_port, &certs, "tls-pika", "plain", None);
    assert_eq!(
        line, "got over tls",
        "expected pika's message back over TLS"
    );
}

#[test]
fn openssl_s_client_handshakes_with_tls12_and_tls13_but_not_tls11() {
    let certs = Certs::new();
    let Some((mut broker, tls_port)) = tls_broker(&certs, &[]) else {
        return;
    };
    let ca = certs.arg("ca.pem");
    for (flag, protocol) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let out = s_client(tls_port, &[flag, "-CAfile", &ca]);
        assert!(
            out.contains(&format!("Protocol  : {protocol}"))
                || out.contains(&format!("New, {protocol}")),
            "expected a {protocol} handshake, got:\n{out}"
        );
        assert!(
            out.contains("Verify return code: 0 (ok)"),
            "expected the server certificate to verify against the test CA, got:\n{out}"
        );
    }
    let out = s_client(tls_port, &["-tls1_1", "-CAfile", &ca]);
    assert!(
        out.contains("Cipher is (NONE)") && !out.contains("New, TLSv1.1"),
        "expected TLS 1.1 to be refused, got:\n{out}"
    );
    wait_for_log(&mut broker, "TLS handshake with 127.0.0.1:");
}

#[test]
fn external_logs_in_as_the_certificate_cn_if_that_user_exists() {
    let certs = Certs::new();
    let extra = ["--tls-verify-peer", "--ssl-cert-login-from", "common_name"];
    let Some((mut broker, tls_port)) = tls_broker(&certs, &extra) else {
        return;
    };
    let line = pika(tls_port, &certs, "tls-external", "external", Some("guest"));
    assert_eq!(line, "got over tls", "expected EXTERNAL to log in as guest");
    let line = pika(tls_port, &certs, "tls-external", "external", Some("nobody"));
    assert!(
        line.starts_with("refused"),
        "expected EXTERNAL as the unknown user nobody to be refused, got {line:?}"
    );
    wait_for_log(
        &mut broker,
        "user 'nobody' (from the TLS client certificate)",
    );
    // Without a client certificate, EXTERNAL is not offered.
    let line = pika(tls_port, &certs, "tls-external", "external", None);
    assert!(
        line.starts_with("refused"),
        "expected EXTERNAL without a client certificate to be refused, got {line:?}"
    );
}

#[test]
fn external_takes_the_distinguished_name_by_default() {
    let certs = Certs::new();
    let Some((mut broker, tls_port)) = tls_broker(&certs, &["--tls-verify-peer"]) else {
        return;
    };
    let line = pika(tls_port, &certs, "tls-dn", "external", Some("guest"));
    assert!(
        line.starts_with("refused"),
        "expected no user 'CN=guest,O=Warren', got {line:?}"
    );
    wait_for_log(
        &mut broker,
        "user 'CN=guest,O=Warren' (from the TLS client certificate)",
    );
}

#[test]
fn external_takes_the_first_dns_san_when_asked() {
    let certs = Certs::new();
    let extra = [
        "--tls-verify-peer",
        "--ssl-cert-login-from",
        "subject_alternative_name",
    ];
    let Some((_broker, tls_port)) = tls_broker(&certs, &extra) else {
        return;
    };
    let line = pika(tls_port, &certs, "tls-san", "external", Some("san"));
    assert_eq!(
        line, "got over tls",
        "expected EXTERNAL as guest, the SAN's DNS name"
    );
}

#[test]
fn fail_if_no_peer_cert_refuses_a_client_without_a_certificate() {
    let certs = Certs::new();
    let extra = ["--tls-verify-peer", "--tls-fail-if-no-peer-cert"];
    let Some((mut broker, tls_port)) = tls_broker(&certs, &extra) else {
        return;
    };
    let line = pika(tls_port, &certs, "tls-nocert", "plain", None);
    assert!(
        line.starts_with("refused"),
        "expected a client without a certificate to be refused, got {line:?}"
    );
    wait_for_log(&mut broker, "TLS handshake with 127.0.0.1:");
    let line = pika(tls_port, &certs, "tls-nocert", "plain", Some("guest"));
    assert_eq!(
        line, "got over tls",
        "expected a client with a certificate to get in"
    );
}

/// Reads until the peer closes (or 10 s pass); everything it sent.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set_read_timeout");
    let mut got = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("expected the broker to close the socket, got {e} after {got:?}"),
        }
    }
}

#[test]
fn a_plaintext_client_on_the_tls_port_is_closed_and_logged() {
    let certs = Certs::new();
    let Some((mut broker, tls_port)) = tls_broker(&certs, &[]) else {
        return;
    };
    let mut stream = TcpStream::connect(("127.0.0.1", tls_port)).expect("connect");
    stream
        .write_all(b"AMQP\x00\x00\x09\x01")
        .expect("send header");
    let got = read_to_close(&mut stream);
    assert_eq!(
        got.first(),
        Some(&0x15),
        "expected a TLS alert, got {got:?}"
    );
    wait_for_log(&mut broker, "(a plaintext AMQP client on the TLS port?)");
}

#[test]
fn a_tls_client_on_the_plain_port_gets_the_amqp_header() {
    let certs = Certs::new();
    let Some((mut broker, _tls_port)) = tls_broker(&certs, &[]) else {
        return;
    };
    let mut stream = TcpStream::connect(("127.0.0.1", broker.port())).expect("connect");
    // The start of a ClientHello: a handshake record.
    stream
        .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .expect("send hello");
    let got = read_to_close(&mut stream);
    assert_eq!(
        got, b"AMQP\x00\x00\x09\x01",
        "expected the AMQP 0-9-1 header"
    );
    wait_for_log(
        &mut broker,
        "TLS handshake on the plain AMQP port from 127.0.0.1:",
    );
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_connections() {
    let certs = Certs::new();
    let Some((mut broker, tls_port)) = tls_broker(&certs, &[]) else {
        return;
    };
    let ca = certs.path("ca.pem");
    let pid = broker.pid().expect("our own broker") as i32;
    let subject = |out: String| out.replace(' ', "");
    let before = subject(s_client(tls_port, &["-CAfile", &certs.arg("ca.pem")]));
    assert!(
        before.contains("subject=CN=localhost\n"),
        "expected the first certificate, got:\n{before}"
    );
    run_async(TEST_TIMEOUT, async move {
        let connection = connect_tls(tls_port, &ca).await;
        round_trip(&connection, "tls-reload", "before").await;
        // A new certificate (same CA and names, another subject) in place of the old one.
        certs.issue("server", "/CN=localhost/O=Reloaded", "server.ext");
        // SAFETY: kill(2) on the PID of the broker this test spawned.
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGHUP) },
            0,
            "expected SIGHUP sent"
        );
        wait_for_log(&mut broker, "reloaded TLS certificate");
        round_trip(&connection, "tls-reload", "after").await;
        let after = subject(s_client(tls_port, &["-CAfile", &certs.arg("ca.pem")]));
        assert!(
            after.contains("subject=CN=localhost,O=Reloaded"),
            "expected the new certificate, got:\n{after}"
        );
        let fresh = connect_tls(tls_port, &certs.path("ca.pem")).await;
        round_trip(&fresh, "tls-reload", "new connection").await;
        close_quietly(fresh).await;
        close_quietly(connection).await;
    });
}

/// The management API over HTTPS (`--management-tls-port`, RabbitMQ's `management.ssl.port`)
/// with the AMQPS certificate: a client that trusts the CA gets the overview, and an AMQPS
/// connection shows as `ssl` with its protocol and cipher.
#[test]
fn management_api_over_https() {
    let certs = Certs::new();
    let (https, plain) = (free_port(), free_port());
    let (https_s, plain_s) = (https.to_string(), plain.to_string());
    let extra = [
        "--management-tls-port",
        &https_s,
        "--management-port",
        &plain_s,
    ];
    let Some((_broker, tls_port)) = tls_broker(&certs, &extra) else {
        return;
    };
    let script = r#"
import base64, json, ssl, sys, time, urllib.request
import socket
port, ca, amqps = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
auth = "Basic " + base64.b64encode(b"guest:guest").decode()
def get(path):
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", headers={"Authorization": auth})
    with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
        return json.load(r)
for attempt in range(50):
    try:
        print(get("/api/overview")["management_version"])
        break
    except OSError as e:
        if attempt == 49:
            raise
        time.sleep(0.1)
# An AMQPS client that has sent its protocol header and got connection.start.
amqp = ctx.wrap_socket(socket.create_connection(("127.0.0.1", amqps)), server_hostname="localhost")
amqp.sendall(b"AMQP\x00\x00\x09\x01")
amqp.recv(7)
conns = get("/api/connections")
tls = [c for c in conns if c["ssl"]]
assert tls and tls[0]["ssl_protocol"].startswith("tlsv1."), conns
assert tls[0]["ssl_cipher"] and tls[0]["ssl_hash"], tls
print("ssl", tls[0]["ssl_protocol"])
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            &https_s,
            &certs.arg("ca.pem"),
            &tls_port.to_string(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "expected an HTTPS answer, got {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("3.10.8\nssl tlsv1."), "{stdout}");
}
