//! The receiver's config file, rendered from the receiver's own file types
//! ([`fusionhook_receiver::config::ConfigFile`]), and the Secret keys the
//! receiver reads as files. Each file is named once, by [`File`]; the config
//! points at the path the Deployment mounts it under.

use std::path::PathBuf;

use fusionhook_receiver::config::{
    AdminFile, AuthFile, BasicFile, ConfigFile, HeaderValueFile, HttpFile, LogFile, RetryFile, RouteFile, ShutdownFile, SignFile,
    SignatureFile, StoreFile,
};

use super::fusionauth::{RECEIVER_PATH, RECEIVER_PORT};
use crate::names::{self, AdminScope, kept};
use crate::reconcile::rotation::Previous;
use crate::reconcile::validate::{Signing, Validated, ValidationError};
use crate::resource::{Ack, BodyMode, Ordering, Route, SecretKeyRef, StoreType};

/// Where Secret values are mounted, one file each.
pub const SECRETS_DIR: &str = "/etc/fusionhook/secrets";
/// Where an embedded store's volume is mounted.
pub const STORE_DIR: &str = "/var/lib/fusionhook";
/// The receiver's admin API port (deliveries, replay, ingest): its own
/// port, so a NetworkPolicy can keep it from FusionAuth.
pub use fusionhook_api::admin::PORT as ADMIN_PORT;

/// A Secret value the receiver reads from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum File {
    /// The `Authorization` value.
    Authorization,
    /// A second accepted `Authorization` value, during a rotation.
    PreviousAuthorization,
    /// Basic username.
    BasicUsername,
    /// Basic password.
    BasicPassword,
    /// The HMAC signing secret.
    HmacSecret,
    /// A second accepted HMAC secret, during a rotation.
    PreviousHmacSecret,
    /// A header value of route `route`.
    Header {
        /// Route index.
        route: usize,
        /// Header name.
        name: String,
    },
    /// The Standard Webhooks signing secret of route `route`.
    Sign {
        /// Route index.
        route: usize,
    },
    /// The PostgreSQL connection string.
    PostgresUrl,
    /// The admin API's token of a scope.
    AdminToken(AdminScope),
}

impl File {
    /// The file name under [`SECRETS_DIR`].
    pub fn name(&self) -> String {
        match self {
            Self::Authorization => "authorization".into(),
            Self::PreviousAuthorization => "previous-authorization".into(),
            Self::BasicUsername => "basic-username".into(),
            Self::BasicPassword => "basic-password".into(),
            Self::HmacSecret => "signature-hmac".into(),
            Self::PreviousHmacSecret => "previous-signature-hmac".into(),
            Self::Header { route, name } => format!("header-{route}-{}", name.to_ascii_lowercase()),
            Self::Sign { route } => format!("sign-{route}"),
            Self::PostgresUrl => "postgres-url".into(),
            Self::AdminToken(scope) => format!("admin-{}-token", scope.as_str()),
        }
    }

    /// The path the receiver reads.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("{SECRETS_DIR}/{}", self.name()))
    }
}

/// One Secret key mounted as a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMount {
    /// Secret name.
    pub secret: String,
    /// Key in it.
    pub key: String,
    /// The file.
    pub file: File,
}

impl SecretMount {
    fn of(reference: &SecretKeyRef, file: File) -> Self {
        Self { secret: reference.name.clone(), key: reference.key.clone(), file }
    }

    fn kept(v: &Validated, key: &str, file: File) -> Self {
        Self { secret: names::authorization_secret_name(&v.name), key: key.to_owned(), file }
    }
}

/// The HMAC key receivers accept besides the spec's, if any: only while the
/// spec signs with HMAC too.
fn previous_hmac<'a>(v: &Validated, previous: &'a Previous) -> Option<&'a crate::reconcile::validate::HmacKey> {
    previous.hmac.as_ref().filter(|_| v.hmac().is_some())
}

/// Every Secret key the receiver needs, in a stable order.
pub fn secret_mounts(v: &Validated, previous: &Previous) -> Vec<SecretMount> {
    let auth = &v.auth_refs;
    let mut mounts = Vec::new();
    match (&auth.authorization_secret_ref, &auth.basic) {
        (_, Some(basic)) => {
            mounts.push(SecretMount::of(&basic.username_secret_ref, File::BasicUsername));
            mounts.push(SecretMount::of(&basic.password_secret_ref, File::BasicPassword));
        }
        (Some(reference), None) => mounts.push(SecretMount::of(reference, File::Authorization)),
        (None, None) => mounts.push(SecretMount::kept(v, kept::AUTHORIZATION, File::Authorization)),
    }
    if previous.authorization.is_some() && auth.basic.is_none() {
        mounts.push(SecretMount::kept(v, kept::PREVIOUS_AUTHORIZATION, File::PreviousAuthorization));
    }
    if let Some(reference) = auth.signature.as_ref().and_then(|s| s.hmac_secret_ref.as_ref()).filter(|_| v.hmac().is_some()) {
        mounts.push(SecretMount::of(reference, File::HmacSecret));
    }
    if previous_hmac(v, previous).is_some() {
        mounts.push(SecretMount::kept(v, kept::HMAC_SECRET, File::PreviousHmacSecret));
    }
    for (i, route) in v.routes.iter().enumerate() {
        for (name, header) in route.http.iter().flat_map(|h| h.headers.iter()) {
            if let Some(reference) = &header.secret_key_ref {
                mounts.push(SecretMount::of(reference, File::Header { route: i, name: name.clone() }));
            }
        }
        if let Some(sign) = route.http.as_ref().and_then(|h| h.sign.as_ref()) {
            mounts.push(SecretMount::of(&sign.secret_ref, File::Sign { route: i }));
        }
    }
    if let Some(reference) = v.store.url_secret_ref.as_ref().filter(|_| v.store.kind == StoreType::Postgres) {
        mounts.push(SecretMount::of(reference, File::PostgresUrl));
    }
    for scope in AdminScope::ALL {
        let secret = names::admin_secret_name(&v.name, scope);
        mounts.push(SecretMount { secret, key: names::admin_token::TOKEN.to_owned(), file: File::AdminToken(scope) });
    }
    mounts
}

/// The receiver config (DESIGN.md's contract) as the receiver's file types.
pub fn config_file(v: &Validated, previous: &Previous) -> ConfigFile {
    ConfigFile {
        listen: Some(format!("0.0.0.0:{RECEIVER_PORT}")),
        path: Some(RECEIVER_PATH.to_owned()),
        auth: auth(v, previous),
        read_timeout_ms: Some(v.read_timeout_ms.into()),
        // Endpoints take a moment to drop a terminating pod; keep serving meanwhile.
        shutdown: ShutdownFile { delay_ms: Some(5000), drain_timeout_ms: Some(20_000) },
        routes: v.routes.iter().enumerate().map(|(i, route)| route_file(i, route)).collect(),
        store: match v.store.kind {
            StoreType::None => StoreFile::None,
            StoreType::Embedded => StoreFile::Embedded { path: PathBuf::from(STORE_DIR) },
            StoreType::Postgres => StoreFile::Postgres { url_file: File::PostgresUrl.path() },
        },
        // In every store mode: the CLI and backfill use it (ingest runs the
        // routes at once without a store).
        admin: Some(AdminFile {
            listen: format!("0.0.0.0:{ADMIN_PORT}"),
            token_file: None,
            read_token_file: Some(File::AdminToken(AdminScope::Read).path()),
            replay_token_file: Some(File::AdminToken(AdminScope::Replay).path()),
            ingest_token_file: Some(File::AdminToken(AdminScope::Ingest).path()),
        }),
        ..ConfigFile::default()
    }
}

/// How long a receiver whose mounted Secret file changed keeps accepting
/// the replaced value: long enough for a slow rollout to replace it before
/// FusionAuth is switched (the rotation protocol then drops it for good).
const ROTATION_GRACE_MS: u64 = 60 * 60 * 1000;

fn auth(v: &Validated, previous: &Previous) -> AuthFile {
    let mut auth = AuthFile { rotation_grace_ms: Some(ROTATION_GRACE_MS), ..AuthFile::default() };
    if v.auth_refs.basic.is_some() {
        auth.basic = Some(BasicFile {
            username_file: Some(File::BasicUsername.path()),
            password_file: Some(File::BasicPassword.path()),
            ..BasicFile::default()
        });
    } else {
        auth.authorization_file = Some(File::Authorization.path());
        auth.previous_authorization_file = previous.authorization.as_ref().map(|_| File::PreviousAuthorization.path());
    }
    // While FusionAuth does not sign yet (a signature was just added), a
    // missing signature is accepted and a present one checked.
    let optional = previous.unsigned.then_some(false);
    auth.signature = match &v.signing {
        Some(Signing::Hmac { key, .. }) => {
            let previous = previous_hmac(v, previous);
            let mut algorithms = vec![key.algorithm.clone()];
            algorithms.extend(previous.map(|p| p.algorithm.clone()).filter(|a| *a != key.algorithm));
            Some(SignatureFile {
                algorithms,
                hmac_secret_file: Some(File::HmacSecret.path()),
                previous_hmac_secret_file: previous.map(|_| File::PreviousHmacSecret.path()),
                required: optional,
                ..SignatureFile::default()
            })
        }
        Some(Signing::KeyPair { algorithm, .. }) => Some(SignatureFile {
            algorithms: vec![algorithm.clone()],
            jwks_url: Some(format!("{}/.well-known/jwks.json", v.fusionauth_url.trim_end_matches('/'))),
            required: optional,
            ..SignatureFile::default()
        }),
        None => None,
    };
    auth
}

fn route_file(i: usize, route: &Route) -> RouteFile {
    let http = route.http.as_ref().map(|http| HttpFile {
        method: http.method.clone(),
        url: http.url.clone(),
        timeout_ms: http.timeout_ms.map(u64::from),
        body: http.body.map(|body| match body {
            BodyMode::Event => fusionhook_receiver::action::BodyMode::Event,
            BodyMode::None => fusionhook_receiver::action::BodyMode::None,
        }),
        headers: http
            .headers
            .iter()
            .map(|(name, value)| {
                let rendered = match &value.value {
                    Some(text) => HeaderValueFile::Text(text.clone()),
                    None => HeaderValueFile::File { value_file: File::Header { route: i, name: name.clone() }.path() },
                };
                (name.clone(), rendered)
            })
            .collect(),
        success_statuses: http.success_statuses.clone(),
        sign: http.sign.as_ref().map(|_| SignFile { secret_file: File::Sign { route: i }.path() }),
    });
    RouteFile {
        name: route.name.clone(),
        events: route.events.clone(),
        http,
        log: route.log.as_ref().map(|log| LogFile { fields: log.fields.clone() }),
        ack: route.ack.map(|ack| match ack {
            Ack::Sync => fusionhook_receiver::route::Ack::Sync,
            Ack::Durable => fusionhook_receiver::route::Ack::Durable,
        }),
        retry: route.retry.as_ref().map(|r| RetryFile {
            max_attempts: r.max_attempts,
            max_age_seconds: r.max_age_seconds,
            initial_delay_ms: r.initial_delay_ms,
            max_delay_ms: r.max_delay_ms,
            schedule_ms: r.schedule_ms.clone(),
        }),
        ordering: route.ordering.map(|Ordering::PerObject| fusionhook_receiver::route::Ordering::PerObject),
        delay_ms: route.delay_ms,
        concurrency: route.concurrency.map(|c| c as usize),
    }
}

/// The config as the YAML file the receiver reads.
pub fn render(v: &Validated, previous: &Previous) -> String {
    let yaml = serde_yaml::to_string(&config_file(v, previous)).unwrap_or_default();
    format!("# Rendered by fusionhook-operator for {}/{}; edits are overwritten.\n{yaml}", v.namespace, v.name)
}

/// The receiver's own parser on the config the operator would render: what
/// it refuses (a placeholder without `event.`, a method that is none, a log
/// field outside the event, two headers that differ only in case, …) is
/// InvalidSpec naming the field, before anything is written. Otherwise new
/// receiver pods would crash at start while old ones kept serving. The
/// receiver's field paths under `routes` are the spec's.
pub fn receiver_accepts(v: &Validated) -> Result<(), ValidationError> {
    let config = render(v, &Previous::default());
    fusionhook_receiver::Config::check_without_files(&config)
        .map_err(|e| ValidationError::InvalidSpec(format!("{e} (the receiver refuses this)")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::reconcile::build::fixtures::validated;

    #[test]
    fn secrets_are_mounted_as_files_the_config_points_at() {
        let (v, owner) = validated(json!({"auth": {"signature": {"algorithm": "HS256", "hmacSecretRef": {"name": "sig", "key": "hmac"}}}}));
        let mounts = secret_mounts(&v, &Previous::default());
        let files: Vec<(&str, &str, String)> = mounts.iter().map(|m| (m.secret.as_str(), m.key.as_str(), m.file.name())).collect();
        assert_eq!(
            files,
            [
                ("todo-cleanup-receiver-auth", "authorization", "authorization".to_owned()),
                ("sig", "hmac", "signature-hmac".to_owned()),
                ("todo-api", "token", "header-0-x-api-key".to_owned()),
                ("todo-cleanup-receiver-admin-read", "token", "admin-read-token".to_owned()),
                ("todo-cleanup-receiver-admin-replay", "token", "admin-replay-token".to_owned()),
                ("todo-cleanup-receiver-admin-ingest", "token", "admin-ingest-token".to_owned()),
            ]
        );
        let config = render(&v, &Previous::default());
        assert!(config.contains("authorizationFile: /etc/fusionhook/secrets/authorization"), "{config}");
        assert!(config.contains("hmacSecretFile: /etc/fusionhook/secrets/signature-hmac"), "{config}");
        assert!(config.contains("valueFile: /etc/fusionhook/secrets/header-0-x-api-key"), "{config}");
        for value in ["\"k\"", "\"t\"", "\"h\""] {
            assert!(!config.contains(&format!(": {value}")), "no secret value in the config");
        }
        let template = super::super::receiver::Template { config_map: "c".into(), checksum: "x".into(), otlp_endpoint: None };
        let d = super::super::receiver::deployment(&v, &Previous::default(), "i", &template, &owner);
        let volumes = d.spec.unwrap().template.spec.unwrap().volumes.unwrap();
        let projected = volumes.iter().find(|v| v.name == "secrets").unwrap().projected.as_ref().unwrap();
        assert_eq!(projected.sources.as_ref().unwrap().len(), 6, "one source per Secret (three for the admin tokens)");

        // A user-given Authorization Secret or Basic credentials replace the generated one.
        let (v, _) = validated(json!({"auth": {"authorizationSecretRef": {"name": "auth", "key": "value"}}}));
        assert_eq!(secret_mounts(&v, &Previous::default())[0].secret, "auth");
        let (v, _) = validated(
            json!({"auth": {"basic": {"usernameSecretRef": {"name": "auth", "key": "value"}, "passwordSecretRef": {"name": "auth", "key": "value"}}}}),
        );
        assert!(render(&v, &Previous::default()).contains("usernameFile: /etc/fusionhook/secrets/basic-username"));
        let (v, _) =
            validated(json!({"auth": {"signature": {"algorithm": "RS256", "signingKeyId": "11111111-1111-4111-8111-111111111111"}}}));
        assert!(render(&v, &Previous::default()).contains("jwksUrl: https://auth.example.com/.well-known/jwks.json"));
    }

    #[test]
    fn the_rendered_config_is_one_the_receiver_accepts() {
        let (v, _) = validated(json!({"auth": {"signature": {"algorithm": "HS256", "hmacSecretRef": {"name": "sig", "key": "hmac"}}}}));
        let dir = tempfile::tempdir().unwrap();
        for mount in secret_mounts(&v, &Previous::default()) {
            std::fs::write(dir.path().join(mount.file.name()), "a-value-of-32-characters-or-more\n").unwrap();
        }
        let config = render(&v, &Previous::default()).replace(SECRETS_DIR, &dir.path().display().to_string());
        let parsed = fusionhook_receiver::Config::from_yaml(&config).unwrap_or_else(|e| panic!("{e}\n{config}"));
        assert_eq!(parsed.routes.len(), 2);
        assert_eq!(parsed.read_timeout, std::time::Duration::from_millis(2000));
        assert!(parsed.auth.signature.is_some() && parsed.auth.authorization.is_some());
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    }

    #[test]
    fn during_a_rotation_the_receiver_accepts_the_previous_values_from_the_operators_secret() {
        use crate::reconcile::validate::{HmacKey, SecretString};
        let (v, _) = validated(json!({"auth": {"signature": {"algorithm": "HS512", "hmacSecretRef": {"name": "sig", "key": "hmac"}}}}));
        let previous = Previous {
            authorization: Some(SecretString("old".into())),
            hmac: Some(HmacKey { algorithm: "HS256".into(), secret: SecretString("old-secret".into()) }),
            unsigned: false,
        };
        let mounts = secret_mounts(&v, &previous);
        let kept: Vec<(&str, String)> =
            mounts.iter().filter(|m| m.secret == "todo-cleanup-receiver-auth").map(|m| (m.key.as_str(), m.file.name())).collect();
        assert_eq!(
            kept,
            [
                ("authorization", "authorization".to_owned()),
                ("previous-authorization", "previous-authorization".to_owned()),
                ("hmac-secret", "previous-signature-hmac".to_owned()),
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        for mount in &mounts {
            std::fs::write(dir.path().join(mount.file.name()), "a-value-of-32-characters-or-more\n").unwrap();
        }
        let config = render(&v, &previous).replace(SECRETS_DIR, &dir.path().display().to_string());
        let parsed = fusionhook_receiver::Config::from_yaml(&config).unwrap_or_else(|e| panic!("{e}\n{config}"));
        let signature = parsed.auth.signature.as_ref().unwrap();
        assert_eq!(signature.algorithms.len(), 2, "both algorithms while FusionAuth is switched: {config}");
        assert!(signature.previous_hmac_secret.is_some() && parsed.auth.previous_authorization.is_some());
        assert!(!config.contains("old"), "values stay in Secrets: {config}");
    }

    #[test]
    fn a_store_and_durable_route_options_reach_the_receiver_as_it_reads_them() {
        let (v, _) = validated(json!({
            "receiver": {"store": {"type": "postgres", "urlSecretRef": {"name": "pg", "key": "url"}}},
            "routes": [{"name": "todo", "events": ["user.delete"], "retry": {"maxAttempts": 20, "scheduleMs": [100, 1000]},
                "ordering": "perObject", "delayMs": 250, "concurrency": 4,
                "http": {"method": "DELETE", "url": "http://todo/users/{{event.user.id}}/todos", "timeoutMs": 5000,
                    "successStatuses": [404], "sign": {"secretRef": {"name": "sig", "key": "whsec"}}}},
                {"name": "audit", "events": ["*"], "ack": "sync", "log": {}}]
        }));
        let mounts = secret_mounts(&v, &Previous::default());
        let files: Vec<(&str, &str, String)> = mounts.iter().map(|m| (m.secret.as_str(), m.key.as_str(), m.file.name())).collect();
        assert!(files.contains(&("pg", "url", "postgres-url".to_owned())), "{files:?}");
        assert!(files.contains(&("sig", "whsec", "sign-0".to_owned())), "{files:?}");
        let dir = tempfile::tempdir().unwrap();
        for mount in &mounts {
            let value = if mount.file == (File::Sign { route: 0 }) {
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            } else {
                "a-value-of-32-characters-or-more"
            };
            std::fs::write(dir.path().join(mount.file.name()), value).unwrap();
        }
        let config = render(&v, &Previous::default()).replace(SECRETS_DIR, &dir.path().display().to_string());
        let parsed = fusionhook_receiver::Config::from_yaml(&config).unwrap_or_else(|e| panic!("{e}\n{config}"));
        let todo = &parsed.routes[0];
        assert_eq!(todo.ack, fusionhook_receiver::route::Ack::Durable, "durable by default with a store");
        assert_eq!(todo.durable.concurrency, 4);
        assert_eq!(todo.durable.delay, std::time::Duration::from_millis(250));
        assert_eq!(parsed.routes[1].ack, fusionhook_receiver::route::Ack::Sync);
        assert!(config.contains("successStatuses:\n    - 404") || config.contains("successStatuses: [404]"), "{config}");
        assert!(config.contains("ordering: perObject") && config.contains("maxAttempts: 20"), "{config}");
        assert!(parsed.admin.is_some(), "the admin API in every store mode");
        assert!(!config.contains("postgres://"), "the connection string stays in its Secret");
    }
}
