//! Setting policies on the broker under test, in rabbitmqctl's terms (`set_policy NAME
//! PATTERN DEFINITION --priority N --apply-to queues`): `warren ctl` for a broker of our
//! own, and for an external RabbitMQ node the command in `WARREN_TEST_RABBITMQCTL` (set by
//! `tests/queue-features-vs-rabbitmq.sh` to `bash tests/rabbitmq-node.sh ctl PORT DIR`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::broker::Broker;

/// Environment variable naming the rabbitmqctl command for an external broker.
pub const RABBITMQCTL_ENV: &str = "WARREN_TEST_RABBITMQCTL";

pub enum PolicyCtl {
    Warren(PathBuf),
    RabbitMq(String),
}

impl PolicyCtl {
    /// How to reach `broker`'s policies; `None` for an external broker without
    /// `WARREN_TEST_RABBITMQCTL` (the test skips itself then).
    pub fn of(broker: &Broker) -> Option<PolicyCtl> {
        match broker.data_dir() {
            Some(dir) => Some(PolicyCtl::Warren(dir.to_path_buf())),
            None => std::env::var(RABBITMQCTL_ENV).ok().map(PolicyCtl::RabbitMq),
        }
    }

    pub fn warren(data_dir: &Path) -> PolicyCtl {
        PolicyCtl::Warren(data_dir.to_path_buf())
    }

    /// Runs one command; its standard output, or (on failure) everything it printed.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut command = match self {
            PolicyCtl::Warren(dir) => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_warren"));
                c.arg("ctl").arg("--data-dir").arg(dir);
                c
            }
            PolicyCtl::RabbitMq(ctl) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!("{ctl} \"$@\"")).arg("sh");
                c
            }
        };
        let output = command
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run the policy command: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// `run`, which must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        self.run(args)
            .unwrap_or_else(|e| panic!("expected {args:?} to succeed, got: {e}"))
    }
}
