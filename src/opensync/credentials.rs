//! Where the OpenSync URL and API key are kept: oc-sync's own 0600 file
//! (`$XDG_DATA_HOME/oc-sync/opensync.json`), falling back to the original OpenSync plugin's
//! `~/.opensync/credentials.json` (`{"convexUrl","apiKey"}`) and its older
//! `~/.config/opencode-sync/config.json`, so its users need not log in again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::paths::{EnvSnapshot, Paths};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub url: String,
    pub api_key: String,
}

/// Where the credentials were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub credentials: Credentials,
    pub file: PathBuf,
}

pub fn own_file(paths: &Paths) -> PathBuf {
    paths.opensync_credentials_file()
}

fn legacy_files(env: &EnvSnapshot) -> Vec<PathBuf> {
    let Some(home) = env.home() else { return Vec::new() };
    vec![home.join(".opensync").join("credentials.json"), home.join(".config").join("opencode-sync").join("config.json")]
}

fn read(path: &Path) -> Option<Credentials> {
    let bytes = std::fs::read(path).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let s = |keys: &[&str]| keys.iter().find_map(|k| v[*k].as_str().map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned));
    Some(Credentials { url: s(&["url", "convexUrl", "opensyncUrl"])?, api_key: s(&["apiKey", "api_key"])? })
}

/// The credentials in use: oc-sync's own file, else the original plugin's.
pub fn load(paths: &Paths, env: &EnvSnapshot) -> Option<Found> {
    std::iter::once(own_file(paths))
        .chain(legacy_files(env))
        .find_map(|file| read(&file).map(|credentials| Found { credentials, file }))
}

/// Stores the credentials (0600, atomic).
pub fn save(paths: &Paths, c: &Credentials) -> std::io::Result<PathBuf> {
    let p = own_file(paths);
    crate::fsutil::save_private_json(&p, c)?;
    Ok(p)
}

/// Removes oc-sync's own credentials file. The original plugin's file is left alone (the
/// caller tells the person about it). Returns whether there was one.
pub fn remove(paths: &Paths) -> std::io::Result<bool> {
    crate::fsutil::remove_if_exists(&own_file(paths))
}

/// The original plugin's credentials files that exist (they are never deleted by oc-sync).
pub fn legacy_present(env: &EnvSnapshot) -> Vec<PathBuf> {
    legacy_files(env).into_iter().filter(|p| p.is_file()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_file_first_then_the_original_plugins() {
        let t = tempfile::tempdir().unwrap();
        let env = EnvSnapshot::new(t.path(), Vec::<(String, String)>::new());
        let paths = Paths::resolve(&env).unwrap();
        assert!(load(&paths, &env).is_none());
        let legacy = t.path().join(".opensync/credentials.json");
        std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
        std::fs::write(&legacy, r#"{"convexUrl":"https://a.convex.cloud","apiKey":"osk_legacy"}"#).unwrap();
        let f = load(&paths, &env).unwrap();
        assert_eq!((f.credentials.api_key.as_str(), f.file.clone()), ("osk_legacy", legacy.clone()));
        let own = save(&paths, &Credentials { url: "https://b.convex.site".into(), api_key: "osk_own".into() }).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&own).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(load(&paths, &env).unwrap().credentials.api_key, "osk_own");
        assert!(remove(&paths).unwrap());
        assert_eq!(load(&paths, &env).unwrap().credentials.api_key, "osk_legacy");
        assert_eq!(legacy_present(&env), vec![legacy]);
    }
}
