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

/// Whether a plugin spec refers to oc-sync: `oc-sync`, `oc-sync@1.2.3`, or a path/URL to a folder
/// named oc-sync.
pub fn is_oc_sync_spec(spec: &str) -> bool {
    let s = spec.trim().trim_end_matches(['/', '\\']);
    if s == "oc-sync" || s.starts_with("oc-sync@") {
        return true;
    }
    let is_path = s.starts_with("file://") || s.starts_with('.') || s.starts_with('/') || s.contains(":\\");
    is_path && s.rsplit(['/', '\\']).next().is_some_and(|last| last == "oc-sync")
}

/// The oc-sync entry in a config file's `plugin` list, if any (string or `[spec, options]`).
pub fn find_plugin_entry(file: &Path) -> Option<(String, Option<Value>)> {
    let text = std::fs::read_to_string(file).ok()?;
    let value = crate::jsonc::parse(&text).ok()??;
    let list = value.get("plugin")?.as_array()?;
    list.iter().find_map(|entry| match entry {
        Value::String(s) if is_oc_sync_spec(s) => Some((s.clone(), None)),
        Value::Array(t) => match (t.first(), t.get(1)) {
            (Some(Value::String(s)), opts) if is_oc_sync_spec(s) => Some((s.clone(), opts.cloned())),
            _ => None,
        },
        _ => None,
    })
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
        for s in ["oc-sync", "oc-sync@0.1.0", "file:///home/u/oc-sync", "/opt/oc-sync/", "./vendor/oc-sync", "C:\\x\\oc-sync"] {
            assert!(is_oc_sync_spec(s), "{s}");
        }
        for s in ["oc-sync-other", "opencode-synced", "file:///x/oc-sync-fork", "@scope/oc-sync"] {
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
