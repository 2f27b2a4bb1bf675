//! A real Kubernetes control plane for the tests, envtest-style: etcd,
//! kube-apiserver (RBAC on, the default admission plugins, generated
//! serving certificate and service-account key, a token for an admin in
//! `system:masters`) and kube-controller-manager (every controller but the
//! node ones, which would evict the stand-in kubelet's pods), built from
//! Kubernetes' published Go modules by `scripts/install-kube.sh` (run on
//! first use: it builds what is missing, with progress, or says why not).
//!
//! One control plane per test binary ([`ControlPlane::shared`]), one
//! namespace per test ([`ControlPlane::namespace`]). Nothing is left
//! behind: every process is started with `PR_SET_PDEATHSIG` (through
//! util-linux's `setpriv`) from one thread that lives as long as the test
//! process, so it dies with it, and each control plane's folder
//! (`$TMPDIR/fusionhook-kube/<pid>-<n>`) is removed by the next start once
//! its process is gone. Everything listens on loopback only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::tools::{tools, workspace_root};

/// The Kubernetes release the tests run (hack/kube/go.mod).
pub const KUBERNETES_VERSION: &str = "v1.37.2";

/// A running control plane.
pub struct ControlPlane {
    /// Its folder: certificates, kubeconfigs, data, logs.
    pub dir: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// The admin's kubeconfig (`system:masters`).
    pub kubeconfig: PathBuf,
    /// The CA that signed the API server's certificate (PEM file).
    pub ca: PathBuf,
    processes: Mutex<Vec<Child>>,
    namespaces: AtomicU32,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in self.processes.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The folder holding every control plane's folder.
fn base() -> PathBuf {
    std::env::temp_dir().join("fusionhook-kube")
}

/// Removes the folders of control planes whose test process is gone.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(base()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The binaries: built (or linked from `KUBEBUILDER_ASSETS`) by
/// `scripts/install-kube.sh` on first use.
fn binaries() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = workspace_root().join("scripts/install-kube.sh");
        // Its progress goes to the terminal (stderr is inherited).
        let output = Command::new("bash").arg(&script).stderr(Stdio::inherit()).output().map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !output.status.success() {
            return Err(
                "the tests' Kubernetes control plane could not be built: run `scripts/install-kube.sh` (it needs Go 1.26 and the Go module proxy) and see what it says"
                    .to_owned(),
            );
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Starts `command` so that it dies with this process. `PR_SET_PDEATHSIG`
/// fires when the *thread* that forked the child ends, so every child is
/// forked by one thread that never ends.
pub fn spawn_tied(command: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("fusionhook-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("a thread for the control plane's processes");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    spawner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).send((command, reply)).map_err(std::io::Error::other)?;
    answer.recv().map_err(std::io::Error::other)?
}

/// `program args…` under `setpriv --pdeathsig KILL`, its output into `log`.
pub fn tied(program: &Path, log: &Path) -> anyhow::Result<Command> {
    let out = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut command = Command::new("setpriv");
    command.args(["--pdeathsig", "KILL", "--"]).arg(program).stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
    Ok(command)
}

/// A free loopback port (bound and released: another process may take it
/// meanwhile, which the start then reports).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ControlPlane {
    /// The control plane of this test binary, started on first use.
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<ControlPlane> = OnceLock::new();
        SHARED.get_or_init(|| ControlPlane::start().unwrap_or_else(|e| panic!("the tests' Kubernetes control plane: {e:#}")))
    }

    /// Starts one: etcd, kube-apiserver, kube-controller-manager, ready.
    pub fn start() -> anyhow::Result<Self> {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let bin = binaries()?;
        let dir = base().join(format!("{}-{}", std::process::id(), STARTED.fetch_add(1, Ordering::SeqCst)));
        std::fs::create_dir_all(&dir)?;
        // It holds the admin's token and the CA's key: for this user only.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let pki = Pki::write(&dir)?;
        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(&kubeconfig, &server, &pki.ca, &pki.admin_token)?;
        let plane = Self {
            dir: dir.clone(),
            server,
            kubeconfig,
            ca: pki.ca.clone(),
            processes: Mutex::new(Vec::new()),
            namespaces: AtomicU32::new(0),
        };

        let etcd = format!("http://127.0.0.1:{etcd_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut command = tied(&bin.join("etcd"), &dir.join("etcd.log"))?;
        command
            .arg("--data-dir")
            .arg(dir.join("etcd"))
            .args(["--listen-client-urls", &etcd, "--advertise-client-urls", &etcd])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .arg(format!("--initial-cluster=default={peer}"))
            .args(["--unsafe-no-fsync", "--log-level", "warn"]);
        plane.run(command)?;

        let mut command = tied(&bin.join("kube-apiserver"), &dir.join("kube-apiserver.log"))?;
        command
            .args(["--etcd-servers", &etcd, "--bind-address", "127.0.0.1", "--secure-port", &api_port.to_string()])
            // A loopback advertise address: no `kubernetes` Endpoints (no route off the machine).
            .args(["--advertise-address", "127.0.0.1", "--endpoint-reconciler-type", "none"])
            .arg("--tls-cert-file")
            .arg(&pki.serving_cert)
            .arg("--tls-private-key-file")
            .arg(&pki.serving_key)
            .arg("--client-ca-file")
            .arg(&pki.ca)
            .arg("--token-auth-file")
            .arg(&pki.tokens)
            .args(["--authorization-mode", "Node,RBAC", "--service-account-issuer", "https://kubernetes.default.svc"])
            .arg("--service-account-key-file")
            .arg(&pki.service_account_public)
            .arg("--service-account-signing-key-file")
            .arg(&pki.service_account_key)
            // A /16: every receiver has a Service with a ClusterIP (never
            // dialled: no kube-proxy), and the operator at scale makes
            // thousands; a /24 ran out at 254.
            .args(["--service-cluster-ip-range", "10.96.0.0/16", "--allow-privileged=false"])
            .arg("--cert-dir")
            .arg(dir.join("apiserver-certs"));
        plane.run(command)?;
        plane.wait_ready().context("kube-apiserver did not become ready (see kube-apiserver.log in the control plane's folder)")?;

        let mut command = tied(&bin.join("kube-controller-manager"), &dir.join("kube-controller-manager.log"))?;
        command
            .arg("--kubeconfig")
            .arg(&plane.kubeconfig)
            .args(["--leader-elect=false", "--secure-port=0", "--use-service-account-credentials"])
            .arg("--service-account-private-key-file")
            .arg(&pki.service_account_key)
            .arg("--root-ca-file")
            .arg(&pki.ca)
            // The node controllers would mark the stand-in kubelet's Node
            // NotReady and evict its pods.
            .arg("--controllers=*,-node-lifecycle-controller,-taint-eviction-controller,-node-ipam-controller");
        plane.run(command)?;
        // The ServiceAccount admission plugin holds pods until a namespace's
        // `default` ServiceAccount exists: the controllers are up once it does.
        plane.wait_for("the default ServiceAccount", Duration::from_secs(60), || {
            plane.kubectl(&["get", "serviceaccount", "default", "-n", "default", "-o", "name"]).is_ok()
        })?;
        Ok(plane)
    }

    fn run(&self, command: Command) -> anyhow::Result<()> {
        let child = spawn_tied(command).context("cannot start a control plane process (needs util-linux's setpriv)")?;
        self.processes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(child);
        Ok(())
    }

    fn wait_for(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            // A process that exited first (a port another took meanwhile):
            // what answers may be someone else's.
            for child in self.processes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!(
                        "a control plane process exited ({status}) while waiting for {what}; the ends of its logs:\n{}",
                        self.log_tails()
                    );
                }
            }
            if done() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{what} did not come within {} s; the ends of the logs:\n{}", limit.as_secs(), self.log_tails());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last lines of every process's log (the folder goes with a failed start).
    fn log_tails(&self) -> String {
        let mut out = String::new();
        for name in ["etcd.log", "kube-apiserver.log", "kube-controller-manager.log"] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("== {name}\n{}\n", lines[lines.len().saturating_sub(8)..].join("\n")));
        }
        out
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        self.wait_for("/readyz", Duration::from_secs(90), || self.kubectl(&["get", "--raw", "/readyz"]).is_ok_and(|o| o.trim() == "ok"))
    }

    /// A kube client as the admin.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Runs the real `kubectl` as the admin; its stdout, or its stderr as the error.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.kubectl_as(&self.kubeconfig, args)
    }

    /// Runs the real `kubectl` with `kubeconfig`.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(&tools().kubectl).args(args).env("KUBECONFIG", kubeconfig).current_dir(workspace_root()).output()?;
        if !output.status.success() {
            bail!("{}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// A new namespace for one test: `<prefix>-<n>`.
    pub fn namespace(&self, prefix: &str) -> anyhow::Result<String> {
        let name = format!("{prefix}-{}", self.namespaces.fetch_add(1, Ordering::SeqCst));
        self.kubectl(&["create", "namespace", &name])?;
        Ok(name)
    }

    /// A kubeconfig for ServiceAccount `name` in `namespace`, with a token
    /// from the TokenRequest API, as a pod of it would have (valid for a
    /// week: a kubelet would refresh it, and the sandbox may run for days).
    pub fn kubeconfig_for_service_account(&self, namespace: &str, name: &str) -> anyhow::Result<PathBuf> {
        let token = self.kubectl(&["create", "token", name, "-n", namespace, "--duration", "168h"])?;
        let path = self.dir.join(format!("sa-{namespace}-{name}.kubeconfig"));
        write_kubeconfig(&path, &self.server, &self.ca, token.trim())?;
        Ok(path)
    }

    /// A kubeconfig for a user `name` in `groups` (a static token the API
    /// server knows: see `Pki::write`'s users).
    pub fn kubeconfig_for_user(&self, name: &str) -> anyhow::Result<PathBuf> {
        let tokens = std::fs::read_to_string(self.dir.join("tokens.csv"))?;
        let token = tokens
            .lines()
            .find_map(|l| {
                let fields: Vec<&str> = l.split(',').collect();
                (fields.get(1) == Some(&name)).then(|| fields[0].to_owned())
            })
            .ok_or_else(|| anyhow!("no user {name} in tokens.csv"))?;
        let path = self.dir.join(format!("user-{name}.kubeconfig"));
        write_kubeconfig(&path, &self.server, &self.ca, &token)?;
        Ok(path)
    }
}

/// The users the API server knows by static token, besides the admin:
/// people the tests bind to the README's Roles.
pub const USERS: &[&str] = &["alice", "bob"];

/// Certificates, keys and tokens, written into a control plane's folder.
struct Pki {
    ca: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    service_account_key: PathBuf,
    service_account_public: PathBuf,
    tokens: PathBuf,
    admin_token: String,
}

impl Pki {
    fn write(dir: &Path) -> anyhow::Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name.push(DnType::CommonName, "fusionhook-tests-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec!["localhost".to_owned()])?;
        serving.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        serving.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;
        let service_account_key = KeyPair::generate()?;
        let token = || uuid::Uuid::new_v4().simple().to_string();
        let admin_token = token();
        let mut tokens = format!("{admin_token},admin,admin,system:masters\n");
        for user in USERS {
            tokens.push_str(&format!("{},{user},{user}\n", token()));
        }
        let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, text)?;
            Ok(path)
        };
        Ok(Self {
            ca: write("ca.crt", &ca_cert.pem())?,
            serving_cert: write("apiserver.crt", &serving_cert.pem())?,
            serving_key: write("apiserver.key", &serving_key.serialize_pem())?,
            service_account_key: write("service-account.key", &service_account_key.serialize_pem())?,
            service_account_public: write("service-account.pub", &service_account_key.public_key_pem())?,
            tokens: write("tokens.csv", &tokens)?,
            admin_token,
        })
    }
}

fn write_kubeconfig(path: &Path, server: &str, ca: &Path, token: &str) -> anyhow::Result<()> {
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: tests\n  cluster: {{server: \"{server}\", certificate-authority: \"{}\"}}\n\
         users:\n- name: user\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: tests\n  context: {{cluster: tests, user: user}}\n\
         current-context: tests\n",
        ca.display()
    );
    std::fs::write(path, yaml)?;
    Ok(())
}
