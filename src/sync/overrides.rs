//! Per-machine overrides: values of `opencode.json` keys that stay on this machine.
//!
//! The file [`Overrides::FILE_NAME`] in OpenCode's config dir holds a JSONC object such as
//! `{ "model": "ollama/llama3", "provider": { "ollama": { "options": { "baseURL": "…" } } } }`.
//! Its *leaf paths* are the overridden keys: objects are recursed into, any non-object value
//! (string, number, bool, null, array) is a leaf. An empty object overrides nothing.
//!
//! - [`Overrides::to_shared`] gives what this machine pushes: the local text with every overridden
//!   leaf set to the shared value (the last synced shared content) or removed where the shared
//!   content lacks it. Objects that only existed to hold overridden leaves are removed again (or
//!   given back the shared non-object value they replaced).
//! - [`Overrides::to_local`] gives what this machine writes after a pull/merge: the shared text with
//!   the override values set at their paths, intermediate objects created (a non-object in the way
//!   is replaced by an object).
//!
//! Both keep the comments and formatting of the text they start from
//! ([`crate::merge::jsonc::rewrite_to`]). The overrides file itself is never synced.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::merge::MergeError;

/// Why overrides could not be loaded or applied.
#[derive(Debug, thiserror::Error)]
pub enum OverridesError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not valid JSONC: line {line}, column {column}: {message}. Fix the file there (it must hold one JSON object; comments and trailing commas are fine), or delete it to stop overriding values on this machine"
    )]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{path} must hold a JSON object of opencode.json keys, e.g. {{ \"model\": \"ollama/llama3\" }}; fix the file or delete it to stop overriding values on this machine"
    )]
    NotObject { path: PathBuf },
    /// The local or shared config text could not be understood.
    #[error("cannot apply per-machine overrides to the {which} config: {message}")]
    Config {
        which: &'static str,
        message: String,
    },
}

/// The per-machine overrides of one machine.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Overrides {
    value: Map<String, Value>,
}

impl Overrides {
    pub const FILE_NAME: &str = "opencode-sync.overrides.jsonc";

    /// Overrides from a value (the object form of the file).
    pub fn from_map(value: Map<String, Value>) -> Self {
        Overrides { value }
    }

    /// The overrides as an object.
    pub fn value(&self) -> &Map<String, Value> {
        &self.value
    }

    /// True when nothing is overridden (no leaf paths).
    pub fn is_empty(&self) -> bool {
        !has_leaves(&self.value)
    }

    /// The overridden keys as JSON pointers (`/model`, `/provider/ollama/options/baseURL`), in
    /// file order.
    pub fn leaf_paths(&self) -> Vec<String> {
        fn walk(m: &Map<String, Value>, prefix: &str, out: &mut Vec<String>) {
            for (k, v) in m {
                let p = format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1"));
                match v {
                    Value::Object(o) => walk(o, &p, out),
                    _ => out.push(p),
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.value, "", &mut out);
        out
    }

    /// Reads `<config_dir>/opencode-sync.overrides.jsonc`. `None` if there is no such file; an
    /// empty file (or only comments) is an empty set of overrides.
    pub fn load(config_dir: &Path) -> Result<Option<Overrides>, OverridesError> {
        let path = config_dir.join(Self::FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(OverridesError::Read { path, source }),
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = good.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
            OverridesError::Invalid {
                path: path.clone(),
                line,
                column,
                message: "invalid UTF-8".into(),
            }
        })?;
        match crate::jsonc::parse(&text) {
            Ok(None) => Ok(Some(Overrides::default())),
            Ok(Some(Value::Object(value))) => Ok(Some(Overrides { value })),
            Ok(Some(_)) => Err(OverridesError::NotObject { path }),
            Err(e) => Err(OverridesError::Invalid {
                path,
                line: e.line,
                column: e.column,
                message: e.message,
            }),
        }
    }

    /// The item key the overrides apply to: `config/opencode.jsonc` if that file exists in
    /// `config_dir`, else `config/opencode.json`.
    pub fn target_key(config_dir: &Path) -> String {
        if config_dir.join("opencode.jsonc").is_file() {
            "config/opencode.jsonc".to_string()
        } else {
            "config/opencode.json".to_string()
        }
    }

    /// What this machine pushes: `local_text` with every overridden leaf replaced by the shared
    /// value from `shared_text` (the last synced shared content; `None` if never synced) or removed
    /// when the shared content lacks it. Comments and formatting of `local_text` are kept.
    ///
    /// Where the local text holds a non-object at a place the overrides go into (the person
    /// replaced, say, `provider` by a string), that local value is pushed as it is.
    pub fn to_shared(
        &self,
        local_text: &[u8],
        shared_text: Option<&[u8]>,
    ) -> Result<Vec<u8>, OverridesError> {
        let local = parse_object(local_text, "local")?;
        let shared = shared_text
            .map(|s| parse_object(s, "shared"))
            .transpose()?
            .map(Value::Object);
        if !has_leaves(&self.value) {
            return Ok(local_text.to_vec());
        }
        let target = shared_level(Some(&Value::Object(local)), shared.as_ref(), &self.value)
            .unwrap_or_else(|| Value::Object(Map::new()));
        rewrite(local_text, &target, "local")
    }

    /// What this machine writes locally after a pull/merge: `shared_text` with the override values
    /// set at their paths (creating intermediate objects). Comments kept.
    pub fn to_local(&self, shared_text: &[u8]) -> Result<Vec<u8>, OverridesError> {
        let mut shared = parse_object(shared_text, "shared")?;
        apply(&mut shared, &self.value);
        rewrite(shared_text, &Value::Object(shared), "shared")
    }
}

fn rewrite(text: &[u8], target: &Value, which: &'static str) -> Result<Vec<u8>, OverridesError> {
    crate::merge::jsonc::rewrite_to(text, target).map_err(|e| config_error(which, e))
}

fn config_error(which: &'static str, e: MergeError) -> OverridesError {
    let message = match e {
        MergeError::InvalidJson { message, .. } => format!("not valid JSONC: {message}"),
        MergeError::NotUtf8 { message, .. } => format!("not valid UTF-8: {message}"),
    };
    OverridesError::Config { which, message }
}

/// Parses a config text; empty text (or only comments) is `{}`.
fn parse_object(bytes: &[u8], which: &'static str) -> Result<Map<String, Value>, OverridesError> {
    let text = std::str::from_utf8(bytes).map_err(|e| OverridesError::Config {
        which,
        message: format!("not valid UTF-8: {e}"),
    })?;
    match crate::jsonc::parse(text) {
        Ok(None) => Ok(Map::new()),
        Ok(Some(Value::Object(m))) => Ok(m),
        Ok(Some(_)) => Err(OverridesError::Config {
            which,
            message: "its top level is not a JSON object".into(),
        }),
        Err(e) => Err(OverridesError::Config {
            which,
            message: format!("not valid JSONC: {e}"),
        }),
    }
}

fn has_leaves(m: &Map<String, Value>) -> bool {
    m.values().any(|v| match v {
        Value::Object(o) => has_leaves(o),
        _ => true,
    })
}

/// Sets every override leaf in `target`, turning absent or non-object intermediates into objects.
fn apply(target: &mut Map<String, Value>, overrides: &Map<String, Value>) {
    for (k, ov) in overrides {
        match ov {
            Value::Object(o) => {
                if !has_leaves(o) {
                    continue;
                }
                if !target.get(k).is_some_and(Value::is_object) {
                    // `insert` keeps an existing key's position.
                    target.insert(k.clone(), Value::Object(Map::new()));
                }
                if let Some(Value::Object(child)) = target.get_mut(k) {
                    apply(child, o);
                }
            }
            leaf => {
                target.insert(k.clone(), leaf.clone());
            }
        }
    }
}

/// One level of `to_shared`: `local` is the local value at this place (absent: `None`), `shared`
/// the shared one, `overrides` a non-empty override object. Returns the value to push here
/// (`None`: absent).
fn shared_level(
    local: Option<&Value>,
    shared: Option<&Value>,
    overrides: &Map<String, Value>,
) -> Option<Value> {
    let (mut out, was_nonempty) = match local {
        Some(Value::Object(m)) => (m.clone(), !m.is_empty()),
        // A local non-object where overrides go in: a real local value, pushed as it is.
        Some(other) => return Some(other.clone()),
        None => (Map::new(), false),
    };
    let shared_obj = shared.and_then(Value::as_object);
    for (k, ov) in overrides {
        let shared_k = shared_obj.and_then(|s| s.get(k));
        let new = match ov {
            Value::Object(o) if !has_leaves(o) => continue,
            Value::Object(o) => shared_level(out.get(k), shared_k, o),
            _leaf => shared_k.cloned(),
        };
        match new {
            Some(v) => {
                out.insert(k.clone(), v);
            }
            None => {
                // `shift_remove` keeps the other keys' order (the CST patch relies on it).
                out.shift_remove(k);
            }
        }
    }
    if out.is_empty() && (local.is_none() || was_nonempty) {
        // This object only held overridden values: give the shared content back what was here
        // (an object, a non-object replaced by `to_local`, or nothing).
        return match shared {
            Some(Value::Object(_)) if local.is_some() => Some(Value::Object(out)),
            Some(Value::Object(_)) => None,
            Some(v) if local.is_some() => Some(v.clone()),
            _ => None,
        };
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests;
