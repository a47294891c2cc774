//! The sources of a sync on this machine, built from the config: one per enabled category, the
//! config category seen through the per-machine overrides.

use std::path::PathBuf;

use crate::config::Config;
use crate::paths::Paths;
use crate::source::{Category, FileSource, Item, ItemMeta, ReadAll, Source, SourceError};
use crate::time::now_ms;

use super::error::SyncError;
use super::overrides::Overrides;
use super::state::{BaseEntry, StateStore};

/// Which categories a sync covers. Inside OpenCode the engine syncs only files: OpenCode's process
/// has its own SQLite, and a second SQLite library in the same process does not see its locks
/// (POSIX locks are per process), so the database is synced by a separate oc-sync process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scope {
    #[default]
    All,
    /// config, state, credentials.
    Files,
    /// sessions, messages, projects, todos (OpenCode's database).
    Database,
}

impl Scope {
    pub fn covers(self, c: Category) -> bool {
        use Category::*;
        match self {
            Scope::All => true,
            Scope::Files => matches!(c, Config | State | Credentials),
            Scope::Database => matches!(c, Sessions | Messages | Projects | Todos),
        }
    }
}

/// Why the credentials category is not synced, if it is not.
pub fn credentials_off_reason(config: &Config) -> Option<&'static str> {
    if !config.sync.credentials {
        Some("turned off (sync.credentials: false)")
    } else if config.encryption_key.is_none() {
        Some("no passphrase: set OC_SYNC_PASSPHRASE or encryptionKey (16+ characters, the same on every machine); credentials are never uploaded unencrypted")
    } else {
        None
    }
}

/// The sources of the enabled categories.
pub fn sources<'a>(paths: &Paths, config: &Config, state: &StateStore) -> Result<Vec<Box<dyn Source + 'a>>, SyncError> {
    let mut out: Vec<Box<dyn Source + 'a>> = Vec::new();
    if config.sync.config {
        let inner = FileSource::config(paths, config)?;
        let overrides = Overrides::load(&paths.opencode_config)?;
        match overrides.filter(|o| !o.is_empty()) {
            Some(overrides) => {
                let target = Overrides::target_key(&paths.opencode_config);
                let st = state.load().ok();
                let shared_base = st
                    .as_ref()
                    .and_then(|s| s.items.get(&target))
                    .and_then(|b: &BaseEntry| b.hash.as_deref())
                    .and_then(|h| state.base(h));
                out.push(Box::new(OverriddenSource { inner, overrides, target, shared_base }));
            }
            None => out.push(Box::new(inner)),
        }
    }
    if config.sync.state {
        out.push(Box::new(FileSource::state(paths, config)?));
    }
    if credentials_off_reason(config).is_none() {
        out.push(Box::new(FileSource::credentials(paths, config)?));
    }
    for src in crate::source::sessions::sources(&paths.opencode_db, &paths.state_dir, config, now_ms())? {
        out.push(Box::new(src));
    }
    Ok(out)
}

/// The sources of the categories `scope` covers. Sources outside it are not even created: in
/// particular OpenCode's database is not opened by a files-only sync (the plugin's, inside
/// OpenCode's process).
pub fn scoped_sources<'a>(paths: &Paths, config: &Config, state: &StateStore, scope: Scope) -> Result<Vec<Box<dyn Source + 'a>>, SyncError> {
    let mut c = config.clone();
    for cat in Category::ALL {
        *c.sync.get_mut(cat) &= scope.covers(cat);
    }
    sources(paths, &c, state)
}

/// The config category's source, seen through the per-machine overrides: reads give the shared
/// view (overridden keys replaced by the last synced shared values), writes re-apply the overrides.
struct OverriddenSource {
    inner: FileSource,
    overrides: Overrides,
    target: String,
    shared_base: Option<Vec<u8>>,
}

impl OverriddenSource {
    /// The item as this machine shares it: the override target with the shared values put back.
    fn shared_view(&self, mut item: Item) -> Result<Item, SourceError> {
        if item.meta.key == self.target {
            item.bytes = self
                .overrides
                .to_shared(&item.bytes, self.shared_base.as_deref())
                .map_err(|e| SourceError::KeyRefused { key: item.meta.key.clone(), reason: e.to_string() })?;
        }
        Ok(item)
    }
}

impl Source for OverriddenSource {
    fn category(&self) -> Category {
        self.inner.category()
    }
    fn list(&self) -> Result<Vec<ItemMeta>, SourceError> {
        self.inner.list()
    }
    fn read_all(&self) -> Result<ReadAll, SourceError> {
        let (items, skipped) = self.inner.read_all()?;
        Ok((items.into_iter().map(|i| self.shared_view(i)).collect::<Result<_, _>>()?, skipped))
    }
    fn read(&self, key: &str) -> Result<Option<Item>, SourceError> {
        self.inner.read(key)?.map(|i| self.shared_view(i)).transpose()
    }
    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), SourceError> {
        if key == self.target {
            let local = self
                .overrides
                .to_local(bytes)
                .map_err(|e| SourceError::KeyRefused { key: key.into(), reason: e.to_string() })?;
            return self.inner.write(key, &local);
        }
        self.inner.write(key, bytes)
    }
    fn delete(&self, key: &str) -> Result<(), SourceError> {
        self.inner.delete(key)
    }
}

/// The local file an item key lives in (`config/x` in OpenCode's config dir, `state/x` in its state dir).
pub fn local_path(paths: &Paths, key: &str) -> Option<PathBuf> {
    let (cat, rel) = key.split_once('/')?;
    let root = match cat {
        "config" => &paths.opencode_config,
        "state" => &paths.opencode_state,
        _ => return None,
    };
    Some(rel.split('/').fold(root.clone(), |p, part| p.join(part)))
}
