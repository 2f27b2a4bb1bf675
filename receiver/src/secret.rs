//! Secret values from the config: given inline, or read from a file (a
//! mounted Kubernetes Secret). Files are re-read periodically, so a rotated
//! Secret takes effect without a restart. Values never appear in `Debug`
//! output, logs or answers.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the config file itself.
    Inline(String),
    /// Read from this file; trailing line breaks are ignored.
    File(PathBuf),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Inline([redacted])"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// A secret value with its SHA-256, so comparisons run over fixed-length
/// digests in constant time whatever the lengths involved.
pub struct SecretValue {
    value: String,
    digest: [u8; 32],
}

impl SecretValue {
    fn new(value: String) -> Self {
        let digest = Sha256::digest(value.as_bytes()).into();
        Self { value, digest }
    }

    /// The value itself. Callers must not log it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Constant-time equality with `candidate`.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.matches_digest(&Sha256::digest(candidate).into())
    }

    /// Constant-time equality with a candidate's SHA-256.
    fn matches_digest(&self, digest: &[u8; 32]) -> bool {
        bool::from(self.digest.ct_eq(digest))
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a secret could not be read. Names the file, never the content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file cannot be read.
    #[error("cannot read secret file {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file (or inline value) is empty after trimming line breaks.
    #[error("secret {0} is empty")]
    Empty(String),
    /// The file is not UTF-8 text.
    #[error("secret file {0} is not UTF-8 text")]
    NotText(PathBuf),
}

fn read(source: &SecretSource) -> Result<SecretValue, SecretError> {
    let value = match source {
        SecretSource::Inline(value) => value.clone(),
        SecretSource::File(path) => {
            let bytes = std::fs::read(path).map_err(|source| SecretError::Unreadable { path: path.clone(), source })?;
            let mut text = String::from_utf8(bytes).map_err(|_| SecretError::NotText(path.clone()))?;
            // `kubectl create secret --from-file` keeps the newline an editor added.
            let trimmed = text.trim_end_matches(['\n', '\r']).len();
            text.truncate(trimmed);
            text
        }
    };
    if value.is_empty() {
        let what = match source {
            SecretSource::Inline(_) => "value".to_owned(),
            SecretSource::File(path) => format!("file {}", path.display()),
        };
        return Err(SecretError::Empty(what));
    }
    Ok(SecretValue::new(value))
}

/// A secret whose current value can be swapped while requests read it.
pub struct Secret {
    source: SecretSource,
    current: ArcSwap<SecretValue>,
    /// The value a file change replaced, and when: still accepted for a
    /// grace period (`auth.rotationGraceMs`), so a rotation never locks
    /// FusionAuth out between the file changing here and FusionAuth sending
    /// the new value.
    replaced: ArcSwapOption<Replaced>,
}

/// A value a file change replaced, and when.
struct Replaced {
    value: Arc<SecretValue>,
    at: std::time::Instant,
}

/// How long a replaced secret value is still accepted, by default.
pub const ROTATION_GRACE: std::time::Duration = std::time::Duration::from_secs(300);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret").field("source", &self.source).finish_non_exhaustive()
    }
}

impl Secret {
    /// Loads the secret now; fails if it cannot be read.
    pub fn load(source: SecretSource) -> Result<Arc<Self>, SecretError> {
        let value = read(&source)?;
        Ok(Arc::new(Self { source, current: ArcSwap::from_pointee(value), replaced: ArcSwapOption::empty() }))
    }

    /// A file-backed secret that is not read: for checking a config whose
    /// files do not exist here (see `Config::check_without_files`).
    pub fn load_assumed(path: PathBuf) -> Arc<Self> {
        let value = SecretValue::new("assumed".to_owned());
        Arc::new(Self { source: SecretSource::File(path), current: ArcSwap::from_pointee(value), replaced: ArcSwapOption::empty() })
    }

    /// The current value.
    pub fn get(&self) -> arc_swap::Guard<Arc<SecretValue>> {
        self.current.load()
    }

    /// Re-reads a file-backed secret. `Ok(true)` when the value changed. On
    /// error the previous value stays in force: a Secret being rewritten by
    /// the kubelet must not lock FusionAuth out.
    pub fn reload(&self) -> Result<bool, SecretError> {
        if matches!(self.source, SecretSource::Inline(_)) {
            return Ok(false);
        }
        let fresh = read(&self.source)?;
        if fresh.digest == self.current.load().digest {
            return Ok(false);
        }
        let old = self.current.swap(Arc::new(fresh));
        self.replaced.store(Some(Arc::new(Replaced { value: old, at: std::time::Instant::now() })));
        Ok(true)
    }

    /// The value a file change replaced less than `grace` ago, if any: a
    /// signature FusionAuth made before it was switched to the new value
    /// is still checked against it.
    pub fn replaced_within(&self, grace: std::time::Duration) -> Option<Arc<SecretValue>> {
        self.replaced.load().as_deref().filter(|r| r.at.elapsed() < grace).map(|r| r.value.clone())
    }

    /// Constant-time match against the current value, or the value a file
    /// change replaced less than `grace` ago.
    pub fn accepts(&self, candidate: &[u8], grace: std::time::Duration) -> bool {
        // One digest of the candidate for both comparisons.
        let digest: [u8; 32] = Sha256::digest(candidate).into();
        let current = self.current.load().matches_digest(&digest);
        let recent = self.replaced_within(grace).is_some_and(|previous| previous.matches_digest(&digest));
        current | recent
    }

    /// Where it comes from (for log lines; never the value).
    pub fn source(&self) -> &SecretSource {
        &self.source
    }
}

/// Re-reads every file-backed secret every `interval`, until the process ends.
pub async fn watch(secrets: Vec<Arc<Secret>>, interval: std::time::Duration) {
    let files: Vec<_> = secrets.into_iter().filter(|s| matches!(s.source, SecretSource::File(_))).collect();
    if files.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        for secret in &files {
            let path = match &secret.source {
                SecretSource::File(path) => path.display().to_string(),
                SecretSource::Inline(_) => continue,
            };
            match secret.reload() {
                Ok(true) => tracing::info!(file = %path, "secret file changed; new value in force"),
                Ok(false) => {}
                Err(err) => tracing::warn!(file = %path, error = %err, "secret file unreadable; keeping the previous value"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_secrets_are_trimmed_reloaded_and_survive_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth");
        std::fs::write(&path, "first\n").unwrap();
        let secret = Secret::load(SecretSource::File(path.clone())).unwrap();
        assert_eq!(secret.get().expose(), "first");
        assert!(secret.get().matches(b"first"));
        assert!(!secret.get().matches(b"first\n"));
        assert!(!secret.reload().unwrap());

        std::fs::write(&path, "second").unwrap();
        assert!(secret.reload().unwrap());
        assert_eq!(secret.get().expose(), "second");

        assert!(secret.accepts(b"second", ROTATION_GRACE) && secret.accepts(b"first", ROTATION_GRACE), "the replaced value stays accepted");
        assert!(!secret.accepts(b"first", std::time::Duration::ZERO), "...for the grace period only");
        assert_eq!(secret.replaced_within(ROTATION_GRACE).unwrap().expose(), "first");
        assert!(secret.replaced_within(std::time::Duration::ZERO).is_none());
        assert!(!secret.accepts(b"third", ROTATION_GRACE));

        std::fs::remove_file(&path).unwrap();
        assert!(secret.reload().is_err());
        assert_eq!(secret.get().expose(), "second", "previous value stays in force");
    }

    #[test]
    fn empty_or_missing_secrets_fail_to_load_and_debug_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(Secret::load(SecretSource::File(path)), Err(SecretError::Empty(_))));
        assert!(matches!(Secret::load(SecretSource::File(dir.path().join("nope"))), Err(SecretError::Unreadable { .. })));
        assert!(matches!(Secret::load(SecretSource::Inline(String::new())), Err(SecretError::Empty(_))));
        let s = Secret::load(SecretSource::Inline("hunter2".into())).unwrap();
        assert!(!format!("{s:?} {:?}", s.get()).contains("hunter2"));
    }
}
