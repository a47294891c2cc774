//! Snapshots of a whole directory tree (a test HOME, or a simulated machine's root): every file,
//! folder and symbolic link with its kind, permission bits and content hash. A test that plays a
//! hostile remote takes one before and one after a sync and checks that nothing changed outside
//! the folders a sync may write (OpenCode's synced folders, oc-sync's own). Canary files planted
//! where an attacker would aim (shell start-up files, SSH keys, other programs' config) must
//! never change.
//!
//! Shared by the integration tests (`mod common;`) and by unit tests inside `src/` (through
//! `#[path]`), so the rule is written once.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Relative path → "file 644 <sha256>", "dir 755" or "link -> <target>".
pub type HomeSnapshot = BTreeMap<String, String>;

/// Everything under `root`, symlinks not followed.
pub fn snapshot(root: &Path) -> HomeSnapshot {
    let mut out = BTreeMap::new();
    visit(root, "", &mut out);
    out
}

fn visit(dir: &Path, rel: &str, out: &mut HomeSnapshot) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p).map(|t| t.display().to_string()).unwrap_or_default();
            out.insert(r, format!("link -> {target}"));
        } else if meta.is_dir() {
            out.insert(r.clone(), format!("dir {mode:o}"));
            visit(&p, &r, out);
        } else {
            let bytes = std::fs::read(&p).unwrap_or_default();
            out.insert(r, format!("file {mode:o} {}", hex::encode(Sha256::digest(&bytes))));
        }
    }
}

/// Paths that differ between two snapshots (added, removed or changed), each with what happened.
pub fn changes(before: &HomeSnapshot, after: &HomeSnapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => out.push(format!("removed {k}")),
            Some(w) if w != v => out.push(format!("changed {k}: {v} -> {w}")),
            _ => {}
        }
    }
    out.extend(after.keys().filter(|k| !before.contains_key(*k)).map(|k| format!("added {k}")));
    out
}

/// Fails unless every change lies under one of `allowed` (relative folders, e.g.
/// `.config/opencode`, `.local/state/oc-sync`). Returns the changes for further checks.
pub fn assert_only_changed_under(before: &HomeSnapshot, after: &HomeSnapshot, allowed: &[&str]) -> Vec<String> {
    let all = changes(before, after);
    let path_of = |c: &str| c.split_whitespace().nth(1).unwrap_or("").trim_end_matches(':').to_string();
    let outside: Vec<&String> = all
        .iter()
        .filter(|c| {
            let p = path_of(c);
            !allowed.iter().any(|a| p == *a || p.starts_with(&format!("{a}/")))
        })
        .collect();
    assert!(outside.is_empty(), "changed outside {allowed:?}: {outside:#?}");
    all
}

/// Canary files where a hostile remote would aim (relative to a HOME): shell start-up files, SSH
/// keys, git config, another program's config and data. Planted with known content.
pub const CANARIES: &[&str] = &[
    ".bashrc",
    ".profile",
    ".ssh/authorized_keys",
    ".ssh/id_ed25519",
    ".gitconfig",
    ".config/other-app/config.json",
    ".config/opencode-other/opencode.json",
    ".local/share/other-app/data.db",
    ".local/state/other-app/state.json",
];

/// Plants the [`CANARIES`] under `home`.
pub fn plant_canaries(home: &Path) {
    for rel in CANARIES {
        let p = home.join(rel);
        std::fs::create_dir_all(p.parent().expect("relative path")).unwrap();
        std::fs::write(&p, format!("canary {rel}\n")).unwrap();
    }
}

/// Checks that every canary under `home` is still there, unchanged.
pub fn assert_canaries_intact(home: &Path) {
    for rel in CANARIES {
        let p = home.join(rel);
        let meta = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("canary {rel} is gone: {e}"));
        assert!(meta.is_file(), "canary {rel} is no longer a regular file");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("canary {rel}\n"), "canary {rel} changed");
    }
}
