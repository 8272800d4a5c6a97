//! `mcpgw run` as the e2e tests drive it: the binary the build made, on free
//! ports, with a private config and cache directory, its output in a log
//! file; stopped with SIGTERM (then SIGKILL) when dropped.
//!
//! The binary is `<workspace>/target/debug/mcpgw`; `./build.sh test` builds it
//! (`cargo build -p mcpgw`) before the tests.

use crate::envoy::{envoy_bin, free_port, workspace_root};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn mcpgw_bin() -> PathBuf {
    let p = workspace_root().join("target/debug/mcpgw");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p mcpgw` (./build.sh test does)",
        p.display()
    );
    p
}

/// A running `mcpgw run`, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Gateway {
    pub child: Child,
    pub port: u16,
    pub admin_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gateway {
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("mcpgw.log");
        let port = free_port();
        let admin_port = free_port();
        let out = std::fs::File::create(&log).expect("log");
        let mut cmd = Command::new(mcpgw_bin());
        cmd.arg("run")
            .args(args)
            .args([
                "--port",
                &port.to_string(),
                "--admin-port",
                &admin_port.to_string(),
            ])
            .args(["--envoy", &envoy_bin().display().to_string()])
            // A private config dir: tests never touch the user's session key.
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .env_remove("MCPGW_SESSION_KEY")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start mcpgw");
        let mut gw = Gateway {
            child,
            port,
            admin_port,
            log,
            _dir: dir,
        };
        gw.wait_for("mcpgw: serving http://", Duration::from_secs(60));
        gw
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log contains `needle`; panic with the log if mcpgw exits.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.log().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mcpgw exited ({status}) before {needle:?}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "mcpgw did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- mcpgw log ----\n{}", self.log());
        }
    }
}
