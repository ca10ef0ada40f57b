//! # testkit — real outside programs for tests
//!
//! Tests talk to real services. This crate starts them on free loopback ports in temporary folders and
//! stops them on drop. Where a program is missing, [`require`] prints why the test is skipped and returns
//! `None` — except when `CITYBRAIN_REQUIRE_SERVICES=1` (set by CI), where it panics so the run fails.
//!
//! # Layout
//! - [`require`], [`services_required`], [`free_port`]: the skip-or-fail rule and ports.
//! - [`Mosquitto`]: a broker with persistence (for durability tests), restartable on the same port.
//! - [`VictoriaMetrics`]: accepts the InfluxDB v2 write API; read back through `/api/v1/export`.
//! - [`Chromedriver`]: WebDriver for Debian's headless Chromium.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True when `CITYBRAIN_REQUIRE_SERVICES=1`: a missing program fails the test instead of skipping it.
pub fn services_required() -> bool {
    std::env::var("CITYBRAIN_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Finds `program` in the usual places (`PATH`, `/usr/sbin`, `/usr/bin`).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.push("/usr/bin".into());
    dirs.into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The skip-or-fail rule: returns the program's path, or prints `SKIP <test>: <program> not installed`
/// and returns `None`.
///
/// # Panics
/// When the program is missing and [`services_required`] is true.
pub fn require(program: &str, test: &str) -> Option<PathBuf> {
    match find_program(program) {
        Some(p) => Some(p),
        None if services_required() => {
            panic!("{test}: `{program}` is not installed and CITYBRAIN_REQUIRE_SERVICES=1")
        }
        None => {
            eprintln!(
                "SKIP {test}: `{program}` is not installed (apt-get install it to run this test)"
            );
            None
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; a race with other processes is possible but rare).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// Waits until `addr` accepts TCP connections.
///
/// # Panics
/// After `timeout` without success.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{addr} did not open within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Mosquitto broker on a free loopback port with persistence in a temporary folder.
pub struct Mosquitto {
    /// The broker's port on 127.0.0.1.
    pub port: u16,
    program: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts a broker (anonymous access, persistence on, `set_tcp_nodelay true`), or `None` (skip)
    /// when Mosquitto is not installed.
    ///
    /// # Panics
    /// When required and missing, or when it does not start.
    pub fn start(test: &str) -> Option<Mosquitto> {
        Self::start_with(test, "allow_anonymous true\n")
    }

    /// Like [`Mosquitto::start`] with extra config lines (e.g. `password_file`, `acl_file`).
    ///
    /// # Panics
    /// As [`Mosquitto::start`].
    pub fn start_with(test: &str, extra: &str) -> Option<Mosquitto> {
        let program = require("mosquitto", test)?;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n{extra}persistence true\npersistence_location {}/\n\
                 autosave_interval 1\nset_tcp_nodelay true\nmax_queued_messages 0\nuser root\n\
                 log_dest file {}/mosquitto.log\n",
                dir.path().display(),
                dir.path().display()
            ),
        )
        .expect("writing mosquitto.conf");
        let mut m = Mosquitto {
            port,
            program,
            dir,
            child: None,
        };
        m.spawn();
        Some(m)
    }

    /// The config folder (for password and ACL files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.program)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mosquitto");
        self.child = Some(child);
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(10),
        );
    }

    /// Stops the broker (SIGKILL: in-memory state since the last autosave is lost, like a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the broker gracefully (SIGTERM: it saves its persistence file first).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same persistence folder.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// True while the broker process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// VictoriaMetrics on a free loopback port (accepts `POST /api/v2/write`, InfluxDB line protocol).
pub struct VictoriaMetrics {
    /// HTTP port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl VictoriaMetrics {
    /// Starts it (with `-search.latencyOffset=0s` so fresh points are visible), or `None` (skip).
    ///
    /// # Panics
    /// When required and missing, or when it does not start.
    pub fn start(test: &str) -> Option<VictoriaMetrics> {
        let program = require("victoria-metrics", test)?;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Command::new(program)
            .arg(format!("-storageDataPath={}", dir.path().display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-search.latencyOffset=0s")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting victoria-metrics");
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(20),
        );
        Some(VictoriaMetrics {
            port,
            _dir: dir,
            child,
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:8428`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver on a free loopback port, for Debian's Chromium (`/usr/bin/chromium`).
pub struct Chromedriver {
    /// WebDriver port on 127.0.0.1.
    pub port: u16,
    child: Child,
}

impl Chromedriver {
    /// Starts chromedriver, or `None` (skip) when chromium or chromedriver is missing.
    ///
    /// # Panics
    /// When required and missing, or when it does not start.
    pub fn start(test: &str) -> Option<Chromedriver> {
        require("chromium", test)?;
        let program = require("chromedriver", test)?;
        let port = free_port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(20),
        );
        Some(Chromedriver { port, child })
    }

    /// WebDriver URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Chromium arguments for a headless session with a fresh profile in `profile_dir`, without the
    /// background networking that fails slowly on a closed network.
    pub fn chromium_args(profile_dir: &Path) -> Vec<String> {
        [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(std::iter::once(format!(
            "--user-data-dir={}",
            profile_dir.display()
        )))
        .collect()
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mosquitto_starts_and_restarts_on_the_same_port() {
        let Some(mut m) = Mosquitto::start("testkit::mosquitto") else {
            return;
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], m.port));
        assert!(TcpStream::connect(addr).is_ok());
        m.kill();
        assert!(TcpStream::connect(addr).is_err());
        m.restart();
        assert!(TcpStream::connect(addr).is_ok());
    }
}
