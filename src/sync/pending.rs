//! What `status` shows without touching the remote: local changes not yet synced, and the secret
//! values found in this machine's config files.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Config;
use crate::paths::Paths;
use crate::remote::sha256_hex;
use crate::secrets::{ConfigSecrets, ItemSecrets};
use crate::source::{FileSource, Source};

use super::codec::config_secrets;
use super::error::SyncError;
use super::sources::sources;
use super::state::StateStore;

/// Local changes not yet synced, per category (no remote access).
pub fn pending(paths: &Paths, config: &Config) -> Result<BTreeMap<String, usize>, SyncError> {
    let state = StateStore::new(paths.sync_state_dir());
    let st = state.load()?;
    let mut out = BTreeMap::new();
    for src in sources(paths, config, &state)? {
        let cat = src.category().as_str().to_string();
        let mut n = 0;
        let mut seen = BTreeSet::new();
        if let Some(prints) = src.fingerprints()? {
            // Items whose fingerprint moved since their last sync (without reading them).
            for (key, print) in prints.items {
                if st.items.get(&key).and_then(|b| b.fingerprint.as_deref()) != Some(print.as_str()) {
                    n += 1;
                }
                seen.insert(key);
            }
            seen.extend(prints.skipped.into_iter().map(|(k, _)| k));
            let prefix = format!("{cat}/");
            n += st.items.iter().filter(|(k, b)| k.starts_with(&prefix) && b.hash.is_some() && !seen.contains(*k)).count();
            out.insert(cat, n);
            continue;
        }
        for item in src.read_all()?.0 {
            let hash = sha256_hex(&item.bytes);
            if st.items.get(&item.meta.key).and_then(|b| b.hash.as_deref()) != Some(hash.as_str()) {
                n += 1;
            }
            seen.insert(item.meta.key);
        }
        let prefix = format!("{cat}/");
        n += st.items.iter().filter(|(k, b)| k.starts_with(&prefix) && b.hash.is_some() && !seen.contains(*k)).count();
        out.insert(cat, n);
    }
    Ok(out)
}

/// The secret values of this machine's config files (paths only), for `status`.
pub fn config_secrets_status(paths: &Paths, config: &Config) -> Result<Vec<ItemSecrets>, SyncError> {
    if !config.sync.config {
        return Ok(Vec::new());
    }
    let codec = config_secrets(config, None);
    let (items, _) = FileSource::config(paths, config)?.read_all()?;
    Ok(items
        .iter()
        .filter(|i| ConfigSecrets::applies_to(&i.meta.key))
        .filter_map(|i| codec.report(&i.meta.key, &i.bytes))
        .collect())
}
