//! The client scripts: RabbitMQ's tutorials in `tests/py` (pika) and `tests/js` (amqplib),
//! adjusted only to take the port and names from the command line and to exit after N
//! messages. Both sets take the same arguments and print the same lines, so one scenario can
//! drive either ([`ScriptClient`]).
//!
//! The client libraries are provisioned once, under `target/`: pika in a virtualenv
//! (`target/test-venv`), amqplib in `target/test-node/node_modules`, and playwright-core (for
//! the management UI's browser test) in `target/test-playwright/node_modules`. Provisioning is
//! race-free across parallel test processes: each installs into a private staging directory
//! and renames it into place; the rename is atomic, so the directory only ever appears
//! complete, and a loser of the race throws its copy away.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::process::{run_to_success, Output, Pipe, Process};
use super::{target_dir, unique_suffix};

/// The pika version the Python scripts run with.
pub const PIKA_VERSION: &str = "1.3.2";
/// The amqplib version the JavaScript scripts run with.
pub const AMQPLIB_VERSION: &str = "0.10";
/// The playwright-core version the browser test of the management UI runs with.
pub const PLAYWRIGHT_VERSION: &str = "1.65";
/// Bounds one installation (venv + pip, or npm).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// A client library whose tutorial scripts the tests run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptClient {
    /// pika, the scripts in `tests/py/`.
    Pika,
    /// amqplib on Node, the scripts in `tests/js/`.
    Amqplib,
}

impl ScriptClient {
    /// The file name of the tutorial script `base` (`send` -> `send.py` or `send.js`).
    pub fn script(self, base: &str) -> String {
        match self {
            ScriptClient::Pika => format!("{base}.py"),
            ScriptClient::Amqplib => format!("{base}.js"),
        }
    }

    fn command(self, base: &str) -> Command {
        let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        match self {
            ScriptClient::Pika => {
                let mut command = Command::new(python());
                // Unbuffered output; no __pycache__ next to the scripts (some import others).
                command
                    .args(["-u", "-B"])
                    .arg(tests.join("py").join(self.script(base)));
                command
            }
            ScriptClient::Amqplib => {
                let mut command = Command::new("node");
                command
                    .arg(tests.join("js").join(self.script(base)))
                    .env("NODE_PATH", node_modules());
                command
            }
        }
    }

    /// Starts the script `base` with `args`.
    pub fn spawn(self, base: &str, args: &[&str]) -> ScriptProcess {
        let script = self.script(base);
        let mut command = self.command(base);
        command.args(args);
        let process = Process::spawn(command, &script)
            .unwrap_or_else(|e| panic!("expected to start {script}, got {e}"));
        ScriptProcess(process)
    }

    /// Runs the script `base` with `args` to completion (bounded by `timeout`).
    pub fn run(self, base: &str, args: &[&str], timeout: Duration) -> Output {
        self.spawn(base, args).finish(timeout)
    }
}

/// A running script whose stdout can be watched line by line. Killed (through its `Child`
/// handle) on drop.
pub struct ScriptProcess(Process);

impl ScriptProcess {
    /// Waits until the script prints a line containing `needle` on stdout; kills it and panics
    /// with its output if it does not within `timeout`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        match self.0.wait_for_line(Some(Pipe::Stdout), needle, timeout) {
            Ok(line) => line,
            Err(why) => {
                self.0.kill();
                let (stdout, stderr) = self.0.stdout_stderr();
                panic!(
                    "expected {} to print a line with {needle:?} within {timeout:?}, got {why}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                    self.0.name()
                );
            }
        }
    }

    /// Waits for the script to exit; kills it and panics if it does not within `timeout`.
    pub fn finish(self, timeout: Duration) -> Output {
        self.0.finish(timeout)
    }
}

/// `target/test-venv/bin/python`, creating the venv with pika on first use.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = provision("test-venv", "bin/python", |staging| {
                let mut venv = Command::new("python3");
                venv.args(["-m", "venv"]).arg(staging);
                run_to_success(venv, "python3 -m venv", INSTALL_TIMEOUT);
                let mut pip = Command::new(staging.join("bin").join("python"));
                pip.args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg(format!("pika=={PIKA_VERSION}"));
                run_to_success(pip, "pip install pika", INSTALL_TIMEOUT);
            });
            // A venv records its own path in bin/ scripts, but `bin/python -m ...` and plain
            // script runs work from the renamed directory.
            venv.join("bin").join("python")
        })
        .clone()
}

/// `target/test-node/node_modules`, installing amqplib on first use.
pub fn node_modules() -> PathBuf {
    static MODULES: OnceLock<PathBuf> = OnceLock::new();
    MODULES
        .get_or_init(|| npm_modules("test-node", "amqplib", AMQPLIB_VERSION))
        .clone()
}

/// `target/test-playwright/node_modules`, installing playwright-core on first use (for
/// `tests/ui/browse.js`). playwright-core downloads no browser: the test drives Debian's
/// chromium.
pub fn playwright_node_modules() -> PathBuf {
    static MODULES: OnceLock<PathBuf> = OnceLock::new();
    MODULES
        .get_or_init(|| npm_modules("test-playwright", "playwright-core", PLAYWRIGHT_VERSION))
        .clone()
}

/// `target/<dir>/node_modules` with `package@version` installed by npm (see [`provision`]).
fn npm_modules(dir: &str, package: &str, version: &str) -> PathBuf {
    let marker = format!("node_modules/{package}/package.json");
    let root = provision(dir, &marker, |staging| {
        let mut npm = Command::new("npm");
        npm.args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(staging)
            .arg(format!("{package}@{version}"));
        run_to_success(npm, &format!("npm install {package}"), INSTALL_TIMEOUT);
    });
    root.join("node_modules")
}

/// `target/<name>`, which is complete once `<name>/<marker>` exists; if it does not exist
/// yet, `install` fills a staging directory that is then renamed into place.
fn provision(name: &str, marker: &str, install: impl FnOnce(&Path)) -> PathBuf {
    let target = target_dir();
    let dir = target.join(name);
    if dir.join(marker).exists() {
        return dir;
    }
    std::fs::create_dir_all(&target)
        .unwrap_or_else(|e| panic!("expected to create {target:?}, got {e}"));
    let staging = target.join(format!("{name}.tmp-{}", unique_suffix()));
    install(&staging);
    if std::fs::rename(&staging, &dir).is_err() {
        // Another process won the race; use its copy.
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        dir.join(marker).exists(),
        "expected {:?} after provisioning, got nothing",
        dir.join(marker)
    );
    dir
}

/// The pyrabbit2 version the management client tests run with.
pub const PYRABBIT2_VERSION: &str = "1.0.7";

/// `target/test-venv-mgmt/bin/python`, a venv with pyrabbit2 (a client of the management
/// HTTP API), created on first use.
pub fn mgmt_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = provision("test-venv-mgmt", "bin/python", |staging| {
                let mut venv = Command::new("python3");
                venv.args(["-m", "venv"]).arg(staging);
                run_to_success(venv, "python3 -m venv", INSTALL_TIMEOUT);
                let mut pip = Command::new(staging.join("bin").join("python"));
                pip.args(["-m", "pip", "install", "--quiet"])
                    .arg("--disable-pip-version-check")
                    .arg(format!("pyrabbit2=={PYRABBIT2_VERSION}"));
                run_to_success(pip, "pip install pyrabbit2", INSTALL_TIMEOUT);
            });
            venv.join("bin").join("python")
        })
        .clone()
}

/// `target/rabbitmqadmin/rabbitmqadmin`: the management plugin's v1 command line tool (a
/// stdlib-only Python script), taken on first use from Debian's rabbitmq-server package
/// (`apt-get download`, then `dpkg-deb`; nothing is installed), or copied from
/// `/usr/bin/rabbitmqadmin` where that package is installed and the download fails.
pub fn rabbitmqadmin() -> PathBuf {
    static ADMIN: OnceLock<PathBuf> = OnceLock::new();
    ADMIN
        .get_or_init(|| {
            let dir = provision("rabbitmqadmin", "rabbitmqadmin", |staging| {
                std::fs::create_dir_all(staging)
                    .unwrap_or_else(|e| panic!("expected to create {staging:?}, got {e}"));
                let script = staging.join("rabbitmqadmin");
                if !extract_rabbitmqadmin(staging, &script) {
                    let installed = Path::new("/usr/bin/rabbitmqadmin");
                    std::fs::copy(installed, &script).unwrap_or_else(|e| {
                        panic!("expected rabbitmqadmin from Debian's rabbitmq-server package or {installed:?}, got {e}")
                    });
                }
            });
            dir.join("rabbitmqadmin")
        })
        .clone()
}

/// `apt-get download rabbitmq-server` into `dir` (after `apt-get update` if the first try
/// fails) and its `/usr/bin/rabbitmqadmin` extracted to `script`; false if that fails.
fn extract_rabbitmqadmin(dir: &Path, script: &Path) -> bool {
    let download = || {
        Command::new("apt-get")
            .args(["download", "rabbitmq-server"])
            .current_dir(dir)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !download() {
        let _ = Command::new("apt-get").arg("update").status();
        if !download() {
            return false;
        }
    }
    let Some(deb) = std::fs::read_dir(dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
    else {
        return false;
    };
    let extract = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -xO ./usr/bin/rabbitmqadmin > '{}'",
        deb.display(),
        script.display()
    );
    let ok = Command::new("sh")
        .args(["-c", &extract])
        .status()
        .is_ok_and(|s| s.success());
    let _ = std::fs::remove_file(&deb);
    ok && std::fs::metadata(script).is_ok_and(|m| m.len() > 0)
}
