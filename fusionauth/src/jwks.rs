//! Verification keys from FusionAuth's JWKS (`/.well-known/jwks.json`,
//! FACTS.md §d), cached by `kid`.
//!
//! A `kid` not in the cache triggers one refetch, never more often than the
//! configured minimum interval, so a stream of forged `kid`s cannot turn the
//! receiver into a load generator against FusionAuth. Concurrent misses share
//! one fetch, which runs as its own task: no lock is held while it runs, and
//! each caller waits for it at most its own deadline, so a JWKS endpoint that
//! hangs costs a request a bounded wait and a clear error, never a queue.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;

/// Why no key could be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The JWKS could not be fetched (FusionAuth unreachable, non-2xx,
    /// timeout, too large), or the fetch did not finish within the wait.
    #[error("fetching the JWKS failed: {0}")]
    Fetch(String),
    /// The document is not a JWKS.
    #[error("the JWKS is not valid: {0}")]
    Parse(String),
    /// No key with that `kid` is published (after a refetch, or the refetch
    /// was skipped because the last one was too recent).
    #[error("no key with this kid is published in the JWKS")]
    UnknownKid,
    /// The published key declares another algorithm than the token uses.
    #[error("the published key is for another algorithm")]
    AlgorithmMismatch,
}

/// One verification key from the JWKS.
pub struct PublishedKey {
    /// The key, ready for [`crate::signature::verify_token`].
    pub key: DecodingKey,
    /// The `alg` the JWK declares, if any.
    pub alg: Option<Algorithm>,
}

impl std::fmt::Debug for PublishedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedKey").field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// Where a JWKS document comes from.
pub trait JwksSource: Send + Sync + 'static {
    /// Returns the raw JWKS document.
    fn fetch(&self) -> impl Future<Output = Result<Vec<u8>, JwksError>> + Send;
}

/// The largest JWKS document read. FusionAuth's holds one entry per
/// asymmetric key of the instance, a few KiB in practice.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Fetches the JWKS over HTTP(S) with a shared client, within `timeout`
/// (connect, answer and body together) and at most [`MAX_JWKS_BYTES`].
#[derive(Debug, Clone)]
pub struct HttpJwksSource {
    client: reqwest::Client,
    url: reqwest::Url,
    timeout: Duration,
}

impl HttpJwksSource {
    /// A source for `url` (normally `{fusionauth}/.well-known/jwks.json`).
    pub fn new(client: reqwest::Client, url: reqwest::Url, timeout: Duration) -> Self {
        Self { client, url, timeout }
    }
}

impl JwksSource for HttpJwksSource {
    async fn fetch(&self) -> Result<Vec<u8>, JwksError> {
        // The JWKS endpoint needs no credentials (FACTS.md §d), so nothing
        // secret can end up in these messages.
        let failed = |e: reqwest::Error| JwksError::Fetch(e.without_url().to_string());
        let response = self.client.get(self.url.clone()).timeout(self.timeout).send().await.map_err(failed)?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwksError::Fetch(format!("{} answered {status}", self.url)));
        }
        let body = crate::limited::read_body(response, MAX_JWKS_BYTES).await.map_err(failed)?;
        if body.truncated {
            return Err(JwksError::Fetch(format!("{} answered more than {MAX_JWKS_BYTES} bytes", self.url)));
        }
        Ok(body.bytes.to_vec())
    }
}

/// Parses a JWKS into keys by `kid`. Keys without `kid`, encryption keys and
/// key types this build cannot verify with are skipped, not fatal: the JWKS
/// holds every asymmetric key of the instance, most of them not ours.
pub fn parse_jwks(document: &[u8]) -> Result<HashMap<String, Arc<PublishedKey>>, JwksError> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(document).map_err(|e| JwksError::Parse(e.to_string()))?;
    let mut keys = HashMap::with_capacity(set.keys.len());
    for value in set.keys {
        if value.get("use").and_then(|u| u.as_str()) == Some("enc") {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else { continue };
        let Some(kid) = jwk.common.key_id.clone() else { continue };
        let alg = jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok());
        let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
        keys.insert(kid, Arc::new(PublishedKey { key, alg }));
    }
    Ok(keys)
}

type Keys = Arc<HashMap<String, Arc<PublishedKey>>>;
type Fetch = Shared<BoxFuture<'static, Result<usize, JwksError>>>;

/// Keys by `kid` with bounded refetching.
pub struct JwksCache<S> {
    inner: Arc<Inner<S>>,
    min_refetch_interval: Duration,
}

struct Inner<S> {
    source: S,
    keys: RwLock<Keys>,
    fetches: Mutex<Fetches>,
}

/// Held only to read or swap these fields, never across a fetch.
#[derive(Default)]
struct Fetches {
    /// When the last fetch started, and how it ended (`None` while running).
    last: Option<(Instant, Option<Result<usize, JwksError>>)>,
    /// The fetch under way, shared by every caller that needs it.
    running: Option<Fetch>,
}

impl<S: JwksSource> Inner<S> {
    async fn fetch(self: Arc<Self>) -> Result<usize, JwksError> {
        let outcome = match self.source.fetch().await {
            Ok(document) => parse_jwks(&document).map(|keys| {
                let n = keys.len();
                *self.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(keys);
                n
            }),
            Err(e) => Err(e),
        };
        self.finished(&outcome);
        outcome
    }

    /// Records how the running fetch ended, so the next miss may start another.
    fn finished(&self, outcome: &Result<usize, JwksError>) {
        let mut fetches = self.fetches.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        fetches.running = None;
        if let Some((_, result)) = &mut fetches.last {
            *result = Some(outcome.clone());
        }
    }
}

impl<S: JwksSource> JwksCache<S> {
    /// An empty cache; the first lookup fetches.
    pub fn new(source: S, min_refetch_interval: Duration) -> Self {
        let inner = Inner { source, keys: RwLock::new(Arc::new(HashMap::new())), fetches: Mutex::new(Fetches::default()) };
        Self { inner: Arc::new(inner), min_refetch_interval }
    }

    fn cached(&self, kid: &str) -> Option<Arc<PublishedKey>> {
        let keys = self.inner.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.get(kid).cloned()
    }

    /// The fetch under way, or a new one when `force` or the last one is
    /// older than the minimum interval. `Err` carries the last outcome when
    /// no fetch may start yet: a failure (so a request is not refused as
    /// forged while FusionAuth is unreachable) or `UnknownKid`.
    fn join_or_start(&self, force: bool) -> Result<Fetch, JwksError> {
        let mut fetches = self.inner.fetches.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(running) = &fetches.running {
            return Ok(running.clone());
        }
        if !force
            && let Some((at, Some(outcome))) = &fetches.last
            && at.elapsed() < self.min_refetch_interval
        {
            return Err(match outcome {
                Ok(_) => JwksError::UnknownKid,
                Err(e) => e.clone(),
            });
        }
        let task = tokio::spawn(self.inner.clone().fetch());
        let inner = self.inner.clone();
        let fetch = async move {
            task.await.unwrap_or_else(|e| {
                // The task panicked: it recorded nothing, so record it here,
                // or every later miss would join this finished fetch forever.
                let outcome = Err(JwksError::Fetch(format!("the fetch task ended: {e}")));
                inner.finished(&outcome);
                outcome
            })
        }
        .boxed()
        .shared();
        fetches.last = Some((Instant::now(), None));
        fetches.running = Some(fetch.clone());
        Ok(fetch)
    }

    /// Fetches now (for a warm start). Errors are returned, the cache stays as it was.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        self.join_or_start(true)?.await
    }

    /// The key for `kid`, usable with `alg`. Refetches once on a miss unless
    /// the last fetch is more recent than the minimum interval, and waits
    /// for that fetch at most `wait`.
    pub async fn key(&self, kid: &str, alg: Algorithm, wait: Duration) -> Result<Arc<PublishedKey>, JwksError> {
        let found = match self.cached(kid) {
            Some(key) => key,
            None => {
                match self.join_or_start(false) {
                    Ok(fetch) => match tokio::time::timeout(wait, fetch).await {
                        Err(_) => return Err(JwksError::Fetch(format!("no JWKS within {} ms", wait.as_millis()))),
                        Ok(result) => drop(result?),
                    },
                    // A fetch finished since our miss: it may have brought the key.
                    Err(JwksError::UnknownKid) => {}
                    Err(e) => return Err(e),
                }
                self.cached(kid).ok_or(JwksError::UnknownKid)?
            }
        };
        match found.alg {
            Some(declared) if declared != alg => Err(JwksError::AlgorithmMismatch),
            _ => Ok(found),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const JWKS: &str = include_str!("../tests/fixtures/keys/jwks.json");
    const WAIT: Duration = Duration::from_secs(1);

    struct Counting {
        fetches: AtomicUsize,
        document: RwLock<String>,
    }

    impl JwksSource for Arc<Counting> {
        async fn fetch(&self) -> Result<Vec<u8>, JwksError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            Ok(self.document.read().unwrap().clone().into_bytes())
        }
    }

    fn counting(doc: &str) -> Arc<Counting> {
        Arc::new(Counting { fetches: AtomicUsize::new(0), document: RwLock::new(doc.to_owned()) })
    }

    #[test]
    fn parses_fusionauth_style_jwks_and_skips_what_it_cannot_use() {
        let keys = parse_jwks(JWKS.as_bytes()).unwrap();
        assert!(keys.contains_key("rsa-1"));
        assert_eq!(keys["rsa-1"].alg, Some(Algorithm::RS256));
        assert!(keys.contains_key("ec-1"));
        assert!(!keys.contains_key("enc-1"), "encryption keys are skipped");
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"nope").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kid_refetches_at_most_once_per_interval() {
        let source = counting(r#"{"keys":[]}"#);
        let cache = JwksCache::new(source.clone(), Duration::from_secs(30));
        assert_eq!(cache.key("rsa-1", Algorithm::RS256, WAIT).await.unwrap_err(), JwksError::UnknownKid);
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
        // A flood of unknown kids within the interval costs no fetch.
        for _ in 0..100 {
            assert_eq!(cache.key("forged", Algorithm::RS256, WAIT).await.unwrap_err(), JwksError::UnknownKid);
        }
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
        // FusionAuth publishes the key (rotation); after the interval it is found.
        *source.document.write().unwrap() = JWKS.to_owned();
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(cache.key("rsa-1", Algorithm::RS256, WAIT).await.is_ok());
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
        // Cached keys cost nothing.
        for _ in 0..10 {
            assert!(cache.key("rsa-1", Algorithm::RS256, WAIT).await.is_ok());
        }
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
    }

    /// A JWKS endpoint that accepted the connection and never answers.
    struct Hung(Arc<AtomicUsize>);

    impl JwksSource for Hung {
        async fn fetch(&self) -> Result<Vec<u8>, JwksError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_fetch_costs_each_caller_its_own_wait_and_no_more() {
        let fetches = Arc::new(AtomicUsize::new(0));
        let cache = Arc::new(JwksCache::new(Hung(fetches.clone()), Duration::from_secs(30)));
        let started = Instant::now();
        // Ten concurrent unknown kids: one fetch, and each caller is answered
        // when its own wait is over (no caller queues behind another).
        let calls: Vec<_> = (0..10)
            .map(|i| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.key(&format!("kid-{i}"), Algorithm::RS256, WAIT).await })
            })
            .collect();
        for call in calls {
            assert!(matches!(call.await.unwrap(), Err(JwksError::Fetch(_))));
        }
        assert_eq!(started.elapsed(), WAIT);
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // A later call joins the same hung fetch rather than starting another.
        assert!(matches!(cache.key("kid-x", Algorithm::RS256, WAIT).await, Err(JwksError::Fetch(_))));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_that_panics_does_not_block_later_fetches() {
        struct Panics(Arc<AtomicUsize>);
        impl JwksSource for Panics {
            async fn fetch(&self) -> Result<Vec<u8>, JwksError> {
                if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("a bug in the fetch");
                }
                Ok(JWKS.as_bytes().to_vec())
            }
        }
        let fetches = Arc::new(AtomicUsize::new(0));
        let cache = JwksCache::new(Panics(fetches.clone()), Duration::from_secs(30));
        assert!(matches!(cache.key("rsa-1", Algorithm::RS256, WAIT).await, Err(JwksError::Fetch(_))));
        tokio::time::advance(Duration::from_secs(31)).await;
        let second = cache.key("rsa-1", Algorithm::RS256, WAIT).await;
        assert!(second.is_ok(), "a new fetch started and brought the key: {second:?}");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn while_fusionauth_is_unreachable_unknown_kids_are_unavailable_not_forged() {
        struct Down;
        impl JwksSource for Down {
            async fn fetch(&self) -> Result<Vec<u8>, JwksError> {
                Err(JwksError::Fetch("connection refused".into()))
            }
        }
        let cache = JwksCache::new(Down, Duration::from_secs(30));
        assert!(matches!(cache.key("rsa-1", Algorithm::RS256, WAIT).await, Err(JwksError::Fetch(_))));
        // Within the refetch interval: the last failure again, not UnknownKid (a 401).
        assert!(matches!(cache.key("rsa-1", Algorithm::RS256, WAIT).await, Err(JwksError::Fetch(_))));
    }

    #[tokio::test]
    async fn declared_algorithm_must_match_the_token() {
        let cache = JwksCache::new(counting(JWKS), Duration::from_secs(30));
        assert_eq!(cache.key("rsa-1", Algorithm::RS512, WAIT).await.unwrap_err(), JwksError::AlgorithmMismatch);
        assert!(cache.key("rsa-1", Algorithm::RS256, WAIT).await.is_ok());
    }
}
