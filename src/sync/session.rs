//! Everything around one sync on this machine: choosing the remote, building the sources (with the
//! per-machine overrides), the machine-wide lock, recording conflicts, and `resolve`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, RemoteSetting};
use crate::machine_id;
use crate::paths::{EnvSnapshot, Paths};
use crate::remote::github::{GithubRemote, GithubSettings};
use crate::remote::local::LocalRemote;
use crate::remote::{sha256_hex, Remote};
use crate::source::{Category, FileSource, Item, ItemMeta, ReadAll, Source, SourceError};
use crate::status;

use super::conflicts::{ConflictRecord, ConflictStore, NewConflict};
use super::lock::SyncLock;
use super::overrides::Overrides;
use super::run::{item_aad, Codec, SyncError, SyncOptions, SyncReport, Syncer};
use crate::clock::VectorClock;
use crate::crypto::{Passphrase, Sealer};
use crate::secrets::detect::Detector;
use crate::secrets::ConfigSecrets;
use std::sync::Arc;
use super::state::{BaseEntry, StateStore};

/// How long a sync waits for another sync on this machine (CLI vs plugin) to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(120);

pub fn state_store(paths: &Paths) -> StateStore {
    StateStore::new(paths.state_dir.join("sync"))
}

pub fn conflict_store(paths: &Paths) -> ConflictStore {
    ConflictStore::new(paths.data_dir.join("conflicts"))
}

fn lock_path(paths: &Paths) -> PathBuf {
    paths.state_dir.join("sync.lock")
}

/// The GitHub remote's cache file (in oc-sync's state dir).
pub const GITHUB_CACHE_FILE: &str = "github.json";

/// The remote this configuration selects: a folder when `remote` is a path; GitHub when `remote`
/// is `github`, or unset and a token is found; else the default local folder.
pub fn open_remote(config: &Config, paths: &Paths, env: &EnvSnapshot) -> Result<Box<dyn Remote>, SyncError> {
    let path = match &config.remote {
        RemoteSetting::Local(p) => p.clone(),
        RemoteSetting::Github | RemoteSetting::Auto => match status::find_token(config, env, paths) {
            Some((token, _)) => return Ok(Box::new(open_github(config, paths, token.expose())?)),
            None if config.remote == RemoteSetting::Github => {
                return Err(SyncError::Remote(crate::remote::RemoteError::Denied(
                    "`remote` is \"github\" but no GitHub token was found: run `oc-sync login`, or set GITHUB_TOKEN (or GH_TOKEN, or `token` in the config)".into(),
                )));
            }
            None => {
                std::fs::create_dir_all(paths.default_local_remote.parent().expect("data dir"))
                    .map_err(|e| SyncError::Other(format!("cannot create {}: {e}", paths.data_dir.display())))?;
                paths.default_local_remote.clone()
            }
        },
    };
    Ok(Box::new(LocalRemote::open(path)?))
}

/// The GitHub remote for this configuration (blocking: never call from an async task).
pub fn open_github(config: &Config, paths: &Paths, token: &str) -> Result<GithubRemote, SyncError> {
    let settings = GithubSettings {
        api_url: config.github_api_url.clone(),
        token: token.to_owned(),
        owner: config.repo_owner.clone(),
        repo: config.repo_name.clone(),
        branch: config.branch.clone(),
        cache_file: Some(paths.state_dir.join(GITHUB_CACHE_FILE)),
    };
    Ok(GithubRemote::open(&settings)?)
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

/// The sealer of this configuration's passphrase (None without one).
pub fn passphrase_sealer(config: &Config) -> Result<Option<Arc<Sealer>>, SyncError> {
    let Some(key) = config.encryption_key.as_ref() else { return Ok(None) };
    let pass = |s: &crate::config::Secret| Passphrase::new(s.expose()).map_err(|e| SyncError::Crypto(e.to_string()));
    let current = pass(key)?;
    let old = config.old_encryption_key.as_ref().map(pass).transpose()?;
    let mut sealer = Sealer::new(current, old);
    // Test knob: a lower PBKDF2 count (the envelope records the count used, so any machine opens it).
    if let Some(n) = std::env::var("OC_SYNC_KDF_ITERATIONS").ok().and_then(|v| v.parse::<u32>().ok()) {
        sealer = sealer.with_iterations(n.max(crate::crypto::MIN_ITERATIONS));
    }
    Ok(Some(Arc::new(sealer)))
}

/// Seals credential items with the passphrase (AES-256-GCM, key from PBKDF2).
pub struct CredentialCodec {
    sealer: Arc<Sealer>,
}

impl CredentialCodec {
    /// The codec for this configuration, or None when credentials do not sync.
    pub fn for_config(config: &Config) -> Result<Option<CredentialCodec>, SyncError> {
        if credentials_off_reason(config).is_some() {
            return Ok(None);
        }
        Ok(passphrase_sealer(config)?.map(|sealer| CredentialCodec { sealer }))
    }
}

impl Codec for CredentialCodec {
    fn applies_to(&self, key: &str) -> bool {
        key.starts_with("credentials/")
    }
    fn seal(&self, key: &str, clock: &VectorClock, plaintext: &[u8], _previous: Option<&[u8]>) -> Result<Vec<u8>, SyncError> {
        self.sealer.seal(plaintext, &item_aad(key, clock)).map_err(|e| SyncError::Crypto(format!("cannot encrypt {key}: {e}")))
    }
    fn open(&self, key: &str, clock: &VectorClock, sealed: &[u8], _local: Option<&[u8]>) -> Result<Vec<u8>, SyncError> {
        self.sealer
            .open(sealed, &item_aad(key, clock))
            .map(|o| o.plaintext)
            .map_err(|e| match e {
                crate::crypto::CryptoError::WrongPassphrase => {
                    SyncError::Crypto(format!("{key}: {e} (or the remote copy of {key} was altered; nothing was written)"))
                }
                e => SyncError::Crypto(format!("{key}: {e}")),
            })
    }
}

/// The field-level codec of config items: secret values sealed with the passphrase, or held back.
pub fn config_secrets(config: &Config, sealer: Option<Arc<Sealer>>) -> ConfigSecrets {
    ConfigSecrets::new(Detector::new(&config.secret_paths, &config.not_secret_paths), sealer)
}

impl Codec for ConfigSecrets {
    fn applies_to(&self, key: &str) -> bool {
        ConfigSecrets::applies_to(key)
    }
    fn seal(&self, key: &str, _clock: &VectorClock, plaintext: &[u8], previous: Option<&[u8]>) -> Result<Vec<u8>, SyncError> {
        ConfigSecrets::seal(self, key, plaintext, previous).map_err(|e| SyncError::Crypto(e.to_string()))
    }
    fn open(&self, key: &str, _clock: &VectorClock, sealed: &[u8], local: Option<&[u8]>) -> Result<Vec<u8>, SyncError> {
        ConfigSecrets::open(self, key, sealed, local).map_err(|e| SyncError::Crypto(e.to_string()))
    }
    fn wants_previous(&self, key: &str, plaintext: &[u8]) -> bool {
        self.find(key, plaintext).is_ok_and(|f| !f.is_empty())
    }
    fn reseals(&self, key: &str, plaintext: &[u8]) -> bool {
        self.wants_previous(key, plaintext)
    }
    fn redact(&self, key: &str, sides: [&[u8]; 2], conflict: &mut crate::merge::Conflict) {
        ConfigSecrets::redact(self, key, sides, conflict)
    }
}

/// Every codec of a sync: each item goes through the first that applies to it.
pub struct Codecs(Vec<Box<dyn Codec>>);

impl Codecs {
    /// Credentials (whole items, when they sync) and config secrets (field by field).
    pub fn for_config(config: &Config) -> Result<Codecs, SyncError> {
        let sealer = passphrase_sealer(config)?;
        let mut all: Vec<Box<dyn Codec>> = Vec::new();
        if credentials_off_reason(config).is_none()
            && let Some(s) = &sealer
        {
            all.push(Box::new(CredentialCodec { sealer: s.clone() }));
        }
        if config.sync.config {
            all.push(Box::new(config_secrets(config, sealer)));
        }
        Ok(Codecs(all))
    }

    fn get(&self, key: &str) -> Option<&dyn Codec> {
        self.0.iter().find(|c| c.applies_to(key)).map(|c| c.as_ref())
    }
}

impl Codec for Codecs {
    fn applies_to(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
    fn seal(&self, key: &str, clock: &VectorClock, plaintext: &[u8], previous: Option<&[u8]>) -> Result<Vec<u8>, SyncError> {
        match self.get(key) {
            Some(c) => c.seal(key, clock, plaintext, previous),
            None => Ok(plaintext.to_vec()),
        }
    }
    fn open(&self, key: &str, clock: &VectorClock, sealed: &[u8], local: Option<&[u8]>) -> Result<Vec<u8>, SyncError> {
        match self.get(key) {
            Some(c) => c.open(key, clock, sealed, local),
            None => Ok(sealed.to_vec()),
        }
    }
    fn wants_previous(&self, key: &str, plaintext: &[u8]) -> bool {
        self.get(key).is_some_and(|c| c.wants_previous(key, plaintext))
    }
    fn reseals(&self, key: &str, plaintext: &[u8]) -> bool {
        self.get(key).is_some_and(|c| c.reseals(key, plaintext))
    }
    fn redact(&self, key: &str, sides: [&[u8]; 2], conflict: &mut crate::merge::Conflict) {
        if let Some(c) = self.get(key) {
            c.redact(key, sides, conflict)
        }
    }
}

/// The sources of the enabled categories.
pub fn sources<'a>(paths: &Paths, config: &Config, state: &StateStore) -> Result<Vec<Box<dyn Source + 'a>>, SyncError> {
    let mut out: Vec<Box<dyn Source + 'a>> = Vec::new();
    if config.sync.config {
        let inner = FileSource::config(paths, config)?;
        let overrides = Overrides::load(&paths.opencode_config).map_err(|e| SyncError::Other(e.to_string()))?;
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
    for src in crate::source::sessions::sources(&paths.opencode_db, &paths.state_dir, config, super::run::system_now_ms())? {
        out.push(Box::new(src));
    }
    Ok(out)
}

/// The sources of the categories `scope` covers. Sources outside it are not even created: in
/// particular OpenCode's database is not opened by a files-only sync (the plugin's, inside
/// OpenCode's process).
fn scoped_sources<'a>(paths: &Paths, config: &Config, state: &StateStore, scope: super::run::Scope) -> Result<Vec<Box<dyn Source + 'a>>, SyncError> {
    let mut c = config.clone();
    let s = &mut c.sync;
    for (cat, on) in [
        (Category::Config, &mut s.config),
        (Category::State, &mut s.state),
        (Category::Credentials, &mut s.credentials),
        (Category::Sessions, &mut s.sessions),
        (Category::Messages, &mut s.messages),
        (Category::Projects, &mut s.projects),
        (Category::Todos, &mut s.todos),
    ] {
        *on &= scope.covers(cat);
    }
    sources(paths, &c, state)
}

/// Runs one full sync on this machine, holding the machine-wide sync lock.
pub fn sync_now(paths: &Paths, config: &Config, env: &EnvSnapshot, opts: &SyncOptions) -> Result<SyncReport, SyncError> {
    sync_observed(paths, config, env, opts, None, None)
}

/// [`sync_now`], telling `progress` the running totals after each round of a sync that needs
/// several (a first sync of a large database).
pub fn sync_with_progress(
    paths: &Paths,
    config: &Config,
    env: &EnvSnapshot,
    opts: &SyncOptions,
    progress: &dyn Fn(&SyncReport),
) -> Result<SyncReport, SyncError> {
    sync_observed(paths, config, env, opts, None, Some(progress))
}

/// [`sync_now`], telling `on_local_write` about each local write (see [`Syncer::on_local_write`]).
pub fn sync_observed(
    paths: &Paths,
    config: &Config,
    env: &EnvSnapshot,
    opts: &SyncOptions,
    on_local_write: Option<&super::run::WriteObserver<'_>>,
    on_progress: Option<&dyn Fn(&SyncReport)>,
) -> Result<SyncReport, SyncError> {
    let machine = machine_id::get_or_create(config.machine_id.as_deref(), &paths.machine_id_file)
        .map_err(|e| SyncError::Other(format!("cannot get this machine's id: {e}")))?;
    let _lock = SyncLock::acquire(&lock_path(paths), LOCK_WAIT).map_err(|e| SyncError::Other(e.to_string()))?;
    let remote = open_remote(config, paths, env)?;
    let state = state_store(paths);
    let conflicts = conflict_store(paths);
    let blocked: BTreeSet<String> = conflicts
        .list(false)
        .map_err(|e| SyncError::Other(format!("cannot read {}: {e}", conflicts.root().display())))?
        .into_iter()
        .filter(|c| c.needs_person)
        .map(|c| c.key)
        .collect();
    let codec = Codecs::for_config(config)?;
    let syncer = Syncer {
        machine: machine.id.clone(),
        config,
        remote: remote.as_ref(),
        sources: scoped_sources(paths, config, &state, opts.scope)?,
        state,
        blocked,
        now_ms: super::run::system_now_ms,
        on_local_write,
        codec: Some(&codec as &dyn Codec),
        on_progress,
    };
    let report = syncer.sync(opts)?;
    if !opts.dry_run {
        for c in &report.conflicts {
            let meta = NewConflict {
                strategy: c.strategy.clone(),
                winner: c.winner.clone(),
                needs_person: c.needs_person,
                local_clock: c.local_clock.clone(),
                remote_clock: c.remote_clock.clone(),
                local_machine: machine.id.clone(),
                remote_machine: c.remote_machine.clone(),
                details: c.details.clone(),
            };
            if c.needs_person && conflicts.open_for(&c.key).ok().flatten().is_some() {
                continue; // already recorded and waiting
            }
            conflicts
                .record(&c.key, c.local.as_deref(), c.remote.as_deref(), c.base.as_deref(), meta)
                .map_err(|e| SyncError::Other(format!("cannot keep the conflict copies of {}: {e}", c.key)))?;
        }
    }
    Ok(report)
}

/// How `resolve` settles a conflict.
#[derive(Debug, Clone)]
pub enum Resolution {
    Local,
    Remote,
    File(PathBuf),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    pub key: String,
    pub records: Vec<String>,
    pub how: String,
}

/// Settles the open conflicts of an item (by key or conflict id): writes the chosen content as the
/// local item and, for items held by "ask", records that the remote version was seen, so the next
/// sync pushes the choice instead of meeting the same conflict again.
pub fn resolve(paths: &Paths, config: &Config, key_or_id: &str, how: &Resolution) -> Result<Resolved, SyncError> {
    let _lock = SyncLock::acquire(&lock_path(paths), LOCK_WAIT).map_err(|e| SyncError::Other(e.to_string()))?;
    let store = conflict_store(paths);
    let open = store.find(key_or_id).map_err(|e| SyncError::Other(e.to_string()))?;
    let Some(newest) = open.last().cloned() else {
        return Err(SyncError::Other(format!(
            "no open conflict matches {key_or_id:?}; `oc-sync conflicts` lists them"
        )));
    };
    let key = newest.key.clone();
    let bytes = match how {
        Resolution::Local => copy(&store, &newest, "local")?,
        Resolution::Remote => copy(&store, &newest, "remote")?,
        Resolution::File(p) => Some(std::fs::read(p).map_err(|e| SyncError::Other(format!("cannot read {}: {e}", p.display())))?),
    };
    let state = state_store(paths);
    let srcs = sources(paths, config, &state)?;
    let cat = Category::of_key(&key).ok_or_else(|| SyncError::Other(format!("{key} is not a synced item")))?;
    let src = srcs
        .iter()
        .find(|s| s.category() == cat)
        .ok_or_else(|| SyncError::Other(format!("the {} category is turned off in the config", cat.as_str())))?;
    match &bytes {
        Some(b) => src.write(&key, b)?,
        None => src.delete(&key)?,
    }
    if open.iter().any(|r| r.needs_person) {
        // The person saw the remote version: make it this machine's base.
        let mut st = state.load()?;
        let remote_copy = copy(&store, &newest, "remote")?;
        let base = st.items.entry(key.clone()).or_insert_with(|| BaseEntry {
            clock: Default::default(),
            hash: None,
            kind: "text".into(),
            category: cat.as_str().into(),
            synced_ms: 0,
            fingerprint: None,
        });
        base.clock = base.clock.join(&newest.remote_clock);
        base.hash = remote_copy.as_deref().map(sha256_hex);
        if let Some(r) = &remote_copy {
            state.put_base(r)?;
        }
        state.save(&st)?;
    }
    let how_s = match how {
        Resolution::Local => "local",
        Resolution::Remote => "remote",
        Resolution::File(_) => "file",
    };
    for r in &open {
        store.mark_resolved(r, how_s).map_err(|e| SyncError::Other(e.to_string()))?;
    }
    Ok(Resolved { key, records: open.iter().map(|r| r.id.clone()).collect(), how: how_s.into() })
}

fn copy(store: &ConflictStore, rec: &ConflictRecord, side: &str) -> Result<Option<Vec<u8>>, SyncError> {
    store.read_copy(rec, side).map_err(|e| SyncError::Other(format!("cannot read the kept {side} copy: {e}")))
}

/// Local changes not yet synced, per category (no remote access).
pub fn pending(paths: &Paths, config: &Config) -> Result<std::collections::BTreeMap<String, usize>, SyncError> {
    let state = state_store(paths);
    let st = state.load()?;
    let mut out = std::collections::BTreeMap::new();
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
pub fn config_secrets_status(paths: &Paths, config: &Config) -> Result<Vec<crate::secrets::ItemSecrets>, SyncError> {
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

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
