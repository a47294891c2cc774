//! Pure three-way merge of one synced item (no I/O).
//!
//! `merge(kind, base, local, remote, prefer)` combines the two descendants of `base` (the content at
//! the last sync; `None` if the item never synced, which counts as an empty base of that kind).
//! Changes made on one side only are taken as they are; where both sides changed the same thing
//! differently, `prefer`'s version goes into the result and a [`Conflict`] is recorded. The output
//! never contains conflict markers.
//!
//! Per kind (details in each submodule):
//! - [`MergeKind::Json`] / [`MergeKind::Jsonc`]: objects key by key, recursively; arrays and scalars
//!   are whole values ([`json`]). JSONC keeps the local text's comments and formatting ([`jsonc`]).
//! - [`MergeKind::Jsonl`]: a multiset of lines, additions from both sides kept ([`jsonl`]).
//! - [`MergeKind::Text`]: line-based diff3 ([`text`]).
//! - [`MergeKind::Rows`]: session documents of database rows, merged row by row ([`rows`]).
//! - [`MergeKind::Binary`]: whole-file only.

pub mod json;
pub mod jsonc;
pub mod jsonl;
pub mod rows;
pub mod text;

#[cfg(test)]
mod proptests;

/// How an item's bytes are understood when merging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MergeKind {
    /// Strict JSON; a changed result is pretty-printed (2 spaces, trailing newline).
    Json,
    /// JSON with comments and trailing commas; the local text's comments and layout survive.
    Jsonc,
    /// One JSON document (or any text) per line, e.g. prompt history.
    Jsonl,
    /// UTF-8 text, merged line by line.
    Text,
    /// Opaque bytes: one side or the other, never combined.
    Binary,
    /// A JSON document of database rows (an OpenCode session's messages, parts, todos…): tables
    /// merge row by row, both sides' new rows kept; one row per line when rendered.
    Rows,
}

/// Which descendant wins a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Local,
    Remote,
}

/// Which of the three inputs an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    Base,
    Local,
    Remote,
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Input::Base => "base (last synced)",
            Input::Local => "local",
            Input::Remote => "remote",
        })
    }
}

/// One place where both sides changed the same thing differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// JSON pointer like `/provider/openai/model` (`""` is the whole document), or `lines 12-14`
    /// (line numbers in the merged result) for text.
    pub path: String,
    /// Short renderings of the value/region on each side; `None` where it is absent (deleted).
    pub local: Option<String>,
    pub remote: Option<String>,
    pub base: Option<String>,
}

/// The merged bytes and every conflict that was resolved by `prefer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOutcome {
    pub bytes: Vec<u8>,
    pub conflicts: Vec<Conflict>,
}

impl MergeOutcome {
    fn clean(bytes: Vec<u8>) -> Self {
        MergeOutcome {
            bytes,
            conflicts: Vec::new(),
        }
    }
}

/// A side could not be understood as its kind; the caller should treat the item as a whole-value
/// conflict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("the {side} side is not valid JSON: {message}")]
    InvalidJson { side: Input, message: String },
    #[error("the {side} side is not valid UTF-8 text: {message}")]
    NotUtf8 { side: Input, message: String },
}

/// Three-way merges one item. See the module docs for the rules of each kind.
pub fn merge(
    kind: MergeKind,
    base: Option<&[u8]>,
    local: &[u8],
    remote: &[u8],
    prefer: Side,
) -> Result<MergeOutcome, MergeError> {
    match kind {
        MergeKind::Json => json::merge_json(base, local, remote, prefer),
        MergeKind::Jsonc => jsonc::merge_jsonc(base, local, remote, prefer),
        MergeKind::Jsonl => jsonl::merge_jsonl(base, local, remote),
        MergeKind::Text => text::merge_text(base, local, remote, prefer),
        MergeKind::Binary => Ok(merge_binary(base, local, remote, prefer)),
        MergeKind::Rows => rows::merge_rows(base, local, remote, prefer),
    }
}

/// Binary items never merge: identical sides, or one side unchanged, are clean; anything else is
/// one conflict on the whole file, resolved by `prefer`.
fn merge_binary(base: Option<&[u8]>, local: &[u8], remote: &[u8], prefer: Side) -> MergeOutcome {
    let base_bytes = base.unwrap_or_default();
    if local == remote || remote == base_bytes {
        return MergeOutcome::clean(local.to_vec());
    }
    if local == base_bytes {
        return MergeOutcome::clean(remote.to_vec());
    }
    let describe = |b: &[u8]| Some(format!("{} bytes", b.len()));
    let conflict = Conflict {
        path: String::new(),
        local: describe(local),
        remote: describe(remote),
        base: base.and_then(describe),
    };
    let bytes = match prefer {
        Side::Local => local.to_vec(),
        Side::Remote => remote.to_vec(),
    };
    MergeOutcome {
        bytes,
        conflicts: vec![conflict],
    }
}

/// UTF-8 decoding with the side named in the error. A leading BOM is kept (it is part of the text).
fn utf8(bytes: &[u8], side: Input) -> Result<&str, MergeError> {
    std::str::from_utf8(bytes).map_err(|e| MergeError::NotUtf8 {
        side,
        message: e.to_string(),
    })
}

/// Cuts a rendering down to a readable length (on a char boundary).
fn short(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_rules() {
        let b = Some(&b"base"[..]);
        let m = merge(MergeKind::Binary, b, b"base", b"new", Side::Local).unwrap();
        assert_eq!(m, MergeOutcome::clean(b"new".to_vec()));
        let m = merge(MergeKind::Binary, b, b"mine", b"base", Side::Remote).unwrap();
        assert_eq!(m, MergeOutcome::clean(b"mine".to_vec()));
        let m = merge(MergeKind::Binary, b, b"same", b"same", Side::Remote).unwrap();
        assert_eq!(m, MergeOutcome::clean(b"same".to_vec()));
        let m = merge(MergeKind::Binary, b, b"mine", b"theirs", Side::Remote).unwrap();
        assert_eq!(m.bytes, b"theirs");
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(m.conflicts[0].base.as_deref(), Some("4 bytes"));
        let m = merge(MergeKind::Binary, None, &[0, 159, 146], &[1], Side::Local).unwrap();
        assert_eq!(m.bytes, vec![0, 159, 146]);
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(m.conflicts[0].base, None);
    }

    #[test]
    fn binary_never_synced_one_side_empty_takes_other() {
        let m = merge(MergeKind::Binary, None, b"", b"data", Side::Local).unwrap();
        assert_eq!(m, MergeOutcome::clean(b"data".to_vec()));
    }

    #[test]
    fn error_names_the_side() {
        let e = merge(MergeKind::Json, None, b"{}", b"{oops", Side::Local).unwrap_err();
        assert!(matches!(
            e,
            MergeError::InvalidJson {
                side: Input::Remote,
                ..
            }
        ));
        assert!(
            e.to_string()
                .starts_with("the remote side is not valid JSON"),
            "{e}"
        );
        let e = merge(MergeKind::Text, None, &[0xff, 0xfe], b"x", Side::Local).unwrap_err();
        assert!(matches!(
            e,
            MergeError::NotUtf8 {
                side: Input::Local,
                ..
            }
        ));
        let e = merge(MergeKind::Jsonc, Some(b"{,}"), b"{}", b"{}", Side::Local).unwrap_err();
        assert!(
            matches!(
                e,
                MergeError::InvalidJson {
                    side: Input::Base,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn short_truncates_on_char_boundary() {
        let s = "é".repeat(300);
        let out = short(&s);
        assert_eq!(out.chars().count(), 201);
        assert!(out.ends_with('…'));
        assert_eq!(short("abc"), "abc");
    }
}
