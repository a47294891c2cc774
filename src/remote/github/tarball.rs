//! Bulk download: the files of one commit from GitHub's tarball (`GET /repos/o/r/tarball/{sha}`,
//! a redirect to a gzip'd tar whose paths all sit under one top folder `owner-repo-sha/`), so a
//! first pull of thousands of items is a handful of requests instead of one per file.
//!
//! Nothing is written to disk: entries are matched by path against what the caller wants, and
//! each kept file's sha256 must be the one the manifest names; anything else is skipped (the
//! caller then fetches it one by one, with the usual checks).

use std::collections::HashMap;
use std::io::Read;

use sha2::{Digest, Sha256};

/// What an extraction found.
#[derive(Debug, Default)]
pub struct Extracted {
    /// File bytes by sha256 hex.
    pub blobs: HashMap<String, Vec<u8>>,
    /// Wanted paths whose bytes did not match the expected sha256 (or were too big).
    pub rejected: usize,
}

/// Reads the tarball stream and keeps the wanted files: `wanted` maps a path inside the commit
/// to the sha256 hex its bytes must have. Files over `max_file` bytes are skipped, and reading
/// stops with an error once more than `max_total` bytes were kept.
pub fn extract(gz: impl Read, wanted: &HashMap<String, String>, max_file: u64, max_total: u64) -> Result<Extracted, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    let mut out = Extracted::default();
    let mut total = 0u64;
    let entries = archive.entries().map_err(|e| format!("not a tar.gz archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("damaged tar.gz archive: {e}"))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = match entry.path() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(_) => continue,
        };
        // Strip the top folder (`owner-repo-sha/`).
        let Some((_, inner)) = path.split_once('/') else { continue };
        let Some(expected) = wanted.get(inner) else { continue };
        if out.blobs.contains_key(expected) {
            continue;
        }
        let size = entry.header().size().unwrap_or(u64::MAX);
        if size > max_file {
            out.rejected += 1;
            continue;
        }
        if total + size > max_total {
            return Err(format!("the tarball holds more than {max_total} bytes of wanted files"));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        (&mut entry).take(max_file + 1).read_to_end(&mut bytes).map_err(|e| format!("damaged tar.gz archive: {e}"))?;
        if hex::encode(Sha256::digest(&bytes)) != *expected {
            out.rejected += 1;
            continue;
        }
        total += bytes.len() as u64;
        out.blobs.insert(expected.clone(), bytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append_data(&mut h, format!("o-r-abc1234/{path}"), *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    fn sha(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    #[test]
    fn keeps_only_wanted_files_with_the_right_hash() {
        let gz = tarball(&[("config/a.json", b"{}"), ("config/b.json", b"[1]"), ("state/x", b"x")]);
        let wanted: HashMap<String, String> = [
            ("config/a.json".to_string(), sha(b"{}")),
            ("state/x".to_string(), sha(b"not x")),
            ("missing".to_string(), sha(b"m")),
        ]
        .into();
        let out = extract(&gz[..], &wanted, 1 << 20, 1 << 20).unwrap();
        assert_eq!(out.blobs.len(), 1);
        assert_eq!(out.blobs[&sha(b"{}")], b"{}");
        assert_eq!(out.rejected, 1);
    }

    #[test]
    fn links_and_folders_at_wanted_paths_are_never_taken() {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "o-r-abc1234/config/agents/x.md", "../../.ssh/id_rsa").unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, "o-r-abc1234/config/sub/", &b""[..]).unwrap();
        let gz = b.into_inner().unwrap().finish().unwrap();
        // Wanted with the hash of the link target (what a blob read of a link returns).
        let wanted: HashMap<String, String> =
            [("config/agents/x.md".to_string(), sha(b"../../.ssh/id_rsa")), ("config/sub".to_string(), sha(b""))].into();
        let out = extract(&gz[..], &wanted, 1 << 20, 1 << 20).unwrap();
        assert!(out.blobs.is_empty());
    }

    #[test]
    fn size_limits_and_garbage() {
        let big = vec![7u8; 5000];
        let gz = tarball(&[("a", &big), ("b", b"bb")]);
        let wanted: HashMap<String, String> = [("a".to_string(), sha(&big)), ("b".to_string(), sha(b"bb"))].into();
        let out = extract(&gz[..], &wanted, 100, 1 << 20).unwrap();
        assert_eq!((out.blobs.len(), out.rejected), (1, 1));
        assert!(extract(&gz[..], &wanted, 1 << 20, 100).is_err());
        assert!(extract(&b"not gzip"[..], &wanted, 100, 100).is_err());
    }
}
