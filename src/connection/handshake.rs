//! connection.* methods: start / start-ok, tune / tune-ok, open, close, and the rest of
//! channel 0.

use std::time::Duration;

use bytes::Bytes;

use super::lifecycle_log::{self, ClientInfo};
use super::tracking::{self, Refused};
use super::{Conn, HardError, Phase};
use crate::auth::{authenticate, AuthError, Gate, MECHANISMS, MECHANISMS_WITH_EXTERNAL};
use crate::broker::topic_permissions::Variables;
use crate::broker::users;
use crate::protocol::constants::*;
use crate::protocol::method::*;
use crate::protocol::{FieldTable, FieldValue, Method};
use crate::shard::Shard;
use crate::store::record::LimitScope;

fn text(s: &str) -> FieldValue {
    FieldValue::LongStr(Bytes::copy_from_slice(s.as_bytes()))
}

/// What RabbitMQ clients look for in connection.start; capabilities are listed only once
/// they really work.
fn server_properties() -> FieldTable {
    let mut capabilities = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "per_consumer_qos",
        "consumer_priorities",
        "authentication_failure_close",
        "direct_reply_to",
    ] {
        capabilities.insert(cap, FieldValue::Bool(true));
    }
    let mut props = FieldTable::default();
    props.insert("product", text("Warren"));
    props.insert("version", text(env!("CARGO_PKG_VERSION")));
    props.insert("platform", text("Rust"));
    props.insert("copyright", text("Warren contributors"));
    props.insert("information", text("Licensed under the Apache License 2.0"));
    props.insert("cluster_name", text("warren"));
    props.insert("capabilities", FieldValue::Table(capabilities));
    props
}

/// connection.start; EXTERNAL is among the mechanisms only for a TLS client with a
/// verified certificate that names a user.
pub fn send_start(conn: &Conn) {
    let mechanisms = if conn.cert_user.is_some() {
        MECHANISMS_WITH_EXTERNAL
    } else {
        MECHANISMS
    };
    conn.send_method(
        0,
        &Method::ConnectionStart(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: Bytes::from_static(mechanisms),
            locales: Bytes::from_static(b"en_US"),
        }),
    );
}

fn expect(phase: Phase, method: &Method) -> HardError {
    HardError::new(
        COMMAND_INVALID,
        format!(
            "expected {} during the handshake, got {}",
            phase_method(phase),
            method.name()
        ),
    )
    .on(method)
}

fn phase_method(phase: Phase) -> &'static str {
    match phase {
        Phase::StartOk => "connection.start-ok",
        Phase::TuneOk => "connection.tune-ok",
        Phase::Open => "connection.open",
        _ => "a connection method",
    }
}

pub async fn connection_method(
    shard: &Shard,
    conn: &Conn,
    method: Method,
) -> Result<(), HardError> {
    let phase = conn.state.borrow().phase;
    match (phase, method) {
        (Phase::StartOk, Method::ConnectionStartOk(m)) => start_ok(shard, conn, m),
        (Phase::TuneOk, Method::ConnectionTuneOk(m)) => tune_ok(shard, conn, m),
        (Phase::Open, Method::ConnectionOpen(m)) => open(shard, conn, m),
        (_, Method::ConnectionClose(m)) => {
            // Only an open connection was logged as accepted, so only its close is logged.
            if phase == Phase::Opened {
                lifecycle_log::closed_by_client(conn, &m);
            }
            conn.send_method(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
            conn.state.borrow_mut().phase = Phase::Closed;
            Ok(())
        }
        (Phase::Opened, Method::ConnectionUpdateSecret(_)) => {
            conn.send_method(
                0,
                &Method::ConnectionUpdateSecretOk(ConnectionUpdateSecretOk {}),
            );
            Ok(())
        }
        // Clients may tell us they are blocked/unblocked; nothing to do.
        (Phase::Opened, Method::ConnectionBlocked(_) | Method::ConnectionUnblocked(_)) => Ok(()),
        // A channel's method on channel 0: RabbitMQ answers 504, naming the method.
        (Phase::Opened, method) => Err(HardError::new(
            CHANNEL_ERROR,
            "unexpected method in connection state running",
        )
        .on(&method)),
        (phase, method) => Err(expect(phase, &method)),
    }
}

/// connection.open: the vhost must exist, be under its connection limit and the user under
/// theirs, and the user needs permissions there; RabbitMQ's checks, in its order.
fn open(shard: &Shard, conn: &Conn, m: ConnectionOpen) -> Result<(), HardError> {
    let vhost = String::from_utf8_lossy(&m.virtual_host).into_owned();
    let refuse =
        |text: String| HardError::new(NOT_ALLOWED, text).on(&Method::ConnectionOpen(m.clone()));
    let user = conn.state.borrow().user.clone();
    let topology = shard.topology.borrow();
    if topology.vhost(&m.virtual_host).is_none() {
        return Err(refuse(format!("vhost {vhost} not found")));
    }
    let permission = topology
        .permissions()
        .get(user.as_bytes(), vhost.as_bytes())
        .cloned();
    let impersonator = topology
        .users()
        .get(user.as_bytes())
        .is_some_and(|u| users::has_tag(u, "impersonator"));
    let topic = topology.topic_permissions().for_connection(&Variables {
        username: &user,
        vhost: &vhost,
        client_id: None,
    });
    let limits = topology.limits();
    let user_max = limits.get(LimitScope::User, user.as_bytes(), "max-connections");
    let vhost_max = limits.get(LimitScope::Vhost, vhost.as_bytes(), "max-connections");
    drop(topology);
    tracking::open_connection(&user, vhost.as_bytes(), user_max, vhost_max).map_err(|r| {
        refuse(match r {
            Refused::Vhost(max) => format!(
                "access to vhost '{vhost}' refused for user '{user}': connection limit ({max}) is reached"
            ),
            Refused::User(max) => format!(
                "connection refused for user '{user}': user connection limit ({max}) is reached"
            ),
        })
    })?;
    let Some(permission) = permission else {
        tracking::close_connection(&user, vhost.as_bytes(), 0);
        return Err(refuse(format!(
            "access to vhost '{vhost}' refused for user '{user}'"
        )));
    };
    let mut state = conn.state.borrow_mut();
    state.permission = Some(permission);
    state.impersonator = impersonator;
    state.topic = topic;
    state.tracked = true;
    // A copy: the frame's buffer is not kept alive for the connection's lifetime.
    state.vhost = Bytes::copy_from_slice(&m.virtual_host);
    state.phase = Phase::Opened;
    drop(state);
    lifecycle_log::opened(conn, shard.id);
    crate::stats::add(crate::stats::Counter::ConnectionCreated, 1);
    conn.send_method(
        0,
        &Method::ConnectionOpenOk(ConnectionOpenOk {
            known_hosts: Bytes::new(),
        }),
    );
    Ok(())
}

fn start_ok(shard: &Shard, conn: &Conn, m: ConnectionStartOk) -> Result<(), HardError> {
    let caps = match m.client_properties.get("capabilities") {
        Some(FieldValue::Table(t)) => t.clone(),
        _ => FieldTable::default(),
    };
    let flag = |name: &str| {
        caps.get(name)
            .and_then(FieldValue::as_bool)
            .unwrap_or(false)
    };
    let authenticated = {
        let topology = shard.topology.borrow();
        let gate = Gate {
            users: topology.users(),
            allow_remote_guest: shard.config.allow_remote_guest,
            failures_max: shard.config.login_failures_max,
            failure_window: Duration::from_secs(shard.config.login_failure_window_secs),
            cert_user: conn.cert_user.as_deref(),
        };
        authenticate(&m.mechanism, &m.response, conn.peer.ip(), &gate)
    };
    match authenticated {
        Ok(user) => {
            let mut state = conn.state.borrow_mut();
            state.user = user;
            state.client = ClientInfo::from_properties(&m.client_properties);
            state.capabilities.consumer_cancel_notify = flag("consumer_cancel_notify");
            state.capabilities.connection_blocked = flag("connection.blocked");
            state.phase = Phase::TuneOk;
            state.client_properties = m.client_properties;
            state.mechanism = String::from_utf8_lossy(&m.mechanism).into_owned();
        }
        Err(AuthError::UnknownMechanism(mech)) => {
            return Err(HardError::new(
                COMMAND_INVALID,
                format!("unknown authentication mechanism '{mech}'"),
            ));
        }
        Err(AuthError::Refused { mechanism, reason }) => {
            crate::warn!("authentication failed for {}: {reason}", conn.peer);
            // Clients with authentication_failure_close expect connection.close 403; RabbitMQ
            // sends the same close to the others too, right before dropping the socket.
            return Err(HardError::new(
                ACCESS_REFUSED,
                format!("Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."),
            ));
        }
    }
    let config = &shard.config;
    conn.send_method(
        0,
        &Method::ConnectionTune(ConnectionTune {
            channel_max: config.channel_max,
            frame_max: config.frame_max_bytes,
            heartbeat: config.heartbeat_secs,
        }),
    );
    Ok(())
}

fn tune_ok(shard: &Shard, conn: &Conn, m: ConnectionTuneOk) -> Result<(), HardError> {
    let config = &shard.config;
    let on = |e: HardError| e.on(&Method::ConnectionTuneOk(m.clone()));
    if m.frame_max != 0 && m.frame_max < FRAME_MIN_SIZE {
        return Err(on(HardError::new(
            NOT_ALLOWED,
            format!(
                "negotiated frame_max = {} is lower than the minimum allowed value ({FRAME_MIN_SIZE})",
                m.frame_max
            ),
        )));
    }
    let max = u64::from(config.frame_max_bytes);
    check_negotiated("frame_max", u64::from(m.frame_max), max).map_err(on)?;
    let max = u64::from(config.channel_max);
    check_negotiated("channel_max", u64::from(m.channel_max), max).map_err(on)?;
    let mut state = conn.state.borrow_mut();
    state.frame_max = if m.frame_max == 0 {
        config.frame_max_bytes
    } else {
        m.frame_max
    };
    state.channel_max = if m.channel_max == 0 {
        config.channel_max
    } else {
        m.channel_max
    };
    state.heartbeat_secs = m.heartbeat;
    state.phase = Phase::Open;
    Ok(())
}

/// A tune-ok value above the server's limit is refused, and so is 0 ("no limit") when the
/// server has one: RabbitMQ's negotiation, with its texts.
fn check_negotiated(field: &str, client: u64, server: u64) -> Result<(), HardError> {
    if server == 0 || (client != 0 && client <= server) {
        return Ok(());
    }
    let detail = if client == 0 && field == "channel_max" {
        " (no limit)"
    } else {
        ""
    };
    Err(HardError::new(
        NOT_ALLOWED,
        format!(
            "negotiated {field} = {client}{detail} is higher than the maximum allowed value ({server})"
        ),
    ))
}
