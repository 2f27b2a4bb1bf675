//! Verification keys from FusionAuth's JWKS (`/.well-known/jwks.json`,
//! FACTS.md §d), cached by `kid`.
//!
//! A `kid` not in the cache triggers one refetch, never more often than the
//! configured minimum interval, so a stream of forged `kid`s cannot turn the
//! receiver into a load generator against FusionAuth. Concurrent misses share
//! one fetch.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;

/// Why no key could be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The JWKS could not be fetched (FusionAuth unreachable, non-2xx, timeout).
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
    /// The key, ready for [`crate::signature::verify`].
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
pub trait JwksSource: Send + Sync {
    /// Returns the raw JWKS document.
    fn fetch(&self) -> impl Future<Output = Result<Vec<u8>, JwksError>> + Send;
}

/// Fetches the JWKS over HTTP(S) with a shared client.
#[derive(Debug, Clone)]
pub struct HttpJwksSource {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl HttpJwksSource {
    /// A source for `url` (normally `{fusionauth}/.well-known/jwks.json`).
    pub fn new(client: reqwest::Client, url: reqwest::Url) -> Self {
        Self { client, url }
    }
}

impl JwksSource for HttpJwksSource {
    async fn fetch(&self) -> Result<Vec<u8>, JwksError> {
        // The JWKS endpoint needs no credentials (FACTS.md §d), so nothing
        // secret can end up in these messages.
        let response = self.client.get(self.url.clone()).send().await.map_err(|e| JwksError::Fetch(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwksError::Fetch(format!("{} answered {status}", self.url)));
        }
        let body = response.bytes().await.map_err(|e| JwksError::Fetch(e.without_url().to_string()))?;
        Ok(body.to_vec())
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

/// Keys by `kid` with bounded refetching.
pub struct JwksCache<S> {
    source: S,
    keys: RwLock<Arc<HashMap<String, Arc<PublishedKey>>>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_refetch_interval: Duration,
}

impl<S: JwksSource> JwksCache<S> {
    /// An empty cache; the first lookup fetches.
    pub fn new(source: S, min_refetch_interval: Duration) -> Self {
        Self { source, keys: RwLock::new(Arc::new(HashMap::new())), last_fetch: tokio::sync::Mutex::new(None), min_refetch_interval }
    }

    fn cached(&self, kid: &str) -> Option<Arc<PublishedKey>> {
        let keys = self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.get(kid).cloned()
    }

    /// Fetches now (for a warm start). Errors are returned, the cache stays as it was.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let mut last = self.last_fetch.lock().await;
        self.fetch_locked(&mut last).await
    }

    async fn fetch_locked(&self, last: &mut Option<Instant>) -> Result<usize, JwksError> {
        *last = Some(Instant::now());
        let keys = parse_jwks(&self.source.fetch().await?)?;
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(keys);
        Ok(n)
    }

    /// The key for `kid`, usable with `alg`. Refetches once on a miss unless
    /// the last fetch is more recent than the minimum interval.
    pub async fn key(&self, kid: &str, alg: Algorithm) -> Result<Arc<PublishedKey>, JwksError> {
        let found = match self.cached(kid) {
            Some(key) => key,
            None => {
                let mut last = self.last_fetch.lock().await;
                // Another request may have refreshed while we waited.
                match self.cached(kid) {
                    Some(key) => key,
                    None => {
                        if last.is_some_and(|t| t.elapsed() < self.min_refetch_interval) {
                            return Err(JwksError::UnknownKid);
                        }
                        self.fetch_locked(&mut last).await?;
                        self.cached(kid).ok_or(JwksError::UnknownKid)?
                    }
                }
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
        assert_eq!(cache.key("rsa-1", Algorithm::RS256).await.unwrap_err(), JwksError::UnknownKid);
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
        // A flood of unknown kids within the interval costs no fetch.
        for _ in 0..100 {
            assert_eq!(cache.key("forged", Algorithm::RS256).await.unwrap_err(), JwksError::UnknownKid);
        }
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
        // FusionAuth publishes the key (rotation); after the interval it is found.
        *source.document.write().unwrap() = JWKS.to_owned();
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(cache.key("rsa-1", Algorithm::RS256).await.is_ok());
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
        // Cached keys cost nothing.
        for _ in 0..10 {
            assert!(cache.key("rsa-1", Algorithm::RS256).await.is_ok());
        }
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn declared_algorithm_must_match_the_token() {
        let cache = JwksCache::new(counting(JWKS), Duration::from_secs(30));
        assert_eq!(cache.key("rsa-1", Algorithm::RS512).await.unwrap_err(), JwksError::AlgorithmMismatch);
        assert!(cache.key("rsa-1", Algorithm::RS256).await.is_ok());
    }
}
