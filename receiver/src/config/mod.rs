//! The receiver's config file (the contract in DESIGN.md, plus options).
//!
//! Read once at start: YAML -> raw serde structs (unknown keys refused) ->
//! checked values. Every error names the field, e.g.
//! `routes[0].http.url: ...`. Secret files are read here too, so a missing
//! mounted Secret fails the start with the field that names it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fusionhook_fusionauth::event_types;
use fusionhook_fusionauth::signature::{Algorithm, is_hmac};
use http::{HeaderName, Method, StatusCode};

use crate::action::{Action, BodyMode, HeaderValueSource, HttpAction, LogAction};
use crate::dedupe::DedupeConfig;
use crate::delivery::retry::{RetryPolicy, Schedule};
use crate::route::{Ack, Durable, EventFilter, Ordering, Route, Unmatched};
use crate::secret::{Secret, SecretSource};
use crate::server::ShutdownConfig;
use crate::template::{FieldPath, Template};
use crate::verify::{AuthConfig, SignatureConfig};

pub mod file;

pub use file::{
    AdminFile, AuthFile, BasicFile, ConfigFile, DedupeFile, DeliveryFile, HeaderValueFile, HttpFile, LogFile, RetryFile, RouteFile,
    ShutdownFile, SignFile, SignatureFile, StoreFile,
};

/// FusionAuth's admin-UI default webhook read timeout, ms (FACTS.md §a.3).
pub const DEFAULT_READ_TIMEOUT_MS: u64 = 2000;

/// The default body limit. FusionAuth's largest published event is 4.3 KiB
/// (`audit-log.create`), but `user.data` and `registration.data` are
/// free-form JSON without a documented limit, and a 413 loses a real event:
/// the defence before authentication is the header check and the budget on
/// unauthenticated bytes, not a tight body limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The default budget for bodies read before a header credential matched.
pub const DEFAULT_UNAUTHENTICATED_BODY_BUDGET: usize = 16 * 1024 * 1024;

/// The default number of connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// A config that cannot be used. The message starts with the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(field: impl std::fmt::Display, message: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{field}: {message}"))
}

/// The checked config.
#[derive(Debug)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Path FusionAuth posts to.
    pub path: String,
    /// Authentication.
    pub auth: AuthConfig,
    /// Routes, in config order.
    pub routes: Vec<Route>,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// Bytes of bodies read before any header credential matched, all
    /// requests together (signature-only or unauthenticated setups); past
    /// it, 503.
    pub unauthenticated_body_budget: usize,
    /// Connections served at once; at the limit the one idle the longest
    /// is closed to make room.
    pub max_connections: usize,
    /// Time allowed to receive the whole body (slow clients get 408).
    pub body_timeout: Duration,
    /// Time allowed for a request head on a new or kept-alive connection
    /// (then it is closed).
    pub header_timeout: Duration,
    /// FusionAuth's read timeout for this webhook; route timeouts must fit inside.
    pub read_timeout: Duration,
    /// Deduplication.
    pub dedupe: DedupeConfig,
    /// Answer for events no route takes.
    pub unmatched: Unmatched,
    /// How often secret files are re-read.
    pub secret_refresh: Duration,
    /// Shutdown timing.
    pub shutdown: ShutdownConfig,
    /// Where accepted events are kept.
    pub store: StoreConfig,
    /// The admin API.
    pub admin: Option<AdminConfig>,
    /// How durable deliveries are worked off.
    pub delivery: DeliveryConfig,
    /// Non-fatal findings (e.g. an event name FusionAuth does not know).
    pub warnings: Vec<String>,
}

/// The store, checked.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// None: every route is sync.
    None,
    /// redb in this directory.
    Embedded(PathBuf),
    /// PostgreSQL; the connection string (from a file).
    Postgres(Arc<Secret>),
}

/// The admin API, checked.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Its own address.
    pub listen: SocketAddr,
    /// The tokens it accepts, each with what it may do.
    pub tokens: Vec<(Scope, Arc<Secret>)>,
}

/// What an admin token may do. Each scope may also read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything (`admin.tokenFile`).
    All,
    /// Stats, deliveries, events (`admin.readTokenFile`).
    Read,
    /// Read, replay and discard (`admin.replayTokenFile`).
    Replay,
    /// Read and ingest (`admin.ingestTokenFile`): an ingested event runs
    /// through the routes without FusionAuth's credentials.
    Ingest,
}

impl From<fusionhook_api::names::AdminScope> for Scope {
    fn from(scope: fusionhook_api::names::AdminScope) -> Self {
        match scope {
            fusionhook_api::names::AdminScope::Read => Scope::Read,
            fusionhook_api::names::AdminScope::Replay => Scope::Replay,
            fusionhook_api::names::AdminScope::Ingest => Scope::Ingest,
        }
    }
}

impl Scope {
    /// Whether a token of this scope may do what `needed` names.
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::All || needed == Scope::Read || self == needed
    }

    /// Its name in requests (`/v1/prove`) and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Read => "read",
            Scope::Replay => "replay",
            Scope::Ingest => "ingest",
        }
    }
}

/// Durable delivery settings, checked.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryConfig {
    /// How often each durable route looks for due deliveries when not woken.
    pub poll_interval: Duration,
    /// How long delivered deliveries stay visible.
    pub retention: Duration,
}

/// The default `concurrency` of a durable route.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// The default `timeoutMs` of a durable route's call (a sync route's must
/// fit in FusionAuth's read timeout; a durable one's need not).
pub const DEFAULT_DURABLE_TIMEOUT_MS: u64 = 10_000;

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        Self::from_yaml(&text)
    }

    /// Parses and checks YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let raw: ConfigFile = serde_yaml::from_str(text).map_err(|e| ConfigError(format!("config: {e}")))?;
        check(raw, Files::Read)
    }

    /// Checks YAML text exactly as [`Config::from_yaml`] does, except that
    /// secret files are not read (they need not exist yet): the operator
    /// runs this on the config it renders before it writes anything, so a
    /// route the receiver would refuse becomes a condition on the resource
    /// instead of receiver pods that crash at start.
    pub fn check_without_files(text: &str) -> Result<(), ConfigError> {
        let raw: ConfigFile = serde_yaml::from_str(text).map_err(|e| ConfigError(format!("config: {e}")))?;
        check(raw, Files::Assume).map(drop)
    }

    /// Every secret the config loaded, for the reload loop.
    pub fn secrets(&self) -> Vec<Arc<Secret>> {
        let mut all = Vec::new();
        all.extend(self.auth.authorization.iter().cloned());
        all.extend(self.auth.previous_authorization.iter().cloned());
        if let Some((user, pass)) = &self.auth.basic {
            all.extend([user.clone(), pass.clone()]);
        }
        if let Some(sig) = &self.auth.signature {
            all.extend(sig.hmac_secret.iter().cloned());
            all.extend(sig.previous_hmac_secret.iter().cloned());
        }
        for route in &self.routes {
            if let Action::Http(http) = &route.action {
                for (_, value) in &http.headers {
                    if let HeaderValueSource::Secret(secret) = value {
                        all.push(secret.clone());
                    }
                }
                all.extend(http.sign.iter().cloned());
            }
        }
        all.extend(self.admin.iter().flat_map(|a| a.tokens.iter().map(|(_, token)| token.clone())));
        if let StoreConfig::Postgres(url) = &self.store {
            all.push(url.clone());
        }
        all
    }
}

/// Whether secret files are read, or assumed to hold a usable value.
#[derive(Clone, Copy)]
enum Files {
    Read,
    Assume,
}

impl Files {
    fn load(self, source: SecretSource) -> Result<Arc<Secret>, crate::secret::SecretError> {
        match (self, source) {
            (Files::Assume, SecretSource::File(path)) => Ok(Secret::load_assumed(path)),
            (_, source) => Secret::load(source),
        }
    }
}

fn secret(
    files: Files,
    field: &str,
    inline: Option<String>,
    file: Option<PathBuf>,
    file_field: &str,
) -> Result<Option<Arc<Secret>>, ConfigError> {
    let source = match (inline, file) {
        (Some(_), Some(_)) => return Err(err(field, format!("give either {field} or {file_field}, not both"))),
        (Some(value), None) => SecretSource::Inline(value),
        (None, Some(path)) => SecretSource::File(path),
        (None, None) => return Ok(None),
    };
    let shown = if matches!(source, SecretSource::File(_)) { file_field } else { field };
    files.load(source).map(Some).map_err(|e| err(shown, e))
}

fn positive_ms(field: &str, value: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(err(field, "must be greater than 0")),
        ms => Ok(Duration::from_millis(ms)),
    }
}

fn check(raw: ConfigFile, files: Files) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    let (listen, path) = check_listen(raw.listen, raw.path)?;
    let auth = check_auth(raw.auth, files)?;
    let read_timeout = positive_ms("readTimeoutMs", raw.read_timeout_ms, DEFAULT_READ_TIMEOUT_MS)?;
    let (max_body_bytes, unauthenticated_body_budget) = check_bodies(raw.max_body_bytes, raw.unauthenticated_body_budget_bytes)?;
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        return Err(err("maxConnections", "must be greater than 0"));
    }
    let store = check_store(raw.store, files)?;
    let has_store = !matches!(store, StoreConfig::None);
    let admin = raw.admin.map(|admin| check_admin(admin, listen, files)).transpose()?;
    if has_store && admin.is_none() {
        warnings.push("store is set without admin: dead deliveries can be seen in the metrics but not listed or replayed".into());
    }
    let routes = check_routes(raw.routes, has_store, read_timeout, files, &mut warnings)?;
    let dedupe = DedupeConfig {
        window: Duration::from_secs(raw.dedupe.window_seconds.unwrap_or(3600)),
        max_entries: raw.dedupe.max_entries.unwrap_or(100_000),
    };
    if dedupe.max_entries == 0 {
        return Err(err("dedupe.maxEntries", "must be greater than 0"));
    }
    Ok(Config {
        listen,
        path,
        auth,
        routes,
        max_body_bytes,
        unauthenticated_body_budget,
        max_connections,
        body_timeout: positive_ms("bodyTimeoutMs", raw.body_timeout_ms, 10_000)?,
        header_timeout: positive_ms("headerTimeoutMs", raw.header_timeout_ms, 5_000)?,
        read_timeout,
        dedupe,
        unmatched: raw.unmatched,
        secret_refresh: positive_ms("secretRefreshMs", raw.secret_refresh_ms, 5_000)?,
        shutdown: ShutdownConfig {
            delay: Duration::from_millis(raw.shutdown.delay_ms.unwrap_or(0)),
            drain_timeout: positive_ms("shutdown.drainTimeoutMs", raw.shutdown.drain_timeout_ms, 20_000)?,
        },
        delivery: DeliveryConfig {
            poll_interval: positive_ms("delivery.pollIntervalMs", raw.delivery.poll_interval_ms, 500)?,
            retention: raw.delivery.retention_seconds.map_or(dedupe.window, Duration::from_secs),
        },
        store,
        admin,
        warnings,
    })
}

/// `maxBodyBytes` and `unauthenticatedBodyBudgetBytes`: one whole body
/// always fits the budget.
fn check_bodies(max_body_bytes: Option<usize>, budget: Option<usize>) -> Result<(usize, usize), ConfigError> {
    let max_body_bytes = max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        return Err(err("maxBodyBytes", "must be greater than 0"));
    }
    let unauthenticated_body_budget = budget.unwrap_or(DEFAULT_UNAUTHENTICATED_BODY_BUDGET.max(max_body_bytes));
    if unauthenticated_body_budget < max_body_bytes || u32::try_from(unauthenticated_body_budget).is_err() {
        return Err(err(
            "unauthenticatedBodyBudgetBytes",
            format!("must be at least maxBodyBytes ({max_body_bytes}) and below 4 GiB, so one whole body always fits"),
        ));
    }
    Ok((max_body_bytes, unauthenticated_body_budget))
}

/// `listen` and `path`, defaults applied.
fn check_listen(listen: Option<String>, path: Option<String>) -> Result<(SocketAddr, String), ConfigError> {
    let listen_text = listen.unwrap_or_else(|| "0.0.0.0:8080".to_owned());
    let listen: SocketAddr =
        listen_text.parse().map_err(|_| err("listen", format!("`{listen_text}` is not an address like 0.0.0.0:8080")))?;
    let path = path.unwrap_or_else(|| "/events".to_owned());
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) || path.contains("{") {
        return Err(err("path", format!("`{path}` must be a plain absolute path like /events")));
    }
    if matches!(path.as_str(), "/" | "/healthz" | "/readyz" | "/metrics") {
        return Err(err("path", format!("`{path}` is taken by the receiver's own endpoints")));
    }
    Ok((listen, path))
}

/// `store`.
fn check_store(store: StoreFile, files: Files) -> Result<StoreConfig, ConfigError> {
    Ok(match store {
        StoreFile::None => StoreConfig::None,
        StoreFile::Embedded { path } => {
            if path.as_os_str().is_empty() {
                return Err(err("store.path", "must name a directory (a local volume)"));
            }
            StoreConfig::Embedded(path)
        }
        StoreFile::Postgres { url_file } => {
            StoreConfig::Postgres(files.load(SecretSource::File(url_file)).map_err(|e| err("store.urlFile", e))?)
        }
    })
}

/// `admin`: its own port, at least one token of 16 characters or more.
fn check_admin(admin: AdminFile, listen: SocketAddr, files: Files) -> Result<AdminConfig, ConfigError> {
    let admin_listen: SocketAddr =
        admin.listen.parse().map_err(|_| err("admin.listen", format!("`{}` is not an address like 0.0.0.0:8081", admin.listen)))?;
    if admin_listen.port() == listen.port() && admin_listen.port() != 0 {
        return Err(err("admin.listen", "must use another port than `listen`: the admin API is never on the port FusionAuth reaches"));
    }
    let given = [
        ("admin.tokenFile", Scope::All, admin.token_file),
        ("admin.readTokenFile", Scope::Read, admin.read_token_file),
        ("admin.replayTokenFile", Scope::Replay, admin.replay_token_file),
        ("admin.ingestTokenFile", Scope::Ingest, admin.ingest_token_file),
    ];
    let mut tokens = Vec::new();
    for (field, scope, file) in given {
        let Some(file) = file else { continue };
        let token = files.load(SecretSource::File(file)).map_err(|e| err(field, e))?;
        if matches!(files, Files::Read) && token.get().expose().len() < 16 {
            return Err(err(field, "the token must be at least 16 characters (it guards replay, discard and ingest)"));
        }
        tokens.push((scope, token));
    }
    if tokens.is_empty() {
        return Err(err("admin", "needs at least one of tokenFile, readTokenFile, replayTokenFile, ingestTokenFile"));
    }
    Ok(AdminConfig { listen: admin_listen, tokens })
}

/// `routes`: unique names, parsed filters (unknown event names warned
/// about), one action each, durable only with a store.
fn check_routes(
    raw: Vec<RouteFile>,
    has_store: bool,
    read_timeout: Duration,
    files: Files,
    warnings: &mut Vec<String>,
) -> Result<Vec<Route>, ConfigError> {
    if raw.len() > crate::dedupe::MAX_ROUTES {
        return Err(err("routes", format!("at most {} routes per receiver; run another receiver for more", crate::dedupe::MAX_ROUTES)));
    }
    let mut routes = Vec::with_capacity(raw.len());
    for (i, route) in raw.into_iter().enumerate() {
        let field = format!("routes[{i}]");
        if route.name.trim().is_empty() {
            return Err(err(format!("{field}.name"), "must not be empty"));
        }
        if routes.iter().any(|r: &Route| r.name == route.name) {
            return Err(err(format!("{field}.name"), format!("`{}` is used by another route", route.name)));
        }
        let filters = check_filters(&field, &route.events, warnings)?;
        let ack = route.ack.unwrap_or(if has_store { Ack::Durable } else { Ack::Sync });
        if ack == Ack::Durable && !has_store {
            return Err(err(format!("{field}.ack"), "durable needs a store (store.type: embedded or postgres)"));
        }
        let durable = check_durable(&field, &route, ack)?;
        let action = match (route.http, route.log) {
            (Some(http), None) => Action::Http(check_http(&format!("{field}.http"), http, read_timeout, ack, files)?),
            (None, Some(log)) => Action::Log(check_log(&format!("{field}.log"), log)?),
            _ => return Err(err(&field, "give exactly one action: `http` or `log`")),
        };
        routes.push(Route { name: route.name, filters, action, ack, durable });
    }
    Ok(routes)
}

/// A route's `events` filters.
fn check_filters(field: &str, events: &[String], warnings: &mut Vec<String>) -> Result<Vec<EventFilter>, ConfigError> {
    if events.is_empty() {
        return Err(err(format!("{field}.events"), "list at least one event type, prefix (user.*) or *"));
    }
    let mut filters = Vec::with_capacity(events.len());
    for (j, text) in events.iter().enumerate() {
        let filter = EventFilter::parse(text).map_err(|m| err(format!("{field}.events[{j}]"), m))?;
        if let EventFilter::Exact(name) = &filter
            && event_types::lookup(name).is_none()
        {
            warnings.push(format!("{field}.events[{j}]: `{name}` is not an event type FusionAuth 1.69 sends; check the spelling"));
        }
        filters.push(filter);
    }
    Ok(filters)
}

fn check_durable(field: &str, route: &RouteFile, ack: Ack) -> Result<Durable, ConfigError> {
    if ack == Ack::Sync {
        let durable_only = [
            ("retry", route.retry.is_some()),
            ("ordering", route.ordering.is_some()),
            ("delayMs", route.delay_ms.is_some()),
            ("concurrency", route.concurrency.is_some()),
        ];
        if let Some((name, _)) = durable_only.iter().find(|(_, set)| *set) {
            return Err(err(
                format!("{field}.{name}"),
                "applies to ack: durable routes only (a sync route runs while FusionAuth waits; FusionAuth retries it)",
            ));
        }
        return Ok(Durable::default());
    }
    let mut retry = RetryPolicy::default();
    if let Some(raw) = &route.retry {
        if raw.max_attempts == Some(0) {
            return Err(err(format!("{field}.retry.maxAttempts"), "must be at least 1"));
        }
        retry.max_attempts = raw.max_attempts;
        if let Some(age) = raw.max_age_seconds {
            if age == 0 {
                return Err(err(format!("{field}.retry.maxAgeSeconds"), "must be greater than 0"));
            }
            retry.max_age = Duration::from_secs(age);
        }
        if raw.schedule_ms.iter().any(|ms| *ms < 10) {
            return Err(err(format!("{field}.retry.scheduleMs"), "each wait must be at least 10 ms"));
        }
        if !raw.schedule_ms.is_empty() {
            if raw.initial_delay_ms.is_some() || raw.max_delay_ms.is_some() {
                return Err(err(format!("{field}.retry.scheduleMs"), "give either scheduleMs or initialDelayMs/maxDelayMs"));
            }
            retry.schedule = Schedule::Fixed(raw.schedule_ms.iter().map(|ms| Duration::from_millis(*ms)).collect());
        } else if raw.initial_delay_ms.is_some() || raw.max_delay_ms.is_some() {
            let initial = Duration::from_millis(raw.initial_delay_ms.unwrap_or(1000));
            let max = Duration::from_millis(raw.max_delay_ms.unwrap_or(3_600_000));
            if initial.is_zero() || max < initial {
                return Err(err(format!("{field}.retry"), "initialDelayMs must be above 0 and at most maxDelayMs"));
            }
            retry.schedule = Schedule::Exponential { initial, max };
        }
    }
    let concurrency = route.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if concurrency == 0 || concurrency > 1024 {
        return Err(err(format!("{field}.concurrency"), "must be between 1 and 1024"));
    }
    Ok(Durable {
        retry,
        ordered: route.ordering == Some(Ordering::PerObject),
        delay: Duration::from_millis(route.delay_ms.unwrap_or(0)),
        concurrency,
    })
}

fn check_auth(raw: AuthFile, files: Files) -> Result<AuthConfig, ConfigError> {
    let authorization = secret(files, "auth.authorization", raw.authorization, raw.authorization_file, "auth.authorizationFile")?;
    let previous_authorization = secret(
        files,
        "auth.previousAuthorization",
        raw.previous_authorization,
        raw.previous_authorization_file,
        "auth.previousAuthorizationFile",
    )?;
    if previous_authorization.is_some() && authorization.is_none() {
        return Err(err("auth.previousAuthorization", "needs auth.authorization: it is a second accepted value during a rotation"));
    }
    let basic = match raw.basic {
        None => None,
        Some(b) => {
            let user = secret(files, "auth.basic.username", b.username, b.username_file, "auth.basic.usernameFile")?
                .ok_or_else(|| err("auth.basic.username", "is required (or usernameFile)"))?;
            let pass = secret(files, "auth.basic.password", b.password, b.password_file, "auth.basic.passwordFile")?
                .ok_or_else(|| err("auth.basic.password", "is required (or passwordFile)"))?;
            Some((user, pass))
        }
    };
    if authorization.is_some() && basic.is_some() {
        // FusionAuth sends one Authorization header: a custom `Authorization`
        // header replaces its Basic header (FACTS.md §c.1, inferred).
        return Err(err("auth.basic", "cannot be combined with auth.authorization: FusionAuth sends only one Authorization header"));
    }
    let signature = raw.signature.map(|raw| check_signature(raw, files)).transpose()?;
    if authorization.is_none() && basic.is_none() && signature.as_ref().is_none_or(|s| !s.required) && !raw.allow_unauthenticated {
        return Err(err(
            "auth",
            "no authentication configured: set authorization, basic or a required signature (or allowUnauthenticated: true to accept anyone)",
        ));
    }
    let rotation_grace = match raw.rotation_grace_ms {
        Some(ms) => Duration::from_millis(ms),
        None => crate::secret::ROTATION_GRACE,
    };
    Ok(AuthConfig { authorization, previous_authorization, rotation_grace, basic, signature })
}

fn check_signature(raw: SignatureFile, files: Files) -> Result<SignatureConfig, ConfigError> {
    const FIELD: &str = "auth.signature";
    if raw.algorithms.is_empty() {
        return Err(err(format!("{FIELD}.algorithms"), "list the algorithm(s) of FusionAuth's signing key, e.g. [HS256] or [RS256]"));
    }
    let mut algorithms = Vec::new();
    for (i, name) in raw.algorithms.iter().enumerate() {
        let alg: Algorithm = name.parse().map_err(|_| {
            err(
                format!("{FIELD}.algorithms[{i}]"),
                format!("`{name}` is not one of HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, EdDSA"),
            )
        })?;
        if matches!(alg, Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512) {
            return Err(err(format!("{FIELD}.algorithms[{i}]"), "FusionAuth does not sign webhooks with RSASSA-PSS"));
        }
        algorithms.push(alg);
    }
    let hmac_secret =
        secret(files, &format!("{FIELD}.hmacSecret"), raw.hmac_secret, raw.hmac_secret_file, &format!("{FIELD}.hmacSecretFile"))?;
    let jwks_url = raw
        .jwks_url
        .map(|u| {
            reqwest::Url::parse(&u)
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https"))
                .ok_or_else(|| err(format!("{FIELD}.jwksUrl"), format!("`{u}` is not an http(s) URL")))
        })
        .transpose()?;
    let previous_hmac_secret = secret(
        files,
        &format!("{FIELD}.previousHmacSecret"),
        raw.previous_hmac_secret,
        raw.previous_hmac_secret_file,
        &format!("{FIELD}.previousHmacSecretFile"),
    )?;
    if previous_hmac_secret.is_some() && hmac_secret.is_none() {
        return Err(err(format!("{FIELD}.previousHmacSecret"), "needs hmacSecret: it is a second accepted secret during a rotation"));
    }
    if algorithms.iter().any(|a| is_hmac(*a)) && hmac_secret.is_none() {
        return Err(err(format!("{FIELD}.hmacSecret"), "an HS* algorithm is listed, so the HMAC secret is required (or hmacSecretFile)"));
    }
    if algorithms.iter().any(|a| !is_hmac(*a)) && jwks_url.is_none() {
        return Err(err(format!("{FIELD}.jwksUrl"), "an RS/ES/EdDSA algorithm is listed, so FusionAuth's JWKS URL is required"));
    }
    Ok(SignatureConfig {
        algorithms,
        hmac_secret,
        previous_hmac_secret,
        jwks_url,
        key_ids: raw.key_ids,
        jwks_min_refetch: Duration::from_secs(raw.jwks_min_refetch_seconds.unwrap_or(30)),
        required: raw.required.unwrap_or(true),
    })
}

/// An `http` action's URL template: an http(s) URL whose placeholders are
/// only in the path or query (an event must not choose where its data goes).
fn check_url(field: &str, text: &str) -> Result<Template, ConfigError> {
    let url = Template::parse(text).map_err(|e| err(format!("{field}.url"), e))?;
    let sample = url.render_sample("x");
    let parsed = reqwest::Url::parse(&sample).map_err(|e| err(format!("{field}.url"), format!("`{}` is not a URL: {e}", text)))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(err(format!("{field}.url"), "must be an http:// or https:// URL"));
    }
    if crate::template::dot_segment(&sample).is_some() {
        return Err(err(format!("{field}.url"), "has a `.` or `..` path segment; write the path it stands for"));
    }
    // Placeholders may fill path segments and query values, not the scheme or
    // host: an event must not choose where its data is sent.
    if url.has_placeholders() {
        let prefix = url.literal_prefix();
        let authority_end = prefix.find("://").map(|i| i + 3).and_then(|start| prefix[start..].find(['/', '?']).map(|j| start + j));
        if authority_end.is_none() {
            return Err(err(format!("{field}.url"), "placeholders may only appear in the path or query, after the host"));
        }
    }

    Ok(url)
}

/// An `http` action's headers: valid names, given once (names ignore case),
/// values from text templates or Secret files.
fn check_headers(
    field: &str,
    raw: std::collections::BTreeMap<String, HeaderValueFile>,
    files: Files,
) -> Result<Vec<(HeaderName, HeaderValueSource)>, ConfigError> {
    let mut headers = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        let header_field = format!("{field}.headers.{name}");
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| err(&header_field, "is not a valid header name"))?;
        if headers.iter().any(|(seen, _): &(HeaderName, HeaderValueSource)| *seen == header) {
            return Err(err(&header_field, "is given twice: header names ignore case"));
        }
        let value = match value {
            HeaderValueFile::Text(text) => HeaderValueSource::Template(Template::parse(&text).map_err(|e| err(&header_field, e))?),
            HeaderValueFile::File { value_file } => HeaderValueSource::Secret(
                files.load(SecretSource::File(value_file)).map_err(|e| err(format!("{header_field}.valueFile"), e))?,
            ),
        };
        headers.push((header, value));
    }

    Ok(headers)
}

fn check_http(field: &str, raw: HttpFile, read_timeout: Duration, ack: Ack, files: Files) -> Result<HttpAction, ConfigError> {
    let method_text = raw.method.unwrap_or_else(|| "POST".to_owned());
    let method = Template::parse(&method_text).map_err(|e| err(format!("{field}.method"), e))?;
    if !method.has_placeholders() {
        Method::from_bytes(method_text.as_bytes())
            .map_err(|_| err(format!("{field}.method"), format!("`{method_text}` is not an HTTP method")))?;
    }

    let url = check_url(field, &raw.url)?;

    let timeout_ms = raw.timeout_ms.unwrap_or(if ack == Ack::Sync { 1500 } else { DEFAULT_DURABLE_TIMEOUT_MS });
    if timeout_ms == 0 {
        return Err(err(format!("{field}.timeoutMs"), "must be greater than 0"));
    }
    let timeout = Duration::from_millis(timeout_ms);
    if ack == Ack::Sync && timeout >= read_timeout {
        return Err(err(
            format!("{field}.timeoutMs"),
            format!("{timeout_ms} must be below readTimeoutMs ({}): FusionAuth would give up before the answer", read_timeout.as_millis()),
        ));
    }

    let headers = check_headers(field, raw.headers, files)?;

    let body = raw.body.unwrap_or(match method_text.to_ascii_uppercase().as_str() {
        "GET" | "HEAD" | "DELETE" | "OPTIONS" => BodyMode::None,
        _ => BodyMode::Event,
    });
    let mut success_statuses = Vec::with_capacity(raw.success_statuses.len());
    for (i, code) in raw.success_statuses.iter().enumerate() {
        let status = StatusCode::from_u16(*code)
            .ok()
            .filter(|s| (200..=599).contains(&s.as_u16()))
            .ok_or_else(|| err(format!("{field}.successStatuses[{i}]"), format!("{code} is not an HTTP status from 200 to 599")))?;
        success_statuses.push(status);
    }
    let sign = match raw.sign {
        None => None,
        Some(sign) => {
            let secret = files.load(SecretSource::File(sign.secret_file)).map_err(|e| err(format!("{field}.sign.secretFile"), e))?;
            if matches!(files, Files::Read) {
                crate::delivery::sign::decode_secret(secret.get().expose()).map_err(|e| err(format!("{field}.sign.secretFile"), e))?;
            }
            Some(secret)
        }
    };
    Ok(HttpAction { method, url, timeout, headers, body, success_statuses, sign })
}

fn check_log(field: &str, raw: LogFile) -> Result<LogAction, ConfigError> {
    let fields = raw
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| FieldPath::parse(f).map_err(|e| err(format!("{field}.fields[{i}]"), e)))
        .collect::<Result<_, _>>()?;
    Ok(LogAction { fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails(yaml: &str) -> String {
        match Config::from_yaml(yaml) {
            Ok(_) => panic!("accepted:\n{yaml}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn the_design_contract_config_works_as_written() {
        let yaml = r#"
listen: "0.0.0.0:8080"
path: /events
auth:
  authorization: "value FusionAuth sends in the Authorization header"
routes:
  - name: todo-cleanup
    events: ["user.delete"]
    http:
      method: DELETE
      url: "http://todo-api.todo.svc/users/{{event.user.id}}/todos"
      timeoutMs: 1500
"#;
        let config = Config::from_yaml(yaml).unwrap();
        assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.path, "/events");
        assert_eq!(config.routes.len(), 1);
        let Action::Http(http) = &config.routes[0].action else { panic!() };
        assert_eq!(http.timeout, Duration::from_millis(1500));
        assert_eq!(http.body, BodyMode::None, "DELETE sends no body by default");
        assert!(config.warnings.is_empty());
        assert!(config.auth.authorization.unwrap().get().matches(b"value FusionAuth sends in the Authorization header"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("auth: {authorization: k}\nroutez: []", "unknown field `routez`"),
            ("routes: []", "auth: no authentication configured"),
            ("auth: {authorization: k}\nlisten: nowhere", "listen:"),
            ("auth: {authorization: k}\npath: events", "path:"),
            ("auth: {authorization: k}\npath: /metrics", "path:"),
            ("auth: {authorization: k, authorizationFile: /x}", "auth.authorization: give either"),
            ("auth: {authorizationFile: /definitely/not/here}", "auth.authorizationFile: cannot read secret file /definitely/not/here"),
            ("auth: {authorization: k, basic: {username: u, password: p}}", "auth.basic: cannot be combined"),
            ("auth: {basic: {username: u}}", "auth.basic.password: is required"),
            ("auth: {signature: {hmacSecret: s}}", "auth.signature.algorithms:"),
            ("auth: {signature: {algorithms: [HS257], hmacSecret: s}}", "auth.signature.algorithms[0]:"),
            ("auth: {signature: {algorithms: [HS256]}}", "auth.signature.hmacSecret:"),
            ("auth: {signature: {algorithms: [RS256]}}", "auth.signature.jwksUrl:"),
            ("auth: {signature: {algorithms: [RS256], jwksUrl: 'ftp://x'}}", "auth.signature.jwksUrl:"),
            ("auth: {authorization: k}\nroutes: [{name: a, events: [], log: {}}]", "routes[0].events:"),
            ("auth: {authorization: k}\nroutes: [{name: a, events: ['user..x'], log: {}}]", "routes[0].events[0]:"),
            ("auth: {authorization: k}\nroutes: [{name: a, events: ['*']}]", "routes[0]: give exactly one action"),
            ("auth: {authorization: k}\nroutes: [{name: a, events: ['*'], log: {}}, {name: a, events: ['*'], log: {}}]", "routes[1].name:"),
            (
                "auth: {authorization: k}\nroutes: [{name: a, events: ['*'], http: {url: 'http://h/{{event.user.id'}}]",
                "routes[0].http.url:",
            ),
            (
                "auth: {authorization: k}\nroutes: [{name: a, events: ['*'], http: {url: 'http://{{event.host}}/x'}}]",
                "routes[0].http.url: placeholders may only",
            ),
            ("auth: {authorization: k}\nroutes: [{name: a, events: ['*'], http: {url: 'not a url'}}]", "routes[0].http.url:"),
            (
                "auth: {authorization: k}\nroutes: [{name: a, events: ['*'], http: {url: 'http://h/a/../{{event.user.id}}'}}]",
                "routes[0].http.url: has a `.` or `..` path segment",
            ),
            (
                "auth: {authorization: k}\nroutes: [{name: a, events: ['*'], http: {url: 'http://h/', timeoutMs: 0}}]",
                "routes[0].http.timeoutMs: must be greater",
            ),
            (
                "auth: {authorization: k}\nroutes: [{name: a, events: ['*'], http: {url: 'http://h/', timeoutMs: 2500}}]",
                "routes[0].http.timeoutMs: 2500 must be below readTimeoutMs (2000)",
            ),
            (
                "auth: {authorization: k}\nroutes: [{name: a, events: ['*'], http: {url: 'http://h/', method: 'GE T'}}]",
                "routes[0].http.method:",
            ),
            (
                "auth: {authorization: k}\nroutes: [{name: a, events: ['*'], http: {url: 'http://h/', headers: {'bad header': x}}}]",
                "routes[0].http.headers.bad header:",
            ),
            (
                "auth: {authorization: k}\nroutes: [{name: a, events: ['*'], http: {url: 'http://h/', headers: {X-Key: a, x-key: b}}}]",
                "routes[0].http.headers.x-key: is given twice",
            ),
            (
                "auth: {authorization: k}\nroutes: [{name: a, events: ['*'], http: {url: 'http://h/', headers: {X-Key: {valueFile: /nope}}}}]",
                "routes[0].http.headers.X-Key.valueFile: cannot read",
            ),
            ("auth: {authorization: k}\nroutes: [{name: a, events: ['*'], log: {fields: [user.email]}}]", "routes[0].log.fields[0]:"),
            ("auth: {authorization: k}\ndedupe: {maxEntries: 0}", "dedupe.maxEntries:"),
            (
                "auth: {authorization: k}\nmaxBodyBytes: 2000\nunauthenticatedBodyBudgetBytes: 1000",
                "unauthenticatedBodyBudgetBytes: must be at least",
            ),
            ("auth: {authorization: k}\nmaxConnections: 0", "maxConnections: must be greater"),
            ("auth: {authorization: k}\nunmatched: maybe", "unmatched: unknown variant `maybe`"),
            ("auth: {authorization: k}\nroutes: [{name: a, events: ['*'], ack: durable, log: {}}]", "routes[0].ack: durable needs a store"),
            (
                "auth: {authorization: k}\nstore: {type: embedded, path: /tmp/x}\nroutes: [{name: a, events: ['*'], ack: sync, ordering: perObject, log: {}}]",
                "routes[0].ordering: applies to ack: durable routes only",
            ),
            (
                "auth: {authorization: k}\nstore: {type: embedded, path: /tmp/x}\nroutes: [{name: a, events: ['*'], retry: {maxAttempts: 0}, log: {}}]",
                "routes[0].retry.maxAttempts: must be at least 1",
            ),
            (
                "auth: {authorization: k}\nstore: {type: embedded, path: /tmp/x}\nroutes: [{name: a, events: ['*'], concurrency: 0, log: {}}]",
                "routes[0].concurrency: must be between 1 and 1024",
            ),
            (
                "auth: {authorization: k}\nstore: {type: embedded, path: /tmp/x}\nroutes: [{name: a, events: ['*'], http: {url: 'http://h/', successStatuses: [99]}}]",
                "routes[0].http.successStatuses[0]: 99 is not an HTTP status",
            ),
            ("auth: {authorization: k}\nstore: {type: postgres, urlFile: /nope}", "store.urlFile: cannot read"),
            ("auth: {authorization: k}\nstore: {type: sqlite}", "store.type: unknown variant `sqlite`"),
            ("auth: {authorization: k}\nadmin: {listen: '0.0.0.0:8080', tokenFile: /x}", "admin.listen: must use another port"),
            ("auth: {authorization: k}\nadmin: {listen: '0.0.0.0:8081', tokenFile: /nope}", "admin.tokenFile: cannot read"),
        ];
        for (yaml, expected) in cases {
            let message = fails(yaml);
            assert!(message.contains(expected), "for {yaml:?}\n expected {expected:?}\n got {message:?}");
        }
    }

    #[test]
    fn secrets_never_reach_error_messages() {
        let message = fails("auth: {authorization: hunter2, basic: {username: u, password: hunter3}}");
        assert!(!message.contains("hunter"));
    }

    #[test]
    fn unknown_event_names_warn_and_defaults_are_sensible() {
        let config = Config::from_yaml(
            "auth: {allowUnauthenticated: true}\nroutes: [{name: a, events: ['user.delet', 'user.*'], http: {url: 'http://h/x'}}]",
        )
        .unwrap();
        assert_eq!(config.warnings.len(), 1);
        assert!(config.warnings[0].contains("user.delet"));
        let Action::Http(http) = &config.routes[0].action else { panic!() };
        assert_eq!(http.body, BodyMode::Event, "POST forwards the event by default");
        assert_eq!(http.timeout, Duration::from_millis(1500));
        assert_eq!(config.unmatched, Unmatched::Accept);
        assert_eq!(config.dedupe.window, Duration::from_secs(3600));
        assert_eq!(config.max_body_bytes, 1024 * 1024);
        assert_eq!(config.unauthenticated_body_budget, 16 * 1024 * 1024);
        assert_eq!(config.max_connections, 512);
    }

    #[test]
    fn with_a_store_routes_are_durable_by_default_with_a_longer_timeout() {
        let config = Config::from_yaml(
            "auth: {authorization: k}\nstore: {type: embedded, path: /tmp/x}\nroutes: [{name: a, events: ['*'], http: {url: 'http://h/x'}}, {name: b, events: ['*'], ack: sync, http: {url: 'http://h/y'}}]",
        )
        .unwrap();
        assert_eq!(config.routes[0].ack, Ack::Durable);
        assert_eq!(config.routes[1].ack, Ack::Sync);
        let Action::Http(http) = &config.routes[0].action else { panic!() };
        assert_eq!(http.timeout, Duration::from_millis(DEFAULT_DURABLE_TIMEOUT_MS));
        assert_eq!(config.routes[0].durable.retry, RetryPolicy::default());
        assert_eq!(config.routes[0].durable.concurrency, DEFAULT_CONCURRENCY);
        assert!(config.warnings.iter().any(|w| w.contains("store is set without admin")));
    }
}
