//! Remote items this machine refuses to take, remembered in the sync state with the remote's hash
//! so an idle sync does not download them again: a refusal is retried only when the remote item
//! changes (another hash) or when what the refusal depended on here changes (the project or
//! session now exists, writes are allowed again, the sync settings or the oc-sync version
//! changed). Status lists them from the state.

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::remote::sha256_hex;

/// One refused remote item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// The remote entry's hash when it was refused (`None`: a tombstone).
    pub hash: Option<String>,
    /// Why, as shown to the person.
    pub reason: String,
    /// Fingerprint of what the refusal depended on here (see [`condition`]).
    pub condition: String,
}

impl Refusal {
    /// "key: reason", as listed in sync reports.
    pub fn line(&self, key: &str) -> String {
        format!("{key}: {}", self.reason)
    }

    /// Whether this remembered refusal still holds for a remote entry with `hash` under `condition`.
    pub fn holds(&self, hash: Option<&String>, condition: &str) -> bool {
        self.hash.as_ref() == hash && self.condition == condition
    }
}

/// Fingerprint of the local conditions a refusal depends on: the source's own (`source`), the
/// settings that decide which items sync and where, and this build's version.
pub fn condition(config: &Config, source: &str) -> String {
    let settings = format!(
        "{}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{:?}|{source}",
        env!("CARGO_PKG_VERSION"),
        config.sync,
        config.include,
        config.exclude,
        config.credential_files,
        config.session_projects,
        config.session_max_bytes,
        config.session_path_map,
    );
    sha256_hex(settings.as_bytes())[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_holds_until_the_remote_or_the_condition_changes() {
        let c = Config::default();
        let r = Refusal { hash: Some("a".into()), reason: "no".into(), condition: condition(&c, "x") };
        assert!(r.holds(Some(&"a".to_string()), &condition(&c, "x")));
        assert!(!r.holds(Some(&"b".to_string()), &condition(&c, "x")));
        assert!(!r.holds(Some(&"a".to_string()), &condition(&c, "y")));
        let other = Config { exclude: vec!["*.md".into()], ..Config::default() };
        assert!(!r.holds(Some(&"a".to_string()), &condition(&other, "x")));
        assert_eq!(r.line("k"), "k: no");
    }
}
