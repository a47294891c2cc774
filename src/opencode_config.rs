//! Reading and editing OpenCode's own global config file (opencode.json / opencode.jsonc / config.json)
//! to find or add the oc-sync plugin entry. Edits keep the person's comments and formatting.

use std::path::{Path, PathBuf};

use jsonc_parser::cst::{CstInputValue, CstRootNode};
use serde_json::Value;

use crate::fsutil;

/// OpenCode's global config files, in the order OpenCode prefers for writing.
const CANDIDATES: &[&str] = &["opencode.jsonc", "opencode.json", "config.json"];

/// The global config file OpenCode would edit: the first that exists, else `opencode.json`.
pub fn global_config_file(config_dir: &Path) -> PathBuf {
    CANDIDATES
        .iter()
        .map(|n| config_dir.join(n))
        .find(|p| p.exists())
        .unwrap_or_else(|| config_dir.join("opencode.json"))
}

/// Whether a plugin spec names oc-sync by its text alone: `oc-sync`, `oc-sync@1.2.3`, or a
/// path or `file://` URL to a folder named oc-sync or to its entry file (`.../oc-sync/server.mjs`).
pub fn is_oc_sync_spec(spec: &str) -> bool {
    let s = spec.trim().trim_end_matches(['/', '\\']);
    if s == "oc-sync" || s.starts_with("oc-sync@") {
        return true;
    }
    if !is_path_spec(s) {
        return false;
    }
    let mut parts = s.rsplit(['/', '\\']);
    match (parts.next(), parts.next()) {
        (Some("oc-sync"), _) => true,
        (Some(file), Some("oc-sync")) => ENTRY_FILES.contains(&file),
        _ => false,
    }
}

/// The files of the package a plugin entry may point at.
const ENTRY_FILES: &[&str] = &["server.mjs", "server.js", "index.js", "package.json"];

fn is_path_spec(s: &str) -> bool {
    s.starts_with("file://") || s.starts_with('.') || s.starts_with('/') || s.starts_with('~') || s.contains(":\\")
}

/// Whether a plugin spec refers to oc-sync: by its text ([`is_oc_sync_spec`]), or a path or
/// `file://` URL (relative ones from `base`, the config file's folder) to a package whose
/// package.json is named "oc-sync", or to a file in it (a checkout in a folder of another name).
pub fn refers_to_oc_sync(spec: &str, base: &Path) -> bool {
    if is_oc_sync_spec(spec) {
        return true;
    }
    let s = spec.trim();
    if !is_path_spec(s) {
        return false;
    }
    let path = if s.starts_with("file://") {
        match url::Url::parse(s).ok().and_then(|u| u.to_file_path().ok()) {
            Some(p) => p,
            None => return false,
        }
    } else if let Some(rest) = s.strip_prefix("~/") {
        match home::home_dir() {
            Some(h) => h.join(rest),
            None => return false,
        }
    } else {
        base.join(s)
    };
    package_name_at(&path).as_deref() == Some("oc-sync")
}

/// The name in the package.json of the package holding `path` (a package folder or a file in it,
/// up to two folders down).
fn package_name_at(path: &Path) -> Option<String> {
    let start = if path.is_file() { path.parent()? } else { path };
    start.ancestors().take(3).find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("package.json")).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        Some(v.get("name")?.as_str()?.to_string())
    })
}

/// The oc-sync entry in a config file's `plugin` list, if any (string or `[spec, options]`).
pub fn find_plugin_entry(file: &Path) -> Option<(String, Option<Value>)> {
    let text = std::fs::read_to_string(file).ok()?;
    let value = crate::jsonc::parse(&text).ok()??;
    let list = value.get("plugin")?.as_array()?;
    let base = file.parent().unwrap_or(Path::new("."));
    let ours = |s: &str| refers_to_oc_sync(s, base);
    list.iter().find_map(|entry| match entry {
        Value::String(s) if ours(s) => Some((s.clone(), None)),
        Value::Array(t) => match (t.first(), t.get(1)) {
            (Some(Value::String(s)), opts) if ours(s) => Some((s.clone(), opts.cloned())),
            _ => None,
        },
        _ => None,
    })
}

/// The oc-sync entry in any of OpenCode's global config files in `config_dir`, with the file.
pub fn find_plugin_entry_in(config_dir: &Path) -> Option<(PathBuf, String)> {
    CANDIDATES.iter().map(|n| config_dir.join(n)).find_map(|f| find_plugin_entry(&f).map(|(s, _)| (f, s)))
}

/// What [`add_plugin_entry`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    AlreadyPresent(String),
}

/// Adds `spec` to the `plugin` list of `file` (creating the file or the list if needed), unless an
/// oc-sync entry is already there. Comments and formatting of the rest of the file are kept.
pub fn add_plugin_entry(file: &Path, spec: &str, dry_run: bool) -> Result<AddOutcome, String> {
    if let Some((existing, _)) = find_plugin_entry(file) {
        return Ok(AddOutcome::AlreadyPresent(existing));
    }
    // Another of OpenCode's config files in the same folder may list it already.
    if let Some((_, existing)) = file.parent().and_then(find_plugin_entry_in) {
        return Ok(AddOutcome::AlreadyPresent(existing));
    }
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "{\n  \"$schema\": \"https://opencode.ai/config.json\"\n}\n".into(),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    if let Err(e) = crate::jsonc::parse(&text) {
        return Err(format!("{} is not valid JSON(C) ({e}); fix it, then run this again", file.display()));
    }
    let root = CstRootNode::parse(&text, &Default::default())
        .map_err(|e| format!("{} is not valid JSON(C) (line {}): {}; fix it, then run this again", file.display(), e.line_display(), e.kind()))?;
    let obj = root
        .object_value_or_create()
        .ok_or_else(|| format!("{} does not hold a JSON object; fix it, then run this again", file.display()))?;
    let list = obj
        .array_value_or_create("plugin")
        .ok_or_else(|| format!("\"plugin\" in {} is not a list; make it a list, then run this again", file.display()))?;
    list.append(CstInputValue::String(spec.to_string()));
    if !dry_run {
        fsutil::atomic_write(file, root.to_string().as_bytes(), None).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }
    Ok(AddOutcome::Added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_oc_sync_specs() {
        for s in [
            "oc-sync",
            "oc-sync@0.1.0",
            "oc-sync@latest",
            "file:///home/u/oc-sync",
            "file:///home/u/node_modules/oc-sync/server.mjs",
            "/opt/oc-sync/",
            "/opt/oc-sync/index.js",
            "./vendor/oc-sync",
            "~/src/oc-sync",
            "C:\\x\\oc-sync",
        ] {
            assert!(is_oc_sync_spec(s), "{s}");
        }
        for s in ["oc-sync-other", "opencode-synced", "file:///x/oc-sync-fork", "@scope/oc-sync", "/opt/oc-sync/lib/other.js", "oc-sync/server.mjs"] {
            assert!(!is_oc_sync_spec(s), "{s}");
        }
    }

    #[test]
    fn adds_entry_keeping_comments() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("opencode.jsonc");
        std::fs::write(&f, "{\n  // my model\n  \"model\": \"a/b\",\n  \"plugin\": [\"other\"],\n}\n").unwrap();
        assert_eq!(add_plugin_entry(&f, "oc-sync", false).unwrap(), AddOutcome::Added);
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains("// my model"), "{text}");
        assert_eq!(find_plugin_entry(&f).unwrap().0, "oc-sync");
        let v = jsonc_parser::parse_to_serde_value(&text, &Default::default()).unwrap().unwrap();
        assert_eq!(v["plugin"], serde_json::json!(["other", "oc-sync"]));
        assert_eq!(add_plugin_entry(&f, "oc-sync", false).unwrap(), AddOutcome::AlreadyPresent("oc-sync".into()));
    }

    #[test]
    fn creates_file_and_finds_tuple_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let f = global_config_file(tmp.path());
        assert_eq!(f, tmp.path().join("opencode.json"));
        add_plugin_entry(&f, "oc-sync", false).unwrap();
        assert!(find_plugin_entry(&f).is_some());
        std::fs::write(&f, r#"{"plugin": [["oc-sync", {"conflictStrategy": "ask"}]]}"#).unwrap();
        let (spec, opts) = find_plugin_entry(&f).unwrap();
        assert_eq!(spec, "oc-sync");
        assert_eq!(opts.unwrap()["conflictStrategy"], "ask");
    }

    /// A checkout of oc-sync in a folder of another name, with its entry file.
    fn checkout(dir: &Path) -> PathBuf {
        let pkg = dir.join("src/my-fork");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("package.json"), r#"{"name": "oc-sync", "version": "0.1.0"}"#).unwrap();
        std::fs::write(pkg.join("server.mjs"), "export default {}\n").unwrap();
        pkg
    }

    #[test]
    fn every_form_of_the_entry_is_found_and_never_added_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let pkg = checkout(tmp.path());
        let cfg_dir = tmp.path().join("config");
        std::fs::create_dir_all(&cfg_dir).unwrap();
        let url = format!("file://{}", pkg.display());
        let spaced = tmp.path().join("with space/oc-sync");
        std::fs::create_dir_all(&spaced).unwrap();
        let forms: Vec<(&str, serde_json::Value)> = vec![
            ("bare name", serde_json::json!("oc-sync")),
            ("versioned", serde_json::json!("oc-sync@0.1.0")),
            ("file URL to the package", serde_json::json!(url)),
            ("file URL to the entry file", serde_json::json!(format!("{url}/server.mjs"))),
            ("percent-encoded file URL", serde_json::json!(format!("file://{}/with%20space/oc-sync", tmp.path().display()))),
            ("path to the package", serde_json::json!(pkg.display().to_string())),
            ("path to the entry file", serde_json::json!(pkg.join("server.mjs").display().to_string())),
            ("relative path", serde_json::json!("../src/my-fork")),
            ("tuple with options", serde_json::json!(["oc-sync", { "conflictStrategy": "ask" }])),
            ("tuple with a path", serde_json::json!([pkg.display().to_string(), {}])),
        ];
        for (what, entry) in forms {
            let f = cfg_dir.join("opencode.json");
            let text = serde_json::to_string_pretty(&serde_json::json!({ "plugin": ["other-plugin", entry.clone()] })).unwrap();
            std::fs::write(&f, &text).unwrap();
            let (spec, _) = find_plugin_entry(&f).unwrap_or_else(|| panic!("{what}: {entry} not found"));
            let want = entry.as_str().or_else(|| entry[0].as_str()).unwrap();
            assert_eq!(spec, want, "{what}");
            for added in ["oc-sync", "file:///elsewhere/oc-sync"] {
                assert_eq!(add_plugin_entry(&f, added, false).unwrap(), AddOutcome::AlreadyPresent(want.to_string()), "{what}");
            }
            assert_eq!(std::fs::read_to_string(&f).unwrap(), text, "{what}: file unchanged");
        }
        // Another package, or a folder without a package.json, is not oc-sync.
        let other = tmp.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("package.json"), r#"{"name": "not-oc-sync"}"#).unwrap();
        for spec in [other.display().to_string(), tmp.path().join("nothing").display().to_string(), "not-a-path".into()] {
            assert!(!refers_to_oc_sync(&spec, &cfg_dir), "{spec}");
        }
    }

    #[test]
    fn an_entry_in_another_config_file_of_the_folder_counts() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("config.json"), r#"{"plugin": ["oc-sync@1.0.0"]}"#).unwrap();
        std::fs::write(tmp.path().join("opencode.json"), "{}").unwrap();
        let f = tmp.path().join("opencode.json");
        assert_eq!(add_plugin_entry(&f, "oc-sync", false).unwrap(), AddOutcome::AlreadyPresent("oc-sync@1.0.0".into()));
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "{}");
    }

    #[test]
    fn broken_file_is_not_touched() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("opencode.json");
        std::fs::write(&f, "{ \"plugin\": [ }").unwrap();
        let e = add_plugin_entry(&f, "oc-sync", false).unwrap_err();
        assert!(e.contains("not valid JSON"), "{e}");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "{ \"plugin\": [ }");
    }
}
