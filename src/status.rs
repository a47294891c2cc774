//! What `oc-sync status` reports: config, machine id, remote, plugin registration, last sync.
//! Reading status never writes anything and never fails: problems become part of the report,
//! together with what to do next.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::category::Category;
use crate::config::{self, Config, RemoteSetting};
use crate::token_store::find_token;
use crate::machine_id;
use crate::opencode_config;
use crate::paths::{EnvSnapshot, Paths};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub version: String,
    pub config: ConfigStatus,
    pub machine_id: Option<String>,
    pub machine_id_origin: Option<String>,
    pub remote: RemoteStatus,
    pub plugin: PluginStatus,
    /// Every category, with its state and, when it does not sync, why.
    pub categories: Vec<CategoryStatus>,
    /// The last sync that succeeded on this machine (CLI or auto-sync).
    pub last_success: Option<When>,
    /// The last sync that failed on this machine, with its message.
    pub last_failure: Option<FailureStatus>,
    /// Local changes not yet synced, per category (null when they cannot be computed).
    pub pending: Option<std::collections::BTreeMap<String, usize>>,
    /// Open conflicts, and how many of them wait for the person (strategy "ask").
    pub conflicts_open: usize,
    pub conflicts_waiting: Vec<String>,
    /// Remote items refused at the last sync ("key: reason"): nothing of them was written here.
    pub refused: Vec<String>,
    /// The auto-sync scheduler of the OpenCode plugin on this machine, as it last reported it.
    pub autosync: Option<AutoSyncStatus>,
    /// The GitHub side (null when the remote is not GitHub and this machine never synced with it).
    pub github: Option<GithubStatus>,
    /// Secret values found in config files (paths, never values) and whether they are sealed
    /// (a passphrase is set) or held back on this machine.
    pub config_secrets: ConfigSecretsStatus,
    /// The OpenSync export, when set up (from local files only).
    pub opensync: Option<OpenSyncStatus>,
    /// What the person should do next, if anything.
    pub next_steps: Vec<String>,
}

/// A moment, for people (local time, how long ago) and scripts (milliseconds since the epoch).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct When {
    pub at_ms: u64,
    pub local: String,
    pub ago: String,
}

impl When {
    pub fn of(at_ms: u64, now_ms: u64) -> When {
        When { at_ms, local: crate::time::format_local(at_ms), ago: crate::time::ago(at_ms, now_ms) }
    }
}

/// See [`StatusReport::last_failure`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureStatus {
    pub at: When,
    pub message: String,
    /// Whether a later sync may succeed without the person doing anything (offline, busy).
    pub retryable: bool,
    /// Whether a sync succeeded after it.
    pub recovered: bool,
}

/// One category: whether it syncs and, when not, why (said once per reason in the plain output).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CategoryStatus {
    pub name: Category,
    pub state: CategoryState,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CategoryState {
    Syncing,
    /// Turned off in the config.
    Off,
    /// On, but cannot sync on this machine as things are (no passphrase, needs sessions).
    NotSynced,
    /// On, and waits for something that will come (OpenCode's database).
    Waiting,
}

/// What this machine knows about its GitHub remote, read from the GitHub remote's cache file
/// (as of the last sync) and the token settings: status never contacts GitHub.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GithubStatus {
    pub api_url: String,
    /// The token's account, as GitHub reported it at the last sync.
    pub account: Option<String>,
    pub owner: Option<String>,
    pub repo: Option<String>,
    pub branch: Option<String>,
    /// "private" / "internal".
    pub visibility: Option<String>,
    pub visibility_checked_at: Option<String>,
    pub last_push: Option<GithubPush>,
    pub rate_limit: Option<GithubRate>,
    /// The token in use, masked, and where it comes from: "config", "GITHUB_TOKEN", "GH_TOKEN"
    /// or "oc-sync login".
    pub token: Option<String>,
    pub token_source: Option<String>,
    /// Whether the facts above were recorded with another token than the current one.
    pub recorded_with_other_token: bool,
}

/// See [`StatusReport::config_secrets`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSecretsStatus {
    /// true: sealed with the passphrase on push; false: held back (the remote gets a marker).
    pub sealed: bool,
    pub items: Vec<crate::secrets::ItemSecrets>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GithubPush {
    pub sha: String,
    pub at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GithubRate {
    pub remaining: Option<u64>,
    pub limit: Option<u64>,
    pub reset_at: Option<String>,
    /// When GitHub reported these figures.
    pub as_of: Option<String>,
}

/// The GitHub part of the report: Some when the remote is GitHub or this machine has synced with
/// GitHub before. Reads local files only.
pub fn github_status(cfg: &Config, env: &EnvSnapshot, paths: &Paths, remote_is_github: bool) -> Option<GithubStatus> {
    use crate::remote::github::cache;
    let persisted = cache::load(&paths.github_cache_file());
    let facts = cache::read_facts(&paths.github_cache_file());
    if facts.is_none() && !remote_is_github {
        return None;
    }
    let iso = |s: u64| crate::time::format_ms(s.saturating_mul(1000));
    let token = find_token(cfg, env, paths);
    let recorded_with_other_token = match (&persisted, &token, &facts) {
        (Some(p), Some((t, _)), Some(_)) => !p.key.token_id.is_empty() && p.key.token_id != cache::token_id(t.expose()),
        _ => false,
    };
    let f = facts.as_ref();
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Some(GithubStatus {
        api_url: f.and_then(|f| nonempty(&f.api_url)).unwrap_or_else(|| cfg.github_api_url.clone()),
        account: f.and_then(|f| f.login.clone()),
        owner: f.and_then(|f| nonempty(&f.owner)),
        repo: f.and_then(|f| nonempty(&f.repo)),
        branch: f.and_then(|f| nonempty(&f.branch)),
        visibility: f.and_then(|f| nonempty(&f.visibility)),
        visibility_checked_at: f.and_then(|f| (f.checked_s > 0).then(|| iso(f.checked_s))),
        last_push: f.and_then(|f| f.last_push_sha.clone().map(|sha| GithubPush { sha, at: f.last_push_s.map(iso) })),
        rate_limit: f.and_then(|f| {
            (f.rate.remaining.is_some() || f.rate.limit.is_some()).then(|| GithubRate {
                remaining: f.rate.remaining,
                limit: f.rate.limit,
                reset_at: f.rate.reset.map(iso),
                as_of: f.rate_s.map(iso),
            })
        }),
        token: token.as_ref().map(|(t, _)| t.masked()),
        token_source: token.map(|(_, src)| src.to_string()),
        recorded_with_other_token,
    })
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenSyncStatus {
    pub url: String,
    pub key: String,
    pub sessions_sent: usize,
    pub messages_sent: usize,
    pub last_sync: Option<String>,
    pub last_error: Option<String>,
}

fn opensync_status(paths: &Paths, env: &EnvSnapshot) -> Option<OpenSyncStatus> {
    let found = crate::opensync::credentials::load(paths, env)?;
    let st = crate::opensync::state::load(&crate::opensync::state::file(paths));
    Some(OpenSyncStatus {
        url: found.credentials.url.clone(),
        key: crate::opensync::client::mask_key(&found.credentials.api_key),
        sessions_sent: st.stored_counts().0,
        messages_sent: st.stored_counts().1,
        last_sync: st.last_sync_ms.map(crate::time::format_ms),
        last_error: st.last_error,
    })
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoSyncStatus {
    pub pid: u32,
    /// Whether that OpenCode process is still running (Linux only; otherwise null).
    pub alive: Option<bool>,
    pub updated_ms: u64,
    pub scheduler: Option<crate::autosync::scheduler::SchedulerState>,
}

fn autosync_status(paths: &Paths) -> Option<AutoSyncStatus> {
    let text = std::fs::read_to_string(paths.autosync_file()).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let pid = v.get("pid")?.as_u64()? as u32;
    let alive = if cfg!(target_os = "linux") { Some(std::path::Path::new(&format!("/proc/{pid}")).exists()) } else { None };
    Some(AutoSyncStatus {
        pid,
        alive,
        updated_ms: v.get("updatedMs").and_then(|x| x.as_u64()).unwrap_or(0),
        scheduler: v.get("scheduler").and_then(|s| serde_json::from_value(s.clone()).ok()),
    })
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigStatus {
    pub file: PathBuf,
    pub found: bool,
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteStatus {
    /// "local" or "github".
    pub kind: String,
    pub location: String,
    pub reachable: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    pub registered: bool,
    pub entry: Option<String>,
    pub opencode_config_file: PathBuf,
    pub installed_for_bare_name: bool,
}

/// The remote this configuration resolves to.
pub fn remote_status(cfg: &Config, env: &EnvSnapshot, paths: &Paths) -> RemoteStatus {
    let local = |p: &Path, why: &str, default: bool| {
        let (reachable, detail) = match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => (true, format!("folder exists{why}")),
            Ok(_) => (false, format!("{} exists but is not a folder: point `remote` at a folder", p.display())),
            // As the folder remote itself decides: a missing folder is created only when its parent
            // exists, so an unmounted share is never mistaken for a new, empty remote.
            Err(_) => match p.parent() {
                Some(parent) if default || parent.is_dir() => (true, format!("will be created on the first sync{why}")),
                _ => (false, format!("neither {} nor its parent folder exists (is the share mounted?)", p.display())),
            },
        };
        RemoteStatus { kind: "local".into(), location: p.display().to_string(), reachable, detail }
    };
    let facts = crate::remote::github::cache::read_facts(&paths.github_cache_file());
    let github = |detail: String, reachable: bool| RemoteStatus {
        kind: "github".into(),
        location: match &facts {
            Some(f) => format!("{}/{} (branch {})", f.owner, f.repo, f.branch),
            None => format!("{}/{}", cfg.repo_owner.clone().unwrap_or_else(|| "<your account>".into()), cfg.repo_name),
        },
        reachable,
        detail,
    };
    let with_token = |t: &config::Secret, from: &str| {
        let seen = match &facts {
            Some(f) => format!("last contacted {}", crate::time::format_ms(f.checked_s * 1000)),
            None => "not contacted yet; the first sync creates the private repository if it is missing".into(),
        };
        github(format!("token {} from {from}; {seen}", t.masked()), true)
    };
    match &cfg.remote {
        RemoteSetting::Local(p) => local(p, "", false),
        RemoteSetting::Git(u) => git_status(cfg, paths, u),
        RemoteSetting::Github => match find_token(cfg, env, paths) {
            Some((t, from)) => with_token(&t, from),
            None => github("no GitHub token: run `oc-sync login`, or set GITHUB_TOKEN, or `token` in the config".into(), false),
        },
        RemoteSetting::Auto => match find_token(cfg, env, paths) {
            Some((t, from)) => with_token(&t, from),
            None => local(&paths.default_local_remote, " (default local remote: no GitHub token configured)", true),
        },
    }
}

/// A git remote: not contacted by `status` (that is `sync`'s job); says where the mirror is, how
/// git authenticates, and that privacy cannot be checked.
fn git_status(cfg: &Config, paths: &Paths, url: &str) -> RemoteStatus {
    let branch = cfg.branch.clone().unwrap_or_else(|| "main".into());
    let (reachable, mut detail) = match crate::remote::git::check_git_version() {
        Ok(()) => (true, String::new()),
        Err(e) => (false, format!("{e}; ")),
    };
    let mirror = paths.git_mirror_dir(url, &branch);
    detail.push_str(&format!(
        "branch {branch}; mirror {} ({}); git authenticates with your own SSH keys/agent and credential helpers",
        mirror.display(),
        if mirror.join("HEAD").is_file() { "exists" } else { "created on the first sync" }
    ));
    if crate::remote::git::GitUrl::parse(url).is_ok_and(|u| u.is_networked()) {
        detail.push_str("; oc-sync cannot check whether a repository on a git host is private: keep it private");
    }
    RemoteStatus { kind: "git".into(), location: url.to_string(), reachable, detail }
}

pub fn plugin_status(paths: &Paths) -> PluginStatus {
    // OpenCode merges all its global config files: the entry counts in any of them.
    let (file, entry) = match opencode_config::find_plugin_entry_in(&paths.opencode_config) {
        Some((file, entry)) => (file, Some(entry)),
        None => (opencode_config::global_config_file(&paths.opencode_config), None),
    };
    PluginStatus {
        registered: entry.is_some(),
        entry,
        opencode_config_file: file,
        installed_for_bare_name: paths.opencode_plugin_install.join("package.json").exists(),
    }
}

/// Builds the whole report.
pub fn report(paths: &Paths, env: &EnvSnapshot) -> StatusReport {
    let mut next_steps = Vec::new();
    let (cfg, config_status) = config_status(paths, env, &mut next_steps);
    let machine = machine_id::peek(cfg.machine_id.as_deref(), &paths.machine_id_file);
    let remote = remote_status(&cfg, env, paths);
    if !remote.reachable {
        next_steps.push(format!("remote: {}", remote.detail));
    }
    let github = github_status(&cfg, env, paths, remote.kind == "github");
    let plugin = plugin_status(paths);
    if !plugin.registered {
        next_steps.push(format!(
            "add \"oc-sync\" to the \"plugin\" list in {} (or run `oc-sync install`) so OpenCode loads it",
            plugin.opencode_config_file.display()
        ));
    }
    let sync_state = crate::sync::state::StateStore::new(paths.sync_state_dir()).load().ok();
    let now = crate::time::now_ms();
    let last_ok_ms = sync_state.as_ref().and_then(|s| s.last_sync_ms);
    let last_failure = crate::sync::failure::load(paths).map(|f| FailureStatus {
        at: When::of(f.at_ms, now),
        recovered: last_ok_ms.is_some_and(|ok| ok > f.at_ms),
        message: f.message,
        retryable: f.retryable,
    });
    let refused: Vec<String> = sync_state.iter().flat_map(|s| s.refused.iter().map(|(k, r)| r.line(k))).collect();
    let pending = crate::sync::pending::pending(paths, &cfg).ok();
    let open = crate::sync::conflicts::ConflictStore::new(paths.conflicts_dir()).list(false).unwrap_or_default();
    let conflicts_waiting: Vec<String> = open.iter().filter(|c| c.needs_person).map(|c| c.key.clone()).collect();
    if !conflicts_waiting.is_empty() {
        next_steps.push(format!(
            "settle {} conflict(s) waiting for you: `oc-sync conflicts`, then `oc-sync resolve KEY --local|--remote|--file PATH`",
            conflicts_waiting.len()
        ));
    }
    let config_secrets = ConfigSecretsStatus {
        sealed: cfg.encryption_key.is_some(),
        items: crate::sync::pending::config_secrets_status(paths, &cfg).unwrap_or_default(),
    };
    next_steps.extend(config_secrets_steps(&config_secrets));
    StatusReport {
        version: crate::VERSION.to_string(),
        config: config_status,
        machine_id: machine.as_ref().map(|m| m.id.clone()),
        machine_id_origin: machine.map(|m| m.origin.to_string()),
        remote,
        plugin,
        categories: categories(&cfg, paths),
        last_success: last_ok_ms.map(|ms| When::of(ms, now)),
        last_failure,
        pending,
        conflicts_open: open.len(),
        conflicts_waiting,
        refused,
        autosync: autosync_status(paths),
        github,
        opensync: opensync_status(paths, env),
        config_secrets,
        next_steps,
    }
}

/// The config (the defaults when it is broken) and its status; adds what to do about it to
/// `next_steps`.
fn config_status(paths: &Paths, env: &EnvSnapshot, next_steps: &mut Vec<String>) -> (Config, ConfigStatus) {
    let (cfg, st) = match config::load(paths, env, None) {
        Ok(l) => {
            let st = ConfigStatus {
                file: paths.config_file.clone(),
                found: l.file.is_some(),
                error: None,
                warnings: l.warnings.iter().map(|w| w.to_string()).collect(),
            };
            (l.config, st)
        }
        Err(e) => {
            next_steps.push(format!("fix the config: {e}"));
            let st = ConfigStatus { file: paths.config_file.clone(), found: paths.config_file.exists(), error: Some(e.to_string()), warnings: vec![] };
            (Config::default(), st)
        }
    };
    if !st.found {
        next_steps.push(format!(
            "optional: run `oc-sync init` to write a commented config at {} (the defaults work without one)",
            paths.config_file.display()
        ));
    }
    (cfg, st)
}

/// Every category, each with why it does not sync when it does not.
fn categories(cfg: &Config, paths: &Paths) -> Vec<CategoryStatus> {
    let db_missing = crate::source::sessions::unavailable_reason(&paths.opencode_db);
    let credentials_off = crate::sync::sources::credentials_off_reason(cfg);
    Category::ALL
        .into_iter()
        .map(|c| {
            let (state, reason) = match c {
                _ if !cfg.sync.get(c) => (CategoryState::Off, None),
                Category::Credentials if credentials_off.is_some() => (CategoryState::NotSynced, credentials_off.map(str::to_string)),
                Category::Messages | Category::Todos if !cfg.sync.sessions => {
                    (CategoryState::NotSynced, Some("needs the sessions category".to_string()))
                }
                Category::Sessions | Category::Messages | Category::Projects | Category::Todos if db_missing.is_some() => {
                    (CategoryState::Waiting, db_missing.clone())
                }
                _ => (CategoryState::Syncing, None),
            };
            CategoryStatus { name: c, state, reason }
        })
        .collect()
}

/// What to do about config secrets that do not sync.
fn config_secrets_steps(s: &ConfigSecretsStatus) -> Vec<String> {
    let count = |f: fn(&crate::secrets::ItemSecrets) -> usize| s.items.iter().map(f).sum::<usize>();
    let (held, waiting) = (count(|i| i.secrets.len()), count(|i| i.waiting.len()));
    let mut out = Vec::new();
    if held > 0 && !s.sealed {
        out.push(format!(
            "{held} secret value(s) in config stay on this machine (the remote gets `{}`): set OC_SYNC_PASSPHRASE or encryptionKey (16+ characters, the same on every machine) to sync them encrypted; list values that are not secrets in notSecretPaths",
            crate::secrets::HELD_BACK
        ));
    }
    if waiting > 0 {
        out.push(format!(
            "{waiting} config value(s) are placeholders for secrets kept on another machine (see `secrets`): {}",
            if s.sealed { "set them here, or sync with the passphrase on the machine that holds them" } else { "set the same passphrase as your other machines, or set the values on this machine" }
        ));
    }
    out
}
