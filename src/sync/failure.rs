//! The last failed sync of this machine, kept for `status` (the CLI's and auto-sync's alike), so
//! the person sees when syncing stopped working and why, next to the last success.

use serde::{Deserialize, Serialize};

use crate::paths::Paths;

use super::error::SyncError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastFailure {
    pub at_ms: u64,
    pub message: String,
    /// Whether a later sync without change may succeed (an offline remote, a busy lock).
    pub retryable: bool,
}

/// Records a failed sync (best effort: status is informative, a full disk must not mask the error).
pub fn record(paths: &Paths, error: &SyncError, at_ms: u64) {
    let f = LastFailure { at_ms, message: error.to_string(), retryable: error.is_retryable() };
    if let Ok(bytes) = serde_json::to_vec(&f) {
        let _ = crate::fsutil::atomic_write(&paths.last_failure_file(), &bytes, None);
    }
}

/// The last failure recorded, if any (an unreadable file counts as none).
pub fn load(paths: &Paths) -> Option<LastFailure> {
    serde_json::from_slice(&std::fs::read(paths.last_failure_file()).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::EnvSnapshot;

    #[test]
    fn the_last_failure_is_kept_with_its_message() {
        let t = tempfile::tempdir().unwrap();
        let paths = Paths::resolve(&EnvSnapshot::new(t.path(), Vec::<(String, String)>::new())).unwrap();
        assert_eq!(load(&paths), None);
        record(&paths, &SyncError::Busy("/x/sync.lock".into()), 42);
        let f = load(&paths).unwrap();
        assert_eq!((f.at_ms, f.retryable), (42, true));
        assert!(f.message.contains("another oc-sync sync is running"), "{}", f.message);
    }
}
