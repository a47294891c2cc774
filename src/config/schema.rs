//! The table of every config key oc-sync reads: its type, default and meaning.
//!
//! One table drives validation, the starter config written by `oc-sync init`, and the README check
//! (a test fails when a key is not documented there).

/// What a key's value must be.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Bool,
    String,
    /// A string that must never be printed or logged.
    Secret,
    /// An integer within the bounds (inclusive).
    Int { min: u64, max: u64 },
    /// A number (fractions allowed) within the bounds (inclusive).
    Number { min: f64, max: f64 },
    Enum(&'static [&'static str]),
    StringList,
    /// An object mapping strings to strings (any keys).
    StringMap,
    /// A nested object with its own keys.
    Object(&'static [KeySpec]),
}

impl Kind {
    /// How the expected type reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Kind::Bool => "true or false".into(),
            Kind::String | Kind::Secret => "a string".into(),
            Kind::Int { min, max } if *max == u64::MAX => format!("a whole number, at least {min}"),
            Kind::Int { min, max } => format!("a whole number from {min} to {max}"),
            Kind::Number { min, max } => format!("a number from {min} to {max}"),
            Kind::Enum(values) => format!("one of: {}", values.join(", ")),
            Kind::StringList => "a list of strings, e.g. [\"agents/**\"]".into(),
            Kind::StringMap => "an object of strings, e.g. {\"/home/me/src\": \"/Users/me/code\"}".into(),
            Kind::Object(keys) => {
                format!("an object with the keys {}", keys.iter().map(|k| k.name).collect::<Vec<_>>().join(", "))
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub name: &'static str,
    pub kind: Kind,
    /// The default as it reads in docs (JSON syntax, or a sentence in parentheses).
    pub default: &'static str,
    pub doc: &'static str,
}

pub const CONFLICT_STRATEGIES: &[&str] = &["auto-merge", "local-wins", "remote-wins", "newest-wins", "ask"];
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

pub const SYNC_CATEGORIES: &[KeySpec] = &[
    KeySpec { name: "config", kind: Kind::Bool, default: "true", doc: "OpenCode's config files: opencode.json(c), config.json, tui.json, AGENTS.md, agent(s)/, command(s)/, mode(s)/, tool(s)/, plugin(s)/, skill(s)/, themes/." },
    KeySpec { name: "state", kind: Kind::Bool, default: "true", doc: "OpenCode's state: model.json (model choice), prompt-history.jsonl, prompt-stash.jsonl, frecency.jsonl, kv.json." },
    KeySpec { name: "credentials", kind: Kind::Bool, default: "true", doc: "auth.json and mcp-auth.json, encrypted with encryptionKey; never synced without a passphrase." },
    KeySpec { name: "sessions", kind: Kind::Bool, default: "true", doc: "Sessions from OpenCode's database (metadata)." },
    KeySpec { name: "messages", kind: Kind::Bool, default: "true", doc: "The messages and parts of synced sessions." },
    KeySpec { name: "projects", kind: Kind::Bool, default: "true", doc: "OpenCode's project records." },
    KeySpec { name: "todos", kind: Kind::Bool, default: "true", doc: "The todo lists of synced sessions." },
];

pub const KEYS: &[KeySpec] = &[
    KeySpec { name: "$schema", kind: Kind::String, default: "(none)", doc: "Ignored; allowed so editors can attach a schema." },
    KeySpec { name: "remote", kind: Kind::String, default: "(github when a token is found, else a local folder)", doc: "Where machines meet: `github`; a git URL (git@host:owner/repo.git, ssh://, https://) or the path of an existing bare git repository, for a git remote on any host (authenticated by your own git: SSH keys, credential helpers); or the path (or `file://` URL) of a folder every machine can reach, for a folder remote. Env: OC_SYNC_REMOTE." },
    KeySpec { name: "token", kind: Kind::Secret, default: "(none)", doc: "GitHub token (repo scope). Prefer GITHUB_TOKEN/GH_TOKEN or `oc-sync login`; never synced, never logged." },
    KeySpec { name: "repoOwner", kind: Kind::String, default: "(the token's user)", doc: "Owner (user or organisation) of the sync repository." },
    KeySpec { name: "repoName", kind: Kind::String, default: "\".opencode-sync\"", doc: "Name of the private sync repository (created if missing)." },
    KeySpec { name: "branch", kind: Kind::String, default: "(the repository's default branch)", doc: "Branch that holds the synced data." },
    KeySpec { name: "githubApiUrl", kind: Kind::String, default: "\"https://api.github.com\"", doc: "GitHub API base URL; `https://HOST/api/v3` for GitHub Enterprise Server. Env: GITHUB_API_URL. Plain http only for loopback." },
    KeySpec { name: "machineId", kind: Kind::String, default: "(generated once: hostname + random suffix)", doc: "This machine's stable id in vector clocks; letters, digits, `.`, `_`, `-`, up to 64 characters." },
    KeySpec { name: "encryptionKey", kind: Kind::Secret, default: "(none)", doc: "Passphrase (16+ characters) that encrypts credentials and secret values in config files end to end. Env OC_SYNC_PASSPHRASE wins." },
    KeySpec { name: "oldEncryptionKey", kind: Kind::Secret, default: "(none)", doc: "The previous passphrase, to decrypt data it encrypted while rotating (`oc-sync rekey`)." },
    KeySpec { name: "autoSyncOnStartup", kind: Kind::Bool, default: "true", doc: "Sync shortly after OpenCode loads the plugin (in the background)." },
    KeySpec { name: "continuousSync", kind: Kind::Bool, default: "true", doc: "Watch synced files and sync on a timer while OpenCode runs." },
    KeySpec { name: "syncIntervalMinutes", kind: Kind::Number { min: 0.05, max: 1440.0 }, default: "5", doc: "Minutes between timer syncs (which also pull other machines' changes)." },
    KeySpec { name: "fileWatcherDebounceMs", kind: Kind::Int { min: 100, max: 3_600_000 }, default: "5000", doc: "Quiet time after the last change before a sync." },
    KeySpec { name: "maxDebounceMs", kind: Kind::Int { min: 100, max: 3_600_000 }, default: "30000", doc: "Longest wait after the first change, even while changes keep coming; at least fileWatcherDebounceMs." },
    KeySpec { name: "sync", kind: Kind::Object(SYNC_CATEGORIES), default: "(all true)", doc: "Which categories sync: config, state, credentials, sessions, messages, projects, todos." },
    KeySpec { name: "conflictStrategy", kind: Kind::Enum(CONFLICT_STRATEGIES), default: "\"auto-merge\"", doc: "How real conflicts are settled: auto-merge, local-wins, remote-wins, newest-wins, ask." },
    KeySpec { name: "maxRetryAttempts", kind: Kind::Int { min: 0, max: 100 }, default: "5", doc: "Retries of a sync that lost a race or hit a network error." },
    KeySpec { name: "retryDelayMs", kind: Kind::Int { min: 0, max: 600_000 }, default: "1000", doc: "First retry delay; doubles on each retry." },
    KeySpec { name: "tombstoneGraceDays", kind: Kind::Int { min: 1, max: 3650 }, default: "30", doc: "Days a deletion record is kept so offline machines learn of it." },
    KeySpec { name: "include", kind: Kind::StringList, default: "[]", doc: "Extra globs (relative to OpenCode's config dir) to sync." },
    KeySpec { name: "exclude", kind: Kind::StringList, default: "[]", doc: "Globs never to sync, e.g. [\"agents/private-*.md\"]." },
    KeySpec { name: "credentialFiles", kind: Kind::StringList, default: "[]", doc: "Extra secret files in OpenCode's data dir to sync encrypted with auth.json and mcp-auth.json (names or globs, e.g. [\"my-provider.json\"])." },
    KeySpec { name: "secretPaths", kind: Kind::StringList, default: "[]", doc: "Extra config values to treat as secrets (sealed with encryptionKey, or kept on this machine): dotted paths into OpenCode's JSON config files and markdown front matter, `*` for any one key, `**` for any keys, e.g. [\"provider.*.options.organization\"]." },
    KeySpec { name: "notSecretPaths", kind: Kind::StringList, default: "[]", doc: "Config values that are never secrets, even when their key or look says so (same path syntax as secretPaths), e.g. [\"agent.*.options.tokenizer\"]." },
    KeySpec { name: "sessionMaxAgeDays", kind: Kind::Int { min: 0, max: 36_500 }, default: "0", doc: "Sync only sessions updated in the last N days (0: all). Older ones are left alone on every machine, never deleted." },
    KeySpec { name: "sessionProjects", kind: Kind::StringList, default: "[]", doc: "Sync only the sessions of these projects: project ids, names or worktree paths (empty: all)." },
    KeySpec { name: "sessionMaxMiB", kind: Kind::Int { min: 1, max: 200 }, default: "200", doc: "Sessions whose messages and parts take more than this many MiB are skipped with a warning (items over GitHub's 100 MB file limit are stored in parts)." },
    KeySpec { name: "sessionPathMap", kind: Kind::StringMap, default: "{}", doc: "Where other machines' folders are on this one, for sessions of projects not found locally: {\"/home/me/src\": \"/Users/me/code\"} (longest prefix wins)." },
    KeySpec { name: "logLevel", kind: Kind::Enum(LOG_LEVELS), default: "\"info\"", doc: "Detail of oc-sync's log file. Env: OC_SYNC_LOG." },
];

/// Every documented key, nested ones as `sync.config` etc.
pub fn all_key_paths() -> Vec<String> {
    let mut out = Vec::new();
    for k in KEYS {
        out.push(k.name.to_string());
        if let Kind::Object(sub) = k.kind {
            out.extend(sub.iter().map(|s| format!("{}.{}", k.name, s.name)));
        }
    }
    out
}

/// The commented starter config `oc-sync init` writes.
/// [`starter_config`] with `remote` set (a JSON string), for `oc-sync init --remote`.
pub fn starter_config_with_remote(remote: &str) -> String {
    let line = format!("  \"remote\": {},", serde_json::Value::String(remote.to_string()));
    starter_config().replacen("  // \"remote\": \"github\",", &line, 1)
}

pub fn starter_config() -> String {
    format!(
        r#"// oc-sync configuration (JSONC: comments and trailing commas are fine).
// Every key is optional; the values shown are the defaults. Reference: README "Configuration".
{{
  // Where machines meet: "github" (needs a token: GITHUB_TOKEN, GH_TOKEN or `oc-sync login`),
  // a git URL on any host (git@host:owner/repo.git, https://host/owner/repo.git; your own git
  // authenticates), or a folder that every machine can reach (e.g. a mounted share).
  // Unset: GitHub when a token is found, otherwise a local folder on this machine.
  // "remote": "github",

  // The private GitHub repository that holds your synced data (created if missing).
  // "repoOwner": "your-github-user",
  "repoName": ".opencode-sync",

  // What to sync. Credentials only sync encrypted, with a passphrase (encryptionKey or
  // the OC_SYNC_PASSPHRASE environment variable, 16+ characters, the same on every machine).
  "sync": {{
    "config": true,
    "state": true,
    "credentials": true,
    "sessions": true,
    "messages": true,
    "projects": true,
    "todos": true,
  }},

  // When both machines changed the same thing: {strategies}.
  "conflictStrategy": "auto-merge",

  // Automatic sync inside OpenCode.
  "autoSyncOnStartup": true,
  "continuousSync": true,
  "syncIntervalMinutes": 5,
  "fileWatcherDebounceMs": 5000,
  "maxDebounceMs": 30000,

  // Extra files to sync, or files to keep local (globs relative to OpenCode's config dir).
  "include": [],
  "exclude": [],
}}
"#,
        strategies = CONFLICT_STRATEGIES.join(" | ")
    )
}
