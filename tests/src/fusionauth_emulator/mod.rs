//! A FusionAuth emulator: the Webhook, Tenant (event configuration), Key,
//! JWKS and Webhook Event Log APIs answered as FusionAuth answers them, and a
//! delivery engine that raises events the way FusionAuth sends them.
//!
//! Every behaviour is traced to `docs/FACTS.md` (sections cited
//! as §x); inferred or open points live in [`uncertain`].
//!
//! The emulator's own endpoints (not FusionAuth's) are under `/emulator/`:
//! - `POST /emulator/events` `{"tenantId": …, "event": {"type": …, …}}` raises an
//!   event and answers with a delivery report;
//! - `POST /emulator/tenants` `{"id"?: …, "name": …}` creates a tenant;
//! - `POST /emulator/api-keys` `{"key": …, "tenantId"?: …}` adds an API key
//!   (tenant-scoped when `tenantId` is given);
//! - `POST /emulator/faults` `{"status": 503, "count": 2}` makes the next API
//!   calls fail with that status;
//! - `POST /emulator/resolve` `{"host": "svc.ns.svc", "address": "127.0.0.1:8080"}`
//!   makes deliveries to that host go to that address.

mod api;
pub mod delivery;
pub mod keys;
pub mod patch;
pub mod uncertain;
pub mod validate;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use delivery::{DeliveryReport, RaiseError};

/// The tenant every emulator starts with (FusionAuth's "Default" tenant).
pub const DEFAULT_TENANT_ID: &str = "e872a880-b14f-6d62-c312-cb40f22af465";

/// Everything FusionAuth would keep in its database.
#[derive(Default)]
pub struct State {
    /// API keys; `Some(tenant)` for tenant-scoped keys.
    pub api_keys: BTreeMap<String, Option<Uuid>>,
    /// Webhooks as FusionAuth returns them.
    pub webhooks: BTreeMap<Uuid, Value>,
    /// Tenants (id, name, eventConfiguration).
    pub tenants: BTreeMap<Uuid, Value>,
    /// Key Master.
    pub keys: BTreeMap<Uuid, keys::KeyRecord>,
    /// Webhook Event Log, oldest first.
    pub event_logs: Vec<Value>,
    /// `systemConfiguration.webhookEventLogConfiguration` (FACTS.md §c.7).
    pub event_log_configuration: Value,
    /// API keys limited to some endpoints (path patterns like
    /// `/api/webhook`); a call to any other answers 401, as FusionAuth
    /// answers a key without permission for an endpoint.
    pub key_endpoints: BTreeMap<String, Vec<String>>,
    /// Next event log sequence number.
    pub sequence: i64,
    /// Injected failures for the next API calls.
    pub faults: VecDeque<u16>,
    /// Host -> address overrides for deliveries.
    pub resolve: BTreeMap<String, Vec<SocketAddr>>,
    /// How many more delivery answers to lose (see [`Emulator::lose_answers`]).
    pub lost_answers: usize,
    /// Round-robin position over each host's resolved addresses.
    pub turns: BTreeMap<String, usize>,
    /// Count of API calls by "METHOD path-pattern" (for tests that count writes).
    pub calls: BTreeMap<String, u64>,
}

impl validate::Lookups for State {
    fn tenant_exists(&self, id: Uuid) -> bool {
        self.tenants.contains_key(&id)
    }
    fn key_can_sign(&self, id: Uuid) -> Option<bool> {
        self.keys.get(&id).map(keys::KeyRecord::can_sign)
    }
}

/// Emulator settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The global API key.
    pub api_key: String,
    /// Pause between retries of a failed delivery (FusionAuth retries
    /// back-to-back, FACTS.md §c.4; zero keeps tests deterministic).
    pub retry_delay: Duration,
}

/// A FusionAuth emulator (cheap to clone; clones share state).
#[derive(Clone)]
pub struct Emulator {
    state: Arc<Mutex<State>>,
    settings: Arc<Settings>,
}

/// Current time, epoch ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Emulator {
    /// An emulator with the default tenant and one global API key.
    pub fn new(settings: Settings) -> Self {
        let mut state = State::default();
        state.api_keys.insert(settings.api_key.clone(), None);
        state.sequence = 1;
        // On and kept, as on an instance upgraded from before 1.57.0. New
        // instances since then start with the log off and deletion on at 30
        // days (FusionAuth 1.57.0's release notes; its API reference still
        // says on, FACTS.md §c.7): `configure_event_log(false, Some(30))`,
        // as the backfill tests do.
        state.event_log_configuration = json!({"enabled": true, "delete": {"enabled": false, "numberOfDaysToRetain": 30}});
        let emulator = Self { state: Arc::new(Mutex::new(state)), settings: Arc::new(settings) };
        emulator.add_tenant(Uuid::parse_str(DEFAULT_TENANT_ID).unwrap_or_default(), "Default");
        emulator
    }

    /// Locks the state (tests may inspect or edit it directly).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a tenant with nothing enabled (FACTS.md §c.6: a new tenant
    /// starts with an empty eventConfiguration).
    pub fn add_tenant(&self, id: Uuid, name: &str) -> Value {
        let now = now_ms();
        let tenant = json!({"id": id, "name": name, "eventConfiguration": {"events": {}}, "insertInstant": now, "lastUpdateInstant": now});
        self.state().tenants.insert(id, tenant.clone());
        tenant
    }

    /// Adds an API key, tenant-scoped when `tenant` is given.
    pub fn add_api_key(&self, key: &str, tenant: Option<Uuid>) {
        self.state().api_keys.insert(key.to_owned(), tenant);
    }

    /// Makes deliveries to `host` connect to `address`.
    pub fn resolve(&self, host: &str, address: SocketAddr) {
        self.resolve_all(host, vec![address]);
    }

    /// Makes deliveries to `host` connect to each of `addresses` in turn
    /// (one attempt each, as a Service spreads connections over its pods).
    pub fn resolve_all(&self, host: &str, addresses: Vec<SocketAddr>) {
        let mut state = self.state();
        if state.resolve.get(host) != Some(&addresses) {
            state.resolve.insert(host.to_owned(), addresses);
        }
    }

    /// The answers to the next `count` delivery attempts to a resolved host
    /// (a Service's pods) are lost on the way back: the receiver handled each, FusionAuth's read times out (a
    /// network fault, to show what a retry of a handled event does).
    pub fn lose_answers(&self, count: usize) {
        self.state().lost_answers += count;
    }

    /// Adds a global API key allowed to call only `endpoints` (path
    /// patterns, e.g. `/api/webhook`, `/api/webhook/{id}`).
    pub fn add_limited_api_key(&self, key: &str, endpoints: &[&str]) {
        let mut state = self.state();
        state.api_keys.insert(key.to_owned(), None);
        state.key_endpoints.insert(key.to_owned(), endpoints.iter().map(|e| (*e).to_owned()).collect());
    }

    /// Sets the Webhook Event Log switch and retention (`None`: not deleted),
    /// as `PATCH /api/system-configuration` would.
    pub fn configure_event_log(&self, enabled: bool, retain_days: Option<u32>) {
        self.state().event_log_configuration = json!({
            "enabled": enabled,
            "delete": {"enabled": retain_days.is_some(), "numberOfDaysToRetain": retain_days.unwrap_or(30)},
        });
    }

    /// The next `count` API calls answer `status`.
    pub fn inject_faults(&self, status: u16, count: usize) {
        self.state().faults.extend(std::iter::repeat_n(status, count));
    }

    /// How many API calls matched `"METHOD /api/..."` patterns so far.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.state().calls.clone()
    }

    /// Raises an event in `tenant` and delivers it as FusionAuth would.
    pub async fn raise(&self, tenant: Option<Uuid>, event: Value) -> Result<DeliveryReport, RaiseError> {
        delivery::raise(self, tenant, event).await
    }

    /// The router (FusionAuth's API plus `/emulator/`).
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }

    /// Serves on `addr` until the handle is stopped.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<RunningEmulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = self.router();
        let task = crate::serve::spawn(listener, app);
        Ok(RunningEmulator { addr, task })
    }
}

/// A serving emulator.
pub struct RunningEmulator {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RunningEmulator {
    /// Base URL, e.g. `http://127.0.0.1:9011` (no trailing slash, like every base URL here).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
