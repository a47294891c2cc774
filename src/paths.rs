//! Where OpenCode and oc-sync keep their files.
//!
//! OpenCode 1.18 resolves its directories with the XDG rules on every platform (on Windows under
//! `%USERPROFILE%`): `$XDG_CONFIG_HOME/opencode`, `$XDG_DATA_HOME/opencode`, `$XDG_STATE_HOME/opencode`,
//! `$XDG_CACHE_HOME/opencode`, where an unset *or empty* variable falls back to `~/.config`,
//! `~/.local/share`, `~/.local/state`, `~/.cache`. `OPENCODE_CONFIG_DIR` names an *extra* config directory
//! that OpenCode scans in addition to the global one. The database is `opencode.db` in the data dir, or
//! `$OPENCODE_DB` (`:memory:` and absolute paths as given, relative names inside the data dir).
//! This module mirrors those rules exactly, from an [`EnvSnapshot`] so tests need no real environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The environment variables and home directory that path resolution depends on.
#[derive(Debug, Clone, Default)]
pub struct EnvSnapshot {
    vars: BTreeMap<String, String>,
    home: Option<PathBuf>,
}

impl EnvSnapshot {
    /// Reads the current process environment.
    pub fn from_process() -> Self {
        let vars: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        // Node's os.homedir(): $HOME on Unix (else the passwd entry), %USERPROFILE% on Windows.
        let home_var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
        let home = vars
            .get(home_var)
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(home::home_dir);
        EnvSnapshot { vars, home }
    }

    /// An environment made of the given variables, with `home` as the home directory.
    pub fn new<I, K, V>(home: impl Into<PathBuf>, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        EnvSnapshot {
            vars: vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            home: Some(home.into()),
        }
    }

    /// The value of a variable; empty values count as unset, as in OpenCode (`process.env.X || default`).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Every variable, for a child process that must see the same environment.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn home(&self) -> Option<&Path> {
        self.home.as_deref()
    }
}

/// Every directory and file oc-sync needs to know about, resolved once.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Paths {
    pub home: PathBuf,
    /// OpenCode's global config dir (`$XDG_CONFIG_HOME/opencode`): what the `config` category syncs.
    pub opencode_config: PathBuf,
    /// `$OPENCODE_CONFIG_DIR`, an extra config dir OpenCode reads on top of the global one.
    pub opencode_extra_config: Option<PathBuf>,
    pub opencode_data: PathBuf,
    pub opencode_state: PathBuf,
    pub opencode_cache: PathBuf,
    /// OpenCode's SQLite database (or `:memory:`).
    pub opencode_db: PathBuf,
    pub opencode_log: PathBuf,
    /// Where OpenCode installs a plugin given by bare name: `<cache>/packages/oc-sync@latest/node_modules/oc-sync`.
    pub opencode_plugin_install: PathBuf,
    /// oc-sync's config file (`$OC_SYNC_CONFIG`, else `opencode-sync.json` in OpenCode's config dir).
    pub config_file: PathBuf,
    /// oc-sync's own state: machine id, sync state, lock, logs.
    pub state_dir: PathBuf,
    /// oc-sync's own data: the default local remote, conflict copies, stored credentials.
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
    pub machine_id_file: PathBuf,
    /// The local remote used when none is configured.
    pub default_local_remote: PathBuf,
}

/// The name of oc-sync's config file inside OpenCode's config dir.
pub const CONFIG_FILE_NAME: &str = "opencode-sync.json";
/// Also accepted when the `.json` file does not exist.
pub const CONFIG_FILE_NAME_JSONC: &str = "opencode-sync.jsonc";

impl Paths {
    pub fn resolve(env: &EnvSnapshot) -> Result<Paths, PathsError> {
        let home = env.home().map(Path::to_path_buf).ok_or(PathsError::NoHome)?;
        let xdg = |var: &str, default: &[&str]| -> PathBuf {
            match env.var(var) {
                Some(v) => PathBuf::from(v),
                None => default.iter().fold(home.clone(), |p, part| p.join(part)),
            }
        };
        let config_home = xdg("XDG_CONFIG_HOME", &[".config"]);
        let data_home = xdg("XDG_DATA_HOME", &[".local", "share"]);
        let state_home = xdg("XDG_STATE_HOME", &[".local", "state"]);
        let cache_home = xdg("XDG_CACHE_HOME", &[".cache"]);

        let opencode_config = config_home.join("opencode");
        let opencode_data = data_home.join("opencode");
        let opencode_state = state_home.join("opencode");
        let opencode_cache = cache_home.join("opencode");
        let opencode_db = match env.var("OPENCODE_DB") {
            Some(":memory:") => PathBuf::from(":memory:"),
            Some(db) if is_absolute_any_platform(db) => PathBuf::from(db),
            Some(db) => opencode_data.join(db),
            None => opencode_data.join("opencode.db"),
        };

        let config_file = match env.var("OC_SYNC_CONFIG") {
            Some(p) => absolutize(Path::new(p)),
            None => {
                let json = opencode_config.join(CONFIG_FILE_NAME);
                let jsonc = opencode_config.join(CONFIG_FILE_NAME_JSONC);
                if !json.exists() && jsonc.exists() { jsonc } else { json }
            }
        };
        let state_dir = state_home.join("oc-sync");
        let data_dir = data_home.join("oc-sync");
        Ok(Paths {
            opencode_extra_config: env.var("OPENCODE_CONFIG_DIR").map(PathBuf::from),
            opencode_log: opencode_data.join("log"),
            opencode_plugin_install: opencode_cache
                .join("packages")
                .join("oc-sync@latest")
                .join("node_modules")
                .join("oc-sync"),
            log_dir: state_dir.join("log"),
            machine_id_file: state_dir.join("machine-id"),
            default_local_remote: data_dir.join("remote"),
            home,
            opencode_config,
            opencode_data,
            opencode_state,
            opencode_cache,
            opencode_db,
            config_file,
            state_dir,
            data_dir,
        })
    }

    /// The sync state: base versions and clocks of every synced item (`<state>/sync/`).
    pub fn sync_state_dir(&self) -> PathBuf {
        self.state_dir.join("sync")
    }

    /// The last failed sync of this machine (CLI or auto-sync): when, and why.
    pub fn last_failure_file(&self) -> PathBuf {
        self.state_dir.join("last-failure.json")
    }

    /// The machine-wide lock one sync holds at a time (CLI and plugin alike).
    pub fn sync_lock_file(&self) -> PathBuf {
        self.state_dir.join("sync.lock")
    }

    /// The conflict copies kept for the person (`<data>/conflicts/`).
    pub fn conflicts_dir(&self) -> PathBuf {
        self.data_dir.join("conflicts")
    }

    /// What the GitHub remote learned (repository id, rate limits, last push).
    pub fn github_cache_file(&self) -> PathBuf {
        self.state_dir.join("github.json")
    }

    /// The folder remote's tree index (every item's entry and git blob id at the last snapshot
    /// read), so a new run reads only the files changed since. A cache: deleting it costs one
    /// full read of the remote.
    pub fn folder_remote_index_file(&self) -> PathBuf {
        self.state_dir.join("folder-remote-index.json")
    }

    /// The bare mirror oc-sync keeps of branch `branch` of the git remote at `url` (one per both).
    pub fn git_mirror_dir(&self, url: &str, branch: &str) -> PathBuf {
        use sha2::Digest;
        let h = hex::encode(sha2::Sha256::digest(format!("{url}\n{branch}").as_bytes()));
        self.data_dir.join("git-remotes").join(format!("{}.git", &h[..16]))
    }

    /// The git remote's tree index (like [`Paths::folder_remote_index_file`]), one per URL.
    pub fn git_mirror_index_file(&self, url: &str, branch: &str) -> PathBuf {
        let dir = self.git_mirror_dir(url, branch);
        dir.with_extension("index.json")
    }

    /// Auto-sync's last state, written when the engine stops (for `status`).
    pub fn autosync_file(&self) -> PathBuf {
        self.state_dir.join("autosync.json")
    }

    /// The GitHub token `oc-sync login` stored (0600).
    pub fn github_token_file(&self) -> PathBuf {
        self.data_dir.join("github-token.json")
    }

    /// The OpenSync credentials `oc-sync opensync login` stored (0600).
    pub fn opensync_credentials_file(&self) -> PathBuf {
        self.data_dir.join("opensync.json")
    }

    /// What the OpenSync export stored on the server, per session.
    pub fn opensync_stored_file(&self) -> PathBuf {
        self.state_dir.join("opensync-stored.json")
    }

    /// The labelled list `oc-sync paths` prints, in a stable order.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let show = |p: &Path| p.display().to_string();
        vec![
            ("opencode config", show(&self.opencode_config)),
            (
                "opencode extra config",
                self.opencode_extra_config.as_deref().map(show).unwrap_or_else(|| "(OPENCODE_CONFIG_DIR not set)".into()),
            ),
            ("opencode data", show(&self.opencode_data)),
            ("opencode state", show(&self.opencode_state)),
            ("opencode cache", show(&self.opencode_cache)),
            ("opencode database", show(&self.opencode_db)),
            ("opencode logs", show(&self.opencode_log)),
            ("plugin install", show(&self.opencode_plugin_install)),
            ("oc-sync config", show(&self.config_file)),
            ("oc-sync state", show(&self.state_dir)),
            ("oc-sync data", show(&self.data_dir)),
            ("oc-sync logs", show(&self.log_dir)),
            ("local remote", show(&self.default_local_remote)),
            ("git remote mirrors", show(&self.data_dir.join("git-remotes"))),
        ]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("cannot find your home directory: set HOME (USERPROFILE on Windows)")]
    NoHome,
}

/// `C:\x` counts as absolute even when oc-sync runs on Unix, as in OpenCode's own check.
fn is_absolute_any_platform(p: &str) -> bool {
    let b = p.as_bytes();
    Path::new(p).is_absolute()
        || (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/'))
}

fn absolutize(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|cwd| cwd.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> EnvSnapshot {
        EnvSnapshot::new("/home/u", vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_follow_xdg_under_home() {
        let p = Paths::resolve(&env(&[])).unwrap();
        assert_eq!(p.opencode_config, PathBuf::from("/home/u/.config/opencode"));
        assert_eq!(p.opencode_data, PathBuf::from("/home/u/.local/share/opencode"));
        assert_eq!(p.opencode_state, PathBuf::from("/home/u/.local/state/opencode"));
        assert_eq!(p.opencode_cache, PathBuf::from("/home/u/.cache/opencode"));
        assert_eq!(p.opencode_db, PathBuf::from("/home/u/.local/share/opencode/opencode.db"));
        assert_eq!(p.config_file, PathBuf::from("/home/u/.config/opencode/opencode-sync.json"));
        assert_eq!(p.state_dir, PathBuf::from("/home/u/.local/state/oc-sync"));
        assert_eq!(p.data_dir, PathBuf::from("/home/u/.local/share/oc-sync"));
        assert_eq!(
            p.opencode_plugin_install,
            PathBuf::from("/home/u/.cache/opencode/packages/oc-sync@latest/node_modules/oc-sync")
        );
        assert!(p.opencode_extra_config.is_none());
    }

    #[test]
    fn xdg_variables_win_and_empty_ones_are_ignored() {
        let p = Paths::resolve(&env(&[
            ("XDG_CONFIG_HOME", "/x/cfg"),
            ("XDG_DATA_HOME", "/x/data"),
            ("XDG_STATE_HOME", ""),
            ("XDG_CACHE_HOME", "/x/cache"),
        ]))
        .unwrap();
        assert_eq!(p.opencode_config, PathBuf::from("/x/cfg/opencode"));
        assert_eq!(p.opencode_db, PathBuf::from("/x/data/opencode/opencode.db"));
        assert_eq!(p.opencode_state, PathBuf::from("/home/u/.local/state/opencode"));
        assert_eq!(p.opencode_cache, PathBuf::from("/x/cache/opencode"));
    }

    #[test]
    fn opencode_db_variable_as_opencode_reads_it() {
        let rel = Paths::resolve(&env(&[("OPENCODE_DB", "other.db")])).unwrap();
        assert_eq!(rel.opencode_db, PathBuf::from("/home/u/.local/share/opencode/other.db"));
        let abs = Paths::resolve(&env(&[("OPENCODE_DB", "/srv/oc.db")])).unwrap();
        assert_eq!(abs.opencode_db, PathBuf::from("/srv/oc.db"));
        let mem = Paths::resolve(&env(&[("OPENCODE_DB", ":memory:")])).unwrap();
        assert_eq!(mem.opencode_db, PathBuf::from(":memory:"));
        let win = Paths::resolve(&env(&[("OPENCODE_DB", "C:\\oc\\x.db")])).unwrap();
        assert_eq!(win.opencode_db, PathBuf::from("C:\\oc\\x.db"));
    }

    #[test]
    fn extra_config_dir_and_config_override() {
        let p = Paths::resolve(&env(&[("OPENCODE_CONFIG_DIR", "/team/oc"), ("OC_SYNC_CONFIG", "/etc/ocs.json")])).unwrap();
        assert_eq!(p.opencode_extra_config, Some(PathBuf::from("/team/oc")));
        assert_eq!(p.opencode_config, PathBuf::from("/home/u/.config/opencode"));
        assert_eq!(p.config_file, PathBuf::from("/etc/ocs.json"));
    }

    #[test]
    fn jsonc_config_file_is_used_when_json_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("cfg");
        std::fs::create_dir_all(cfg.join("opencode")).unwrap();
        std::fs::write(cfg.join("opencode").join(CONFIG_FILE_NAME_JSONC), "{}").unwrap();
        let e = EnvSnapshot::new(tmp.path(), [("XDG_CONFIG_HOME", cfg.to_str().unwrap())]);
        assert_eq!(Paths::resolve(&e).unwrap().config_file, cfg.join("opencode").join(CONFIG_FILE_NAME_JSONC));
        std::fs::write(cfg.join("opencode").join(CONFIG_FILE_NAME), "{}").unwrap();
        assert_eq!(Paths::resolve(&e).unwrap().config_file, cfg.join("opencode").join(CONFIG_FILE_NAME));
    }

    #[test]
    fn missing_home_is_a_clear_error() {
        let e = EnvSnapshot::default();
        assert!(Paths::resolve(&e).unwrap_err().to_string().contains("set HOME"));
    }
}
