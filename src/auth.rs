//! Authentication: SASL PLAIN and AMQPLAIN against the broker's users, and EXTERNAL for TLS
//! clients whose verified certificate names a user (RabbitMQ's rabbitmq_auth_mechanism_ssl:
//! the user must exist, its password is not checked).
//!
//! As in RabbitMQ, the default user `guest` (password `guest`) may only log in from a loopback
//! address unless the operator says otherwise. Failed logins are counted per source address:
//! past a limit within a window, every login from that address is refused until the window
//! ends, so guessing passwords is slow (RabbitMQ leaves this to the network).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use crate::broker::users::Users;
use crate::protocol::FieldTable;

pub const MECHANISMS: &[u8] = b"PLAIN AMQPLAIN";
/// Offered to a TLS client that presented a verified certificate.
pub const MECHANISMS_WITH_EXTERNAL: &[u8] = b"PLAIN AMQPLAIN EXTERNAL";

#[derive(Debug, PartialEq)]
pub enum AuthError {
    /// Mechanism we do not offer: RabbitMQ closes with 503 COMMAND_INVALID.
    UnknownMechanism(String),
    /// Wrong credentials, malformed response, or guest from a remote address: 403.
    Refused { mechanism: String, reason: String },
}

/// Who may log in from where: the users, whether `guest` may log in from other hosts, and
/// how many failed logins a source address may make per window.
pub struct Gate<'a> {
    pub users: &'a Users,
    pub allow_remote_guest: bool,
    pub failures_max: u32,
    pub failure_window: Duration,
    /// The user the connection's verified TLS client certificate names: EXTERNAL is
    /// offered, and logs in as this user.
    pub cert_user: Option<&'a str>,
}

/// Checks a connection.start-ok response; returns the user name on success.
pub fn authenticate(
    mechanism: &[u8],
    response: &[u8],
    peer: IpAddr,
    gate: &Gate,
) -> Result<String, AuthError> {
    let mech = String::from_utf8_lossy(mechanism).into_owned();
    let refused = |reason: &str| AuthError::Refused {
        mechanism: mech.clone(),
        reason: reason.to_string(),
    };
    let (user, pass) = match mechanism {
        b"PLAIN" => parse_plain(response).ok_or_else(|| refused("malformed PLAIN response"))?,
        b"AMQPLAIN" => {
            parse_amqplain(response).ok_or_else(|| refused("malformed AMQPLAIN response"))?
        }
        b"EXTERNAL" => match gate.cert_user {
            Some(user) => (user.to_string(), String::new()),
            None => return Err(AuthError::UnknownMechanism(mech)),
        },
        _ => return Err(AuthError::UnknownMechanism(mech)),
    };
    if failures_exceeded(peer, gate) {
        return Err(refused(&format!(
            "user '{user}' - too many failed logins from {peer}; refused for up to {} s",
            gate.failure_window.as_secs()
        )));
    }
    if mechanism == b"EXTERNAL" {
        if gate.users.get(user.as_bytes()).is_none() {
            record_failure(peer, gate);
            return Err(refused(&format!(
                "user '{user}' (from the TLS client certificate) - no such user"
            )));
        }
    } else if !gate.users.check_password(user.as_bytes(), pass.as_bytes()) {
        record_failure(peer, gate);
        return Err(refused(&format!("user '{user}' - invalid credentials")));
    }
    let loopback = peer.is_loopback() || is_mapped_loopback(peer);
    if user == "guest" && !gate.allow_remote_guest && !loopback {
        record_failure(peer, gate);
        return Err(refused("user 'guest' can only connect via localhost"));
    }
    Ok(user)
}

/// Failed logins per source address: (count, start of the window).
static FAILURES: LazyLock<Mutex<HashMap<IpAddr, (u32, Instant)>>> = LazyLock::new(Mutex::default);

/// Most addresses tracked; past it the expired ones go, then (under a flood from very many
/// addresses) all of them: memory stays bounded whatever the peers do.
const TRACKED_MAX: usize = 65_536;

fn failures_exceeded(peer: IpAddr, gate: &Gate) -> bool {
    let failures = FAILURES.lock().unwrap_or_else(|e| e.into_inner());
    failures.get(&peer).is_some_and(|(count, since)| {
        *count >= gate.failures_max && since.elapsed() < gate.failure_window
    })
}

fn record_failure(peer: IpAddr, gate: &Gate) {
    let mut failures = FAILURES.lock().unwrap_or_else(|e| e.into_inner());
    if failures.len() >= TRACKED_MAX && !failures.contains_key(&peer) {
        failures.retain(|_, (_, since)| since.elapsed() < gate.failure_window);
        if failures.len() >= TRACKED_MAX {
            failures.clear();
        }
    }
    let entry = failures.entry(peer).or_insert((0, Instant::now()));
    if entry.1.elapsed() >= gate.failure_window {
        *entry = (0, Instant::now());
    }
    entry.0 = entry.0.saturating_add(1);
}

fn is_mapped_loopback(peer: IpAddr) -> bool {
    match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

/// `[authzid] NUL authcid NUL passwd`
fn parse_plain(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let user = parts.next()?;
    let pass = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Some((
        String::from_utf8(user.to_vec()).ok()?,
        String::from_utf8(pass.to_vec()).ok()?,
    ))
}

/// A field table without its length prefix, holding LOGIN and PASSWORD.
fn parse_amqplain(response: &[u8]) -> Option<(String, String)> {
    let mut prefixed = BytesMut::with_capacity(response.len() + 4);
    prefixed.put_u32(u32::try_from(response.len()).ok()?);
    prefixed.put_slice(response);
    let mut bytes: Bytes = prefixed.freeze();
    let table = FieldTable::decode(&mut bytes).ok()?;
    let text = |key: &str| {
        table
            .get(key)?
            .as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    Some((text("LOGIN")?, text("PASSWORD")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    fn guest_only() -> Users {
        let mut users = Users::default();
        users.put(crate::broker::users::new_user(
            b"guest",
            b"guest",
            b"administrator",
        ));
        users
    }

    /// The gate of a broker with only guest; `remote`: guest may log in from anywhere.
    fn authenticate_as(
        mechanism: &[u8],
        response: &[u8],
        peer: IpAddr,
        remote: bool,
    ) -> Result<String, AuthError> {
        let users = guest_only();
        let gate = Gate {
            users: &users,
            allow_remote_guest: remote,
            failures_max: u32::MAX,
            failure_window: Duration::from_secs(60),
            cert_user: None,
        };
        authenticate(mechanism, response, peer, &gate)
    }

    #[test]
    fn failed_logins_past_the_limit_refuse_even_the_right_password() {
        let users = guest_only();
        let gate = Gate {
            users: &users,
            allow_remote_guest: true,
            failures_max: 3,
            failure_window: Duration::from_secs(60),
            cert_user: None,
        };
        let peer = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 9));
        for _ in 0..3 {
            assert!(authenticate(b"PLAIN", b"\0guest\0wrong", peer, &gate).is_err());
        }
        let refused = authenticate(b"PLAIN", b"\0guest\0guest", peer, &gate);
        assert!(
            matches!(refused, Err(AuthError::Refused { reason, .. }) if reason.contains("too many"))
        );
        // Another address is not affected.
        let other = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 10));
        assert!(authenticate(b"PLAIN", b"\0guest\0guest", other, &gate).is_ok());
    }

    #[test]
    fn external_logs_in_as_the_certificate_user_if_it_exists() {
        let users = guest_only();
        let gate = |cert_user| Gate {
            users: &users,
            allow_remote_guest: false,
            failures_max: u32::MAX,
            failure_window: Duration::from_secs(60),
            cert_user,
        };
        assert_eq!(
            authenticate(b"EXTERNAL", b"", LOOPBACK, &gate(Some("guest"))),
            Ok("guest".into())
        );
        assert!(matches!(
            authenticate(b"EXTERNAL", b"", LOOPBACK, &gate(Some("nobody"))),
            Err(AuthError::Refused { reason, .. }) if reason.contains("no such user")
        ));
        assert!(matches!(
            authenticate(b"EXTERNAL", b"", LOOPBACK, &gate(None)),
            Err(AuthError::UnknownMechanism(_))
        ));
    }

    #[test]
    fn plain_guest_from_loopback_is_accepted() {
        assert_eq!(
            authenticate_as(b"PLAIN", b"\0guest\0guest", LOOPBACK, false),
            Ok("guest".into())
        );
    }

    #[test]
    fn guest_from_remote_is_refused() {
        assert!(matches!(
            authenticate_as(b"PLAIN", b"\0guest\0guest", REMOTE, false),
            Err(AuthError::Refused { .. })
        ));
        assert!(authenticate_as(b"PLAIN", b"\0guest\0guest", REMOTE, true).is_ok());
    }

    #[test]
    fn wrong_password_and_unknown_mechanism() {
        assert!(matches!(
            authenticate_as(b"PLAIN", b"\0guest\0nope", LOOPBACK, false),
            Err(AuthError::Refused { .. })
        ));
        assert!(matches!(
            authenticate_as(b"EXTERNAL", b"", LOOPBACK, false),
            Err(AuthError::UnknownMechanism(_))
        ));
    }

    #[test]
    fn amqplain_table() {
        let mut table = FieldTable::default();
        table.insert(
            "LOGIN",
            crate::protocol::FieldValue::LongStr(Bytes::from_static(b"guest")),
        );
        table.insert(
            "PASSWORD",
            crate::protocol::FieldValue::LongStr(Bytes::from_static(b"guest")),
        );
        let mut buf = BytesMut::new();
        table.encode(&mut buf);
        assert_eq!(
            authenticate_as(b"AMQPLAIN", &buf[4..], LOOPBACK, false),
            Ok("guest".into())
        );
    }
}
