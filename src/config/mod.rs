//! oc-sync's configuration: read from `opencode-sync.json` (JSONC), overlaid by the options given in
//! opencode.json's plugin tuple and by environment variables, validated against [`schema::KEYS`].
//!
//! Bad input never panics and never silently falls back: every problem becomes an [`Issue`] that names
//! where the value came from (file path, plugin options, environment variable), the key, what is
//! accepted and how to fix it. Unknown keys are warnings (with a "did you mean" when one is close).

pub mod schema;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::category::Category;
use crate::paths::{EnvSnapshot, Paths};
use schema::{KeySpec, Kind, KEYS};

/// A secret string: shown masked in Debug and in status output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// `ghp_…abcd`: enough to recognise which token is used, never enough to use it.
    pub fn masked(&self) -> String {
        let n = self.0.chars().count();
        if n <= 8 {
            "****".into()
        } else {
            let head: String = self.0.chars().take(4).collect();
            let tail: String = self.0.chars().skip(n - 4).collect();
            format!("{head}…{tail}")
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// How real conflicts are settled. Serialised (reports, conflict records) as in the config:
/// `"auto-merge"`, `"local-wins"`, `"remote-wins"`, `"newest-wins"`, `"ask"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictStrategy {
    AutoMerge,
    LocalWins,
    RemoteWins,
    NewestWins,
    Ask,
}

impl ConflictStrategy {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto-merge" => Self::AutoMerge,
            "local-wins" => Self::LocalWins,
            "remote-wins" => Self::RemoteWins,
            "newest-wins" => Self::NewestWins,
            "ask" => Self::Ask,
            _ => return None,
        })
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AutoMerge => "auto-merge",
            Self::LocalWins => "local-wins",
            Self::RemoteWins => "remote-wins",
            Self::NewestWins => "newest-wins",
            Self::Ask => "ask",
        }
    }
}

impl fmt::Display for ConflictStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the config spelling, e.g. `strategy == "ask"`.
impl PartialEq<&str> for ConflictStrategy {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Which remote the person asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "lowercase")]
pub enum RemoteSetting {
    /// Not set: GitHub when a token is found, otherwise the default local folder.
    Auto,
    Github,
    Local(PathBuf),
    /// A git URL, or the path of an existing bare repository (see [`crate::remote::git`]).
    Git(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Categories {
    pub config: bool,
    pub state: bool,
    pub credentials: bool,
    pub sessions: bool,
    pub messages: bool,
    pub projects: bool,
    pub todos: bool,
}

impl Categories {
    /// Whether `c` syncs.
    pub fn get(&self, c: Category) -> bool {
        *self.field(c)
    }

    /// The switch of `c`.
    pub fn get_mut(&mut self, c: Category) -> &mut bool {
        match c {
            Category::Config => &mut self.config,
            Category::State => &mut self.state,
            Category::Credentials => &mut self.credentials,
            Category::Sessions => &mut self.sessions,
            Category::Messages => &mut self.messages,
            Category::Projects => &mut self.projects,
            Category::Todos => &mut self.todos,
        }
    }

    fn field(&self, c: Category) -> &bool {
        match c {
            Category::Config => &self.config,
            Category::State => &self.state,
            Category::Credentials => &self.credentials,
            Category::Sessions => &self.sessions,
            Category::Messages => &self.messages,
            Category::Projects => &self.projects,
            Category::Todos => &self.todos,
        }
    }

    /// The categories that sync, in [`Category::ALL`] order.
    pub fn enabled(&self) -> Vec<Category> {
        Category::ALL.into_iter().filter(|c| self.get(*c)).collect()
    }
}

/// The validated configuration, with every default filled in.
#[derive(Debug, Clone)]
pub struct Config {
    pub remote: RemoteSetting,
    pub token: Option<Secret>,
    pub repo_owner: Option<String>,
    pub repo_name: String,
    pub branch: Option<String>,
    pub github_api_url: String,
    pub machine_id: Option<String>,
    pub encryption_key: Option<Secret>,
    pub old_encryption_key: Option<Secret>,
    pub auto_sync_on_startup: bool,
    pub continuous_sync: bool,
    pub sync_interval_minutes: f64,
    pub file_watcher_debounce_ms: u64,
    pub max_debounce_ms: u64,
    pub sync: Categories,
    pub conflict_strategy: ConflictStrategy,
    pub max_retry_attempts: u32,
    pub retry_delay_ms: u64,
    pub tombstone_grace_days: u32,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub credential_files: Vec<String>,
    /// Extra paths (dotted patterns) of config values that are secrets.
    pub secret_paths: Vec<String>,
    /// Paths (dotted patterns) of config values that are never secrets.
    pub not_secret_paths: Vec<String>,
    /// Sessions updated longer ago than this many days are not synced (0: all).
    pub session_max_age_days: u32,
    /// Only sessions of these projects (ids, names or worktree paths); empty: all.
    pub session_projects: Vec<String>,
    /// Sessions bigger than this are skipped.
    pub session_max_bytes: u64,
    /// Other machines' folder prefixes → this machine's.
    pub session_path_map: Vec<(String, String)>,
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            remote: RemoteSetting::Auto,
            token: None,
            repo_owner: None,
            repo_name: ".opencode-sync".into(),
            branch: None,
            github_api_url: "https://api.github.com".into(),
            machine_id: None,
            encryption_key: None,
            old_encryption_key: None,
            auto_sync_on_startup: true,
            continuous_sync: true,
            sync_interval_minutes: 5.0,
            file_watcher_debounce_ms: 5000,
            max_debounce_ms: 30_000,
            sync: Categories {
                config: true,
                state: true,
                credentials: true,
                sessions: true,
                messages: true,
                projects: true,
                todos: true,
            },
            conflict_strategy: ConflictStrategy::AutoMerge,
            max_retry_attempts: 5,
            retry_delay_ms: 1000,
            tombstone_grace_days: 30,
            include: Vec::new(),
            exclude: Vec::new(),
            credential_files: Vec::new(),
            secret_paths: Vec::new(),
            not_secret_paths: Vec::new(),
            session_max_age_days: 0,
            session_projects: Vec::new(),
            session_max_bytes: 200 << 20,
            session_path_map: Vec::new(),
            log_level: "info".into(),
        }
    }
}

/// Where a value came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    PluginOptions,
    Env(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::PluginOptions => f.write_str("the oc-sync options in opencode.json (\"plugin\": [[\"oc-sync\", {...}]])"),
            Origin::Env(v) => write!(f, "environment variable {v}"),
        }
    }
}

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub source: String,
    /// Dotted key path, e.g. `sync.sessions`; empty for the whole file.
    pub key: String,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {} Fix: {}", self.source, self.message, self.fix)
        } else {
            write!(f, "{}: key \"{}\": {} Fix: {}", self.source, self.key, self.message, self.fix)
        }
    }
}

/// The configuration could not be used; every problem found is listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub issues: Vec<Issue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.issues.len() == 1 {
            return write!(f, "invalid oc-sync config: {}", self.issues[0]);
        }
        write!(f, "invalid oc-sync config ({} problems):", self.issues.len())?;
        for i in &self.issues {
            write!(f, "\n  - {i}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A successfully loaded configuration and what was noticed on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Unknown keys and other things worth telling the person; the config is still usable.
    pub warnings: Vec<Issue>,
    /// The config file, when one exists.
    pub file: Option<PathBuf>,
}

/// Loads the config file (if any), overlays plugin options and environment variables, validates all.
pub fn load(paths: &Paths, env: &EnvSnapshot, plugin_options: Option<&Value>) -> Result<Loaded, ConfigError> {
    let mut issues = Vec::new();
    let mut warnings = Vec::new();
    let mut merged = Map::new();
    let mut file = None;

    match read_file(&paths.config_file) {
        Ok(Some(obj)) => {
            let src = Origin::File(paths.config_file.clone());
            check_object(&obj, KEYS, "", &src, &mut issues, &mut warnings);
            deep_merge(&mut merged, obj);
            file = Some(paths.config_file.clone());
        }
        Ok(None) => {}
        Err(issue) => issues.push(issue),
    }

    if let Some(opts) = plugin_options {
        match opts {
            Value::Null => {}
            Value::Object(obj) => {
                check_object(obj, KEYS, "", &Origin::PluginOptions, &mut issues, &mut warnings);
                deep_merge(&mut merged, obj.clone());
            }
            other => issues.push(Issue {
                source: Origin::PluginOptions.to_string(),
                key: String::new(),
                message: format!("the options must be an object, found {}.", type_name(other)),
                fix: "write the plugin entry as [\"oc-sync\", { \"conflictStrategy\": \"auto-merge\" }].".into(),
            }),
        }
    }

    if let Some(remote) = env.var("OC_SYNC_REMOTE") {
        merged.insert("remote".into(), Value::String(remote.into()));
    }
    if let Some(level) = env.var("OC_SYNC_LOG") {
        let src = Origin::Env("OC_SYNC_LOG");
        let mut obj = Map::new();
        obj.insert("logLevel".into(), Value::String(level.into()));
        check_object(&obj, KEYS, "", &src, &mut issues, &mut warnings);
        merged.insert("logLevel".into(), Value::String(level.into()));
    }
    if let Some(url) = env.var("GITHUB_API_URL") {
        merged.insert("githubApiUrl".into(), Value::String(url.into()));
    }
    if let Some(pass) = env.var("OC_SYNC_PASSPHRASE") {
        merged.insert("encryptionKey".into(), Value::String(pass.into()));
    }

    if !issues.is_empty() {
        return Err(ConfigError { issues });
    }
    let source_of = |key: &str| -> Origin {
        match key {
            "remote" if env.var("OC_SYNC_REMOTE").is_some() => Origin::Env("OC_SYNC_REMOTE"),
            "githubApiUrl" if env.var("GITHUB_API_URL").is_some() => Origin::Env("GITHUB_API_URL"),
            "encryptionKey" if env.var("OC_SYNC_PASSPHRASE").is_some() => Origin::Env("OC_SYNC_PASSPHRASE"),
            _ if plugin_options.and_then(|o| o.get(key)).is_some() => Origin::PluginOptions,
            _ => Origin::File(paths.config_file.clone()),
        }
    };
    let config = build(&merged, &source_of, env.home()).map_err(|issues| ConfigError { issues })?;
    Ok(Loaded { config, warnings, file })
}

/// Reads and parses the file; `Ok(None)` when it does not exist.
fn read_file(path: &Path) -> Result<Option<Map<String, Value>>, Issue> {
    let src = Origin::File(path.to_path_buf()).to_string();
    let text = match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                return Err(Issue {
                    source: src,
                    key: String::new(),
                    message: "the file is not valid UTF-8 text.".into(),
                    fix: "save it as UTF-8, or recreate it with `oc-sync init --force`.".into(),
                });
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Issue {
                source: src,
                key: String::new(),
                message: format!("cannot read the file: {e}."),
                fix: "check its permissions (it should be readable by you, mode 0600).".into(),
            });
        }
    };
    match crate::jsonc::parse(&text) {
        Ok(Some(Value::Object(obj))) => Ok(Some(obj)),
        Ok(None) => Ok(Some(Map::new())),
        Ok(Some(other)) => Err(Issue {
            source: src,
            key: String::new(),
            message: format!("the file must hold a JSON object ({{ ... }}), found {}.", type_name(&other)),
            fix: "wrap the settings in { }, or recreate the file with `oc-sync init --force`.".into(),
        }),
        Err(e) => Err(Issue {
            source: src,
            key: String::new(),
            message: format!("invalid JSON at {e}."),
            fix: "correct the syntax there (comments and trailing commas are allowed).".into(),
        }),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 { format!("{}…", s.chars().take(40).collect::<String>()) } else { s }
}

/// Type-checks one object against its key specs, collecting errors and unknown-key warnings.
fn check_object(
    obj: &Map<String, Value>,
    specs: &[KeySpec],
    prefix: &str,
    src: &Origin,
    issues: &mut Vec<Issue>,
    warnings: &mut Vec<Issue>,
) {
    for (key, value) in obj {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        let Some(spec) = specs.iter().find(|s| s.name == key) else {
            let suggestion = specs
                .iter()
                .map(|s| (strsim::damerau_levenshtein(&key.to_lowercase(), &s.name.to_lowercase()), s.name))
                .filter(|(d, _)| *d <= 3)
                .min();
            let fix = match suggestion {
                Some((_, name)) => format!("did you mean \"{name}\"? Rename it, or remove the key."),
                None => format!(
                    "remove it; known keys here are: {}.",
                    specs.iter().filter(|s| s.name != "$schema").map(|s| s.name).collect::<Vec<_>>().join(", ")
                ),
            };
            warnings.push(Issue {
                source: src.to_string(),
                key: path,
                message: "unknown key, ignored.".into(),
                fix,
            });
            continue;
        };
        let secret = matches!(spec.kind, Kind::Secret);
        let bad = |msg: String| Issue {
            source: src.to_string(),
            key: path.clone(),
            message: msg,
            fix: format!(
                "set it to {}, or remove the key to use the default ({}).",
                spec.kind.describe(),
                spec.default
            ),
        };
        let shown = if secret { "(hidden)".to_string() } else { show(value) };
        match (&spec.kind, value) {
            (Kind::Bool, Value::Bool(_)) => {}
            (Kind::String | Kind::Secret, Value::String(_)) => {}
            (Kind::Int { min, max }, Value::Number(n)) => match n.as_u64() {
                Some(i) if i >= *min && i <= *max => {}
                _ => issues.push(bad(format!("{shown} is out of range or not a whole number."))),
            },
            (Kind::Number { min, max }, Value::Number(n)) => match n.as_f64() {
                Some(x) if x >= *min && x <= *max => {}
                _ => issues.push(bad(format!("{shown} is out of range."))),
            },
            (Kind::Enum(values), Value::String(s)) if values.contains(&s.as_str()) => {}
            (Kind::Enum(values), Value::String(s)) => {
                issues.push(bad(format!("\"{s}\" is not one of: {}.", values.join(", "))));
            }
            (Kind::StringList, Value::Array(items)) => {
                if let Some(i) = items.iter().position(|v| !v.is_string()) {
                    issues.push(bad(format!("item {i} is {}, not a string.", type_name(&items[i]))));
                }
            }
            (Kind::StringMap, Value::Object(items)) => {
                if let Some((k, v)) = items.iter().find(|(_, v)| !v.is_string()) {
                    issues.push(bad(format!("\"{k}\" maps to {}, not a string.", type_name(v))));
                }
            }
            (Kind::Object(sub), Value::Object(inner)) => check_object(inner, sub, &path, src, issues, warnings),
            (kind, other) => issues.push(bad(format!(
                "expected {}, found {} {}.",
                kind.describe(),
                type_name(other),
                if secret { String::new() } else { show(other) }
            ))),
        }
    }
}

/// Merges `overlay` into `base`: objects key by key, everything else replaced.
fn deep_merge(base: &mut Map<String, Value>, overlay: Map<String, Value>) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(Value::Object(b)), Value::Object(o)) => deep_merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Builds the typed config from type-checked JSON, applying the rules that span several keys;
/// `home` expands a remote starting with `~/`.
fn build(m: &Map<String, Value>, source_of: &dyn Fn(&str) -> Origin, home: Option<&Path>) -> Result<Config, Vec<Issue>> {
    let mut f = Fields { m, source_of, home, issues: Vec::new() };
    let mut c = Config::default();
    build_remote(&mut f, &mut c);
    build_timing(&mut f, &mut c);
    build_selection(&mut f, &mut c);
    if f.issues.is_empty() { Ok(c) } else { Err(f.issues) }
}

/// The type-checked JSON being built into a [`Config`], and the problems found on the way.
struct Fields<'a> {
    m: &'a Map<String, Value>,
    source_of: &'a dyn Fn(&str) -> Origin,
    home: Option<&'a Path>,
    issues: Vec<Issue>,
}

impl Fields<'_> {
    fn s(&self, k: &str) -> Option<String> {
        self.m.get(k).and_then(Value::as_str).map(str::to_owned)
    }
    fn b(&self, k: &str) -> Option<bool> {
        self.m.get(k).and_then(Value::as_bool)
    }
    fn n(&self, k: &str) -> Option<u64> {
        self.m.get(k).and_then(Value::as_u64)
    }
    fn list(&self, k: &str) -> Option<Vec<String>> {
        self.m
            .get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
    }
    fn issue(&mut self, key: &str, message: String, fix: &str) {
        self.issues.push(Issue { source: (self.source_of)(key).to_string(), key: key.into(), message, fix: fix.into() })
    }
}

/// Where to sync to and as whom: remote, GitHub repository and API, machine id, passphrases.
fn build_remote(f: &mut Fields<'_>, c: &mut Config) {
    if let Some(r) = f.s("remote") {
        match parse_remote(&r, f.home) {
            Ok(remote) => c.remote = remote,
            Err(msg) => f.issue(
                "remote",
                msg,
                "use \"github\", an absolute folder path such as \"/mnt/share/oc-sync\", or a file:// URL.",
            ),
        }
    }
    c.token = f.s("token").filter(|t| !t.trim().is_empty()).map(Secret::new);
    c.repo_owner = f.s("repoOwner").filter(|t| !t.is_empty());
    if let Some(name) = f.s("repoName") {
        if name.is_empty() || name.contains('/') || name.len() > 100 {
            f.issue("repoName", format!("\"{name}\" is not a repository name."), "use a name such as \".opencode-sync\" (no slashes), and set the owner with repoOwner.");
        } else {
            c.repo_name = name;
        }
    }
    c.branch = f.s("branch").filter(|t| !t.is_empty());
    if let Some(url) = f.s("githubApiUrl") {
        match check_api_url(&url) {
            Ok(u) => c.github_api_url = u,
            Err(msg) => f.issue("githubApiUrl", msg, "use https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server."),
        }
    }
    if let Some(id) = f.s("machineId") {
        if valid_machine_id(&id) {
            c.machine_id = Some(id);
        } else {
            f.issue("machineId", format!("\"{id}\" is not a valid machine id."), "use 1-64 letters, digits, '.', '_' or '-', e.g. \"work-laptop\".");
        }
    }
    for (key, slot) in [("encryptionKey", &mut c.encryption_key), ("oldEncryptionKey", &mut c.old_encryption_key)] {
        if let Some(k) = f.s(key) {
            if k.chars().count() < 16 {
                f.issue(
                    key,
                    "the passphrase is shorter than 16 characters.".into(),
                    "use a passphrase of at least 16 characters (the same on every machine).",
                );
            } else {
                *slot = Some(Secret::new(k));
            }
        }
    }
}

/// When and how to sync: auto-sync, intervals and debouncing, categories, conflicts, retries.
fn build_timing(f: &mut Fields<'_>, c: &mut Config) {
    if let Some(v) = f.b("autoSyncOnStartup") {
        c.auto_sync_on_startup = v;
    }
    if let Some(v) = f.b("continuousSync") {
        c.continuous_sync = v;
    }
    if let Some(v) = f.m.get("syncIntervalMinutes").and_then(Value::as_f64) {
        c.sync_interval_minutes = v;
    }
    if let Some(v) = f.n("fileWatcherDebounceMs") {
        c.file_watcher_debounce_ms = v;
    }
    if let Some(v) = f.n("maxDebounceMs") {
        c.max_debounce_ms = v;
    }
    if c.max_debounce_ms < c.file_watcher_debounce_ms {
        let key = if f.m.contains_key("maxDebounceMs") { "maxDebounceMs" } else { "fileWatcherDebounceMs" };
        f.issue(
            key,
            format!(
                "maxDebounceMs ({}) is smaller than fileWatcherDebounceMs ({}).",
                c.max_debounce_ms, c.file_watcher_debounce_ms
            ),
            "make maxDebounceMs at least as large as fileWatcherDebounceMs.",
        );
    }
    if let Some(Value::Object(sync)) = f.m.get("sync") {
        for cat in Category::ALL {
            if let Some(on) = sync.get(cat.as_str()).and_then(Value::as_bool) {
                *c.sync.get_mut(cat) = on;
            }
        }
    }
    if let Some(v) = f.s("conflictStrategy").and_then(|v| ConflictStrategy::parse(&v)) {
        c.conflict_strategy = v;
    }
    if let Some(v) = f.n("maxRetryAttempts") {
        c.max_retry_attempts = v as u32;
    }
    if let Some(v) = f.n("retryDelayMs") {
        c.retry_delay_ms = v;
    }
    if let Some(v) = f.n("tombstoneGraceDays") {
        c.tombstone_grace_days = v as u32;
    }
}

/// What to sync: file globs, secret paths, session limits and path map, and the log level.
fn build_selection(f: &mut Fields<'_>, c: &mut Config) {
    for key in ["include", "exclude", "credentialFiles"] {
        if let Some(globs) = f.list(key) {
            for g in &globs {
                if g.is_empty() || g.starts_with('/') || g.split(['/', '\\']).any(|p| p == "..") {
                    f.issue(
                        key,
                        format!(
                            "\"{g}\" is not a relative glob inside OpenCode's {} dir.",
                            if key == "credentialFiles" { "data" } else { "config" }
                        ),
                        "use globs relative to the config dir, e.g. \"agents/*.md\", without \"..\" or a leading \"/\".",
                    );
                }
            }
            match key {
                "include" => c.include = globs,
                "exclude" => c.exclude = globs,
                _ => c.credential_files = globs,
            }
        }
    }
    for key in ["secretPaths", "notSecretPaths"] {
        if let Some(paths) = f.list(key) {
            if let Some(bad) = paths.iter().find(|p| p.is_empty() || p.split('.').any(str::is_empty)) {
                f.issue(key, format!("\"{bad}\" is not a dotted path."), "use paths such as \"provider.*.options.apiKey\" (`*`: any one key, `**`: any keys).");
            } else if key == "secretPaths" {
                c.secret_paths = paths;
            } else {
                c.not_secret_paths = paths;
            }
        }
    }
    if let Some(v) = f.n("sessionMaxAgeDays") {
        c.session_max_age_days = v as u32;
    }
    if let Some(v) = f.list("sessionProjects") {
        c.session_projects = v;
    }
    if let Some(v) = f.n("sessionMaxMiB") {
        c.session_max_bytes = v << 20;
    }
    if let Some(Value::Object(map)) = f.m.get("sessionPathMap") {
        c.session_path_map = map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect();
    }
    if let Some(v) = f.s("logLevel") {
        c.log_level = v;
    }
}

/// What `remote` = `r` selects (as the config loader reads it): `oc-sync init --remote` checks with it.
pub fn parse_remote_setting(r: &str, home: Option<&Path>) -> Result<RemoteSetting, String> {
    parse_remote(r, home)
}

fn parse_remote(r: &str, home: Option<&Path>) -> Result<RemoteSetting, String> {
    let r = r.trim();
    if r.eq_ignore_ascii_case("github") {
        return Ok(RemoteSetting::Github);
    }
    let is_git_url = ["ssh://", "git://", "https://", "http://"].iter().any(|p| r.len() > p.len() && r[..p.len()].eq_ignore_ascii_case(p))
        || (!r.contains("://") && !r.starts_with('/') && !r.starts_with('~') && r.contains(':') && !r.split(':').next().unwrap_or("").contains('/') && r.split(':').next().unwrap_or("").len() > 1);
    if is_git_url {
        return crate::remote::git::GitUrl::parse(r).map(|u| RemoteSetting::Git(u.as_str().to_string()));
    }
    let path = if let Some(rest) = r.strip_prefix("file://") {
        PathBuf::from(percent_decode(rest))
    } else if r.contains("://") {
        return Err(format!("\"{r}\" is neither \"github\", a git URL (ssh://, https://, git://, git@host:path) nor a local path."));
    } else if let Some(rest) = r.strip_prefix("~/") {
        match home {
            Some(h) => h.join(rest),
            None => return Err("\"~\" cannot be expanded: no home directory.".into()),
        }
    } else {
        PathBuf::from(r)
    };
    if !path.is_absolute() {
        return Err(format!("\"{r}\" is a relative path; a remote must be an absolute path."));
    }
    // Decided by content: an existing bare git repository is a git remote, anything else a folder.
    if crate::remote::git::is_bare_repository(&path) {
        return Ok(RemoteSetting::Git(path.to_string_lossy().into_owned()));
    }
    Ok(RemoteSetting::Local(path))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        if let (b'%', Some(Ok(v))) = (bytes[i], hex.map(|h| u8::from_str_radix(h, 16))) {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn check_api_url(url: &str) -> Result<String, String> {
    crate::net::check_github_api_url(url)
}

pub fn valid_machine_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests;
