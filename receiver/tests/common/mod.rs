//! The real receiver binary, started for a test.

#![allow(dead_code)]

pub mod sink;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_fusionhook-receiver");

/// A receiver process; killed on drop.
pub struct Receiver {
    child: Child,
    pub addr: SocketAddr,
    /// The admin API's address, when the config has one.
    pub admin: Option<SocketAddr>,
    dir: Option<tempfile::TempDir>,
}

impl Receiver {
    /// Starts the binary with `yaml` (listening on a free port) and waits
    /// for its "listening" log line.
    pub fn start(yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, yaml)
    }

    pub fn start_in(dir: tempfile::TempDir, yaml: &str) -> Self {
        Self::start_with_env(dir, yaml, &[])
    }

    /// As [`Receiver::start_in`], with these environment variables.
    pub fn start_with_env(dir: tempfile::TempDir, yaml: &str, env: &[(&str, String)]) -> Self {
        let config = dir.path().join("receiver.yaml");
        std::fs::write(&config, format!("listen: 127.0.0.1:0\n{yaml}")).unwrap();
        let mut command = Command::new(BIN);
        command.arg("--config").arg(&config).stdout(Stdio::piped()).stderr(Stdio::inherit());
        // Only what the test gives: the runner's own OTEL_* would change what is traced.
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("OTEL_")) {
            command.env_remove(name);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (admin_tx, admin_rx) = std::sync::mpsc::channel();
        let rx = fusionhook_tests::logs::announced(stdout, "fusionhook-receiver listening", "address", move |line| {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && v["message"] == "admin API listening"
            {
                let _ = admin_tx.send(v["address"].as_str().unwrap_or_default().to_owned());
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(20)).expect("receiver did not start").parse().unwrap();
        let admin = yaml
            .contains("\nadmin:")
            .then(|| admin_rx.recv_timeout(Duration::from_secs(20)).expect("admin API did not start").parse().unwrap());
        Self { child, addr, admin, dir: Some(dir) }
    }

    /// The directory holding the config (and whatever the test put there).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.as_ref().unwrap().path()
    }

    /// Kills the process at once (SIGKILL) and hands back its directory.
    pub fn kill_9(mut self) -> tempfile::TempDir {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.dir.take().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs `body` as JSON to `/events` with `headers`; the status and the
    /// answer's JSON (null when it has none).
    pub async fn post(&self, client: &reqwest::Client, headers: &[(&str, String)], body: Vec<u8>) -> (http::StatusCode, serde_json::Value) {
        let mut request = client.post(self.url("/events")).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.body(body).send().await.unwrap();
        let status = response.status();
        (status, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(serde_json::Value::Null))
    }

    /// Resident memory now and at its peak, in KiB (Linux `/proc`).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> u64 {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn terminate(&self) {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
