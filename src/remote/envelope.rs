//! Repository format 2's item files: the git tree is the index.
//!
//! Every item lives in one file at its key path (`config/opencode.json`,
//! `messages/<project>/<session>/<message>.json`, …). The file is one header line, then the
//! item's bytes as the engine stores them (ciphertext when a codec encrypts them):
//!
//! ```text
//! oc-sync-item 2 {"clock":{"laptop":3},"hash":"<sha256 of the bytes>","size":812,"kind":"json",
//!                 "category":"config","modified_ms":1764000000000,"machine":"laptop"}\n
//! <812 bytes>
//! ```
//!
//! (one line in the file). A tombstone has `"hash":null`, a `deleted_ms`, and no bytes. An item too
//! big for one file of the host has `"parts":N` and no bytes here; its bytes are the N files
//! `.oc-sync/chunks/<hash>/<i>` (0-based), concatenated.
//!
//! So a commit rewrites only the files of the items it changes, a diff of two commits names exactly
//! the items that changed, and an unchanged file (same git blob id) needs no read. Files under
//! `.oc-sync/` are oc-sync's own: [`FORMAT_FILE`] says the format, [`LEGACY_MANIFEST`] is a stub that
//! makes format-1 clients (oc-sync 0.1) stop with "upgrade oc-sync on this machine" instead of
//! reading an empty remote.
//!
//! Everything decoded here comes from a remote and is checked: the magic, the header's size, its
//! JSON against [`validate_entry`] for the file's own key, the byte count against `size`, and the
//! bytes against `hash`.

use serde::{Deserialize, Serialize};

use super::{Entry, MAX_KEY_LEN, sha256_hex, truncate, validate_entry, validate_key};

/// The repository format the envelope belongs to.
pub const FORMAT: u32 = 2;
/// Holds `"2\n"`: which format the tree is in.
pub const FORMAT_FILE: &str = ".oc-sync/format";
/// Format 1's manifest path; in format 2 a stub naming format 2 and no entries.
pub const LEGACY_MANIFEST: &str = ".oc-sync/manifest.json";
/// Directory of oc-sync's own files; never an item key.
pub const OWN_DIR: &str = ".oc-sync";
/// Where the parts of items too big for one file live: `.oc-sync/chunks/<hash>/<i>`.
pub const CHUNKS_DIR: &str = ".oc-sync/chunks";
/// The start of every item file.
pub const MAGIC: &[u8] = b"oc-sync-item 2 ";
/// Longest header line accepted (a clock naming many machines stays far below).
pub const MAX_HEADER_BYTES: usize = 256 << 10;
/// Most parts one item may have.
pub const MAX_PARTS: u32 = 1 << 16;

/// The content of [`FORMAT_FILE`].
pub fn format_file_content() -> &'static [u8] {
    b"2\n"
}

/// The content of [`LEGACY_MANIFEST`] in a format-2 tree: format 1's manifest shape, format 2, no
/// entries. oc-sync 0.1 refuses it with "written in manifest format 2 ... upgrade oc-sync".
pub fn legacy_manifest_stub() -> Vec<u8> {
    br#"{
  "format": 2,
  "entries": {},
  "note": "This repository was upgraded to oc-sync repository format 2. Update oc-sync on every machine that syncs with it."
}
"#
    .to_vec()
}

/// The header line's JSON: the item's [`Entry`], plus `parts` for an item stored in parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    #[serde(flatten)]
    entry: Entry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parts: Option<u32>,
}

/// One decoded item file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFile<'a> {
    pub entry: Entry,
    /// `Some(n)`: the bytes are in `n` parts under [`CHUNKS_DIR`], `content` is empty.
    pub parts: Option<u32>,
    /// The item's bytes (empty for a tombstone or an item in parts), checked against the entry.
    pub content: &'a [u8],
}

/// The file for an item stored whole: header, then `bytes` (`None` for a tombstone).
/// `bytes` must match `entry.hash`/`entry.size` (the caller validated the change set).
pub fn encode(entry: &Entry, bytes: Option<&[u8]>) -> Vec<u8> {
    let header = serde_json::to_vec(&Header {
        entry: entry.clone(),
        parts: None,
    })
    .expect("an entry serializes");
    let body = bytes.unwrap_or_default();
    let mut out = Vec::with_capacity(MAGIC.len() + header.len() + 1 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&header);
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// The file for an item whose bytes are stored in `parts` files under [`CHUNKS_DIR`].
pub fn encode_parted(entry: &Entry, parts: u32) -> Vec<u8> {
    let header = serde_json::to_vec(&Header {
        entry: entry.clone(),
        parts: Some(parts),
    })
    .expect("an entry serializes");
    let mut out = Vec::with_capacity(MAGIC.len() + header.len() + 1);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&header);
    out.push(b'\n');
    out
}

/// The path of part `i` of the item whose bytes hash to `hash`.
pub fn part_path(hash: &str, i: u32) -> String {
    format!("{CHUNKS_DIR}/{hash}/{i}")
}

/// Whether a tree path is oc-sync's own (not an item).
pub fn is_own_path(path: &str) -> bool {
    path == OWN_DIR || path.starts_with(".oc-sync/")
}

/// The item key a tree path holds, or why it cannot be one. Every blob outside `.oc-sync/` is an
/// item file, and its path is its key.
pub fn key_of_path(path: &str) -> Result<&str, String> {
    if is_own_path(path) {
        return Err(format!("{:?} is oc-sync's own file, not an item", truncate(path, 120)));
    }
    validate_key(path)?;
    Ok(path)
}

/// Reads only an item file's header (for listing a snapshot without keeping its bytes): the entry
/// and `parts`, with everything but the content hash checked. `file_len` is the whole file's length.
pub fn decode_header(key: &str, head: &[u8], file_len: u64) -> Result<(Entry, Option<u32>, usize), String> {
    let k = truncate(key, 120);
    if key.len() > MAX_KEY_LEN {
        return Err(format!("item file {k:?}: key too long"));
    }
    let Some(rest) = head.strip_prefix(MAGIC) else {
        return Err(format!("item file {k:?} is not an oc-sync format-2 item (no header)"));
    };
    let limit = rest.len().min(MAX_HEADER_BYTES);
    let Some(nl) = rest[..limit].iter().position(|&b| b == b'\n') else {
        return Err(format!(
            "item file {k:?}: header line missing or longer than {MAX_HEADER_BYTES} bytes"
        ));
    };
    let header: Header = serde_json::from_slice(&rest[..nl])
        .map_err(|e| format!("item file {k:?}: header is not valid JSON: {e}"))?;
    validate_entry(key, &header.entry)?;
    let body_start = MAGIC.len() + nl + 1;
    let body_len = file_len.saturating_sub(body_start as u64);
    match (&header.entry.hash, header.parts) {
        (None, Some(_)) => return Err(format!("item file {k:?}: a tombstone with parts")),
        (None, None) => {
            if body_len != 0 {
                return Err(format!("item file {k:?}: a tombstone with content"));
            }
            if header.entry.deleted_ms.is_none() {
                return Err(format!("item file {k:?}: a tombstone without deleted_ms"));
            }
        }
        (Some(_), Some(n)) => {
            if n == 0 || n > MAX_PARTS {
                return Err(format!("item file {k:?}: {n} parts is out of range"));
            }
            if body_len != 0 {
                return Err(format!("item file {k:?}: an item in parts with content"));
            }
        }
        (Some(_), None) => {
            if body_len != header.entry.size {
                return Err(format!(
                    "item file {k:?}: header says {} bytes but the file holds {body_len}",
                    header.entry.size
                ));
            }
        }
    }
    Ok((header.entry, header.parts, body_start))
}

/// Decodes a whole item file read from a remote at path `key`, checking the content against the
/// header (size and sha256).
pub fn decode<'a>(key: &str, file: &'a [u8]) -> Result<ItemFile<'a>, String> {
    let (entry, parts, start) = decode_header(key, file, file.len() as u64)?;
    let content = &file[start..];
    if let (Some(hash), None) = (&entry.hash, parts) {
        let actual = sha256_hex(content);
        if &actual != hash {
            return Err(format!(
                "item file {:?}: content hashes to {actual}, header says {hash}",
                truncate(key, 120)
            ));
        }
    }
    Ok(ItemFile { entry, parts, content })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::VectorClock;

    fn entry(bytes: Option<&[u8]>) -> Entry {
        let mut clock = VectorClock::new();
        clock.0.insert("laptop".into(), 3);
        Entry {
            clock,
            hash: bytes.map(sha256_hex),
            size: bytes.map_or(0, |b| b.len() as u64),
            kind: "json".into(),
            category: "config".into(),
            modified_ms: 1_764_000_000_000,
            machine: "laptop".into(),
            deleted_ms: if bytes.is_none() { Some(1_764_000_000_001) } else { None },
        }
    }

    #[test]
    fn an_item_round_trips() {
        let bytes = b"{\"model\":\"x\"}\n";
        let e = entry(Some(bytes));
        let file = encode(&e, Some(bytes));
        assert!(file.starts_with(MAGIC));
        let back = decode("config/opencode.json", &file).unwrap();
        assert_eq!(back.entry, e);
        assert_eq!(back.content, bytes);
        assert_eq!(back.parts, None);
    }

    #[test]
    fn a_tombstone_round_trips_and_binary_content_is_kept() {
        let e = entry(None);
        let file = encode(&e, None);
        let back = decode("config/x.json", &file).unwrap();
        assert_eq!(back.entry, e);
        assert!(back.content.is_empty());
        let bin: Vec<u8> = (0..=255u8).chain([b'\n', 0, b'\n']).collect();
        let e = entry(Some(&bin));
        assert_eq!(decode("credentials/auth.json", &encode(&e, Some(&bin))).unwrap().content, &bin[..]);
    }

    #[test]
    fn a_parted_item_has_no_content() {
        let e = entry(Some(b"big"));
        let file = encode_parted(&e, 3);
        let back = decode("sessions/p/s.json", &file).unwrap();
        assert_eq!(back.parts, Some(3));
        assert!(back.content.is_empty());
        assert_eq!(part_path(e.hash.as_deref().unwrap(), 2), format!(".oc-sync/chunks/{}/2", e.hash.unwrap()));
    }

    #[test]
    fn hostile_files_are_refused() {
        let bytes = b"hello";
        let good = encode(&entry(Some(bytes)), Some(bytes));
        // Content that does not match its hash.
        let mut swapped = good.clone();
        *swapped.last_mut().unwrap() = b'X';
        assert!(decode("config/a.json", &swapped).unwrap_err().contains("hashes to"));
        // Extra bytes after the declared size.
        let mut longer = good.clone();
        longer.push(b'!');
        assert!(decode("config/a.json", &longer).unwrap_err().contains("header says 5 bytes"));
        // No header, a header that is not JSON, a header without end.
        assert!(decode("config/a.json", b"hello").unwrap_err().contains("no header"));
        assert!(decode("config/a.json", b"oc-sync-item 2 {nope\n").unwrap_err().contains("not valid JSON"));
        let endless = [MAGIC, &vec![b' '; MAX_HEADER_BYTES + 10][..]].concat();
        assert!(decode("config/a.json", &endless).unwrap_err().contains("header line"));
        // A tombstone with content, a parted item with content, too many parts.
        let mut t = encode(&entry(None), None);
        t.extend_from_slice(b"x");
        assert!(decode("config/a.json", &t).unwrap_err().contains("tombstone with content"));
        let mut p = encode_parted(&entry(Some(bytes)), 2);
        p.extend_from_slice(b"x");
        assert!(decode("config/a.json", &p).unwrap_err().contains("in parts with content"));
        let many = encode_parted(&entry(Some(bytes)), MAX_PARTS + 1);
        assert!(decode("config/a.json", &many).unwrap_err().contains("out of range"));
        // Fields that fail validation (control characters in the machine name).
        let mut e = entry(Some(bytes));
        e.machine = "evil\u{7}".into();
        assert!(decode("config/a.json", &encode(&e, Some(bytes))).unwrap_err().contains("control"));
    }

    #[test]
    fn paths_map_to_keys() {
        assert_eq!(key_of_path("config/opencode.json").unwrap(), "config/opencode.json");
        assert!(key_of_path(".oc-sync/format").is_err());
        assert!(key_of_path(".oc-sync/chunks/ab/0").is_err());
        assert!(key_of_path("../etc/passwd").is_err());
        assert!(key_of_path("a//b").is_err());
        assert!(is_own_path(FORMAT_FILE) && is_own_path(LEGACY_MANIFEST) && !is_own_path(".oc-syncx/a"));
        let stub: serde_json::Value = serde_json::from_slice(&legacy_manifest_stub()).unwrap();
        assert_eq!(stub["format"], 2);
    }
}
