//! rabbitmq.conf keys in Warren's config file: each one that Warren has a setting for is
//! translated to that setting (`listeners.tcp.default = 5672` is `listen = [::]:5672`,
//! `loopback_users.guest = false` is `allow-remote-guest = true`, ...), so an operator's
//! RabbitMQ settings carry over. Keys RabbitMQ knows but Warren does not need are refused by
//! name, like any unknown setting.

/// The Warren setting and value for a rabbitmq.conf `key = value`; None when `key` is not a
/// rabbitmq.conf key Warren knows.
pub fn translate(key: &str, value: &str) -> Option<Result<(&'static str, String), String>> {
    let same = |to: &'static str| Some(Ok((to, value.to_string())));
    match key {
        "default_user" => same("default-user"),
        "default_pass" => same("default-pass"),
        "heartbeat" => same("heartbeat"),
        "frame_max" => same("frame-max"),
        "channel_max" => same("channel-max"),
        "max_message_size" => same("max-message-size"),
        "vm_memory_high_watermark.relative" => same("memory-high-watermark"),
        "disk_free_limit.absolute" => same("disk-free-limit"),
        "load_definitions" => same("definitions"),
        "default_vhost" => same("default-vhost"),
        "management.tcp.port" => same("management-port"),
        "management.tcp.ip" => same("management-ip"),
        "management.ssl.port" => same("management-tls-port"),
        "prometheus.tcp.port" => same("prometheus-port"),
        "prometheus.tcp.ip" => same("prometheus-ip"),
        // RabbitMQ counts milliseconds; Warren, seconds.
        "handshake_timeout" => Some(
            value
                .parse::<u64>()
                .map(|ms| ("handshake-timeout", ms.div_ceil(1000).to_string()))
                .map_err(|_| format!("handshake_timeout = {value}: expected milliseconds")),
        ),
        "loopback_users.guest" | "loopback_users" => Some(Ok((
            "allow-remote-guest",
            matches!(value, "false" | "none").to_string(),
        ))),
        "log.console.formatter" => Some(log_formatter(value)),
        _ => listener(key, value).or_else(|| tls(key, value)),
    }
}

/// `log.console.formatter = plaintext | json` (RabbitMQ 3.9+) is `log-format = text | json`.
fn log_formatter(value: &str) -> Result<(&'static str, String), String> {
    match value {
        "plaintext" => Ok(("log-format", "text".to_string())),
        "json" => Ok(("log-format", "json".to_string())),
        _ => Err(format!(
            "log.console.formatter = {value}: expected plaintext or json"
        )),
    }
}

/// `listeners.tcp.NAME = PORT` or `= HOST:PORT`.
fn listener(key: &str, value: &str) -> Option<Result<(&'static str, String), String>> {
    key.strip_prefix("listeners.tcp.")?;
    let address = if value.parse::<u16>().is_ok() {
        format!("[::]:{value}")
    } else {
        value.to_string()
    };
    Some(Ok(("listen", address)))
}

/// The TLS listener and its certificates (`ssl_options.*`).
fn tls(key: &str, value: &str) -> Option<Result<(&'static str, String), String>> {
    let same = |to: &'static str| Some(Ok((to, value.to_string())));
    match key {
        k if k.starts_with("listeners.ssl.") => same("tls-port"),
        "ssl_options.certfile" => same("tls-cert"),
        "ssl_options.keyfile" => same("tls-key"),
        "ssl_options.cacertfile" => same("tls-ca"),
        "ssl_options.verify" => Some(Ok((
            "tls-verify-peer",
            (value == "verify_peer").to_string(),
        ))),
        "ssl_options.fail_if_no_peer_cert" => same("tls-fail-if-no-peer-cert"),
        "ssl_cert_login_from" => same("ssl-cert-login-from"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(key: &str, value: &str) -> (&'static str, String) {
        translate(key, value)
            .expect("a known key")
            .expect("a valid value")
    }

    #[test]
    fn rabbitmq_keys_become_warren_settings() {
        assert_eq!(
            ok("listeners.tcp.default", "5673"),
            ("listen", "[::]:5673".into())
        );
        assert_eq!(
            ok("listeners.tcp.local", "127.0.0.1:5673"),
            ("listen", "127.0.0.1:5673".into())
        );
        assert_eq!(
            ok("loopback_users.guest", "false"),
            ("allow-remote-guest", "true".into())
        );
        assert_eq!(
            ok("handshake_timeout", "10000"),
            ("handshake-timeout", "10".into())
        );
        assert_eq!(
            ok("ssl_options.verify", "verify_peer"),
            ("tls-verify-peer", "true".into())
        );
        assert_eq!(
            ok("default_vhost", "team-a"),
            ("default-vhost", "team-a".into())
        );
        assert_eq!(
            ok("log.console.formatter", "json"),
            ("log-format", "json".into())
        );
        assert_eq!(
            ok("log.console.formatter", "plaintext"),
            ("log-format", "text".into())
        );
        assert!(translate("log.console.formatter", "xml").is_some_and(|r| r.is_err()));
        assert!(translate("log.console.level", "info").is_none());
    }
}
