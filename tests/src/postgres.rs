//! A throwaway PostgreSQL cluster for tests and benchmarks: installed by
//! `scripts/install-postgres.sh` when missing (Debian's package), created
//! with `initdb` in a temporary directory as the `postgres` user (initdb
//! refuses root), started with `pg_ctl` on a free loopback port, stopped
//! and removed on drop. A test that cannot get one fails and says why; it
//! never skips.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::tools::workspace_root;

/// A running cluster.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    owner: Option<(u32, u32)>,
    running: bool,
    /// `listen_addresses`: loopback, and a pod network's host address when asked.
    listen: String,
}

fn server_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = workspace_root().join("scripts/install-postgres.sh");
        let output = Command::new("bash").arg(&script).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed, so PostgreSQL is not available:\n{}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "postgres"]).output().expect("cannot run id");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("the postgres user has no id")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free port")
}

impl Postgres {
    /// Creates and starts a cluster. Panics with the reason when it cannot.
    pub fn start() -> Self {
        Self::start_listening(None)
    }

    /// As [`Postgres::start`], also listening on `host`, the stand-in
    /// node's address on its pod network ([`crate::node::Node::host_ip`]),
    /// and trusting connections from that network (its `/16`): the
    /// receiver pods reach it at [`Postgres::url_at`].
    pub fn start_for_pods(host: std::net::Ipv4Addr) -> Self {
        Self::start_listening(Some(host))
    }

    fn start_listening(host: Option<std::net::Ipv4Addr>) -> Self {
        let bin = server_bin().clone();
        let dir = tempfile::Builder::new().prefix("fusionhook-pg").tempdir().expect("temporary directory");
        // initdb refuses to run as root: as root, the cluster belongs to `postgres`.
        let root = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false);
        let owner = root.then(|| (id_of("-u"), id_of("-g")));
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the cluster directory");
        }
        let listen = host.map_or_else(|| "127.0.0.1".to_owned(), |h| format!("127.0.0.1,{h}"));
        let mut pg = Self { bin, dir, port: free_port(), owner, running: false, listen };
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"]);
        if let Some(host) = host {
            let hba = pg.dir.path().join("data/pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba).expect("pg_hba.conf");
            text.push_str(&format!("host all all {host}/16 trust\n"));
            std::fs::write(&hba, text).expect("pg_hba.conf");
        }
        pg.resume();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let mut command = Command::new(self.bin.join(tool));
        command.args(args).current_dir(self.dir.path());
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        let output = command.output().unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(
            output.status.success(),
            "{tool} {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// The connection string (trust authentication on loopback).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The connection string for a client at `host` (see [`Postgres::start_for_pods`]).
    pub fn url_at(&self, host: std::net::Ipv4Addr) -> String {
        format!("postgres://postgres@{host}:{}/postgres", self.port)
    }

    /// The directory of the server's tools (`pgbench`, `psql`).
    pub fn tools(&self) -> &std::path::Path {
        &self.bin
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: connections are cut at once).
    pub fn stop(&mut self) {
        if self.running {
            let data = self.data();
            self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
            self.running = false;
        }
    }

    /// Starts it again on the same data and port.
    pub fn resume(&mut self) {
        let data = self.data();
        let log = self.dir.path().join("server.log").display().to_string();
        let socket = self.dir.path().display().to_string();
        let options = format!("-p {} -k {socket} -c listen_addresses={} -c max_connections=200", self.port, self.listen);
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start"]);
        self.running = true;
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data();
            let mut command = Command::new(self.bin.join("pg_ctl"));
            command.args(["-D", &data, "-m", "immediate", "-w", "stop"]);
            if let Some((uid, gid)) = self.owner {
                command.uid(uid).gid(gid);
            }
            let _ = command.output();
        }
    }
}
