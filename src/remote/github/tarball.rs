//! Bulk download: the files of one commit from GitHub's tarball (`GET /repos/o/r/tarball/{sha}`,
//! a redirect to a gzip'd tar whose paths all sit under one top folder `owner-repo-sha/`), so a
//! first pull of thousands of items is a handful of requests instead of one per file.
//!
//! The archive is read as a stream (the caller saved the download to a temporary file, never to
//! memory). Only regular files whose path (below the top folder) the caller wants are handed
//! over; links, folders, paths with `..` or a leading `/`, and paths nobody asked for are
//! skipped. Nothing from the archive names a place on disk: the caller checks each file's git
//! blob id and content and stores it by its hash.

use std::collections::HashMap;
use std::io::Read;

/// Walks the archive: for each regular file whose inner path is a key of `wanted` (path → git
/// blob id its bytes must have) and at most `max_file` bytes, calls `take(path, blob id, size,
/// reader)`. A `take` error skips that file (counted as rejected); a damaged archive is an error.
/// Returns how many wanted files were rejected.
pub fn walk(
    gz: impl Read,
    wanted: &HashMap<String, String>,
    max_file: u64,
    mut take: impl FnMut(&str, &str, u64, &mut dyn Read) -> Result<(), String>,
) -> Result<usize, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    let mut rejected = 0usize;
    let mut seen = std::collections::HashSet::new();
    let entries = archive.entries().map_err(|e| format!("not a tar.gz archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("damaged tar.gz archive: {e}"))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = match std::str::from_utf8(&entry.path_bytes()) {
            Ok(p) => p.to_owned(),
            Err(_) => continue,
        };
        // Strip the top folder (`owner-repo-sha/`).
        let Some((_, inner)) = path.split_once('/') else { continue };
        if inner.starts_with('/') || inner.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            continue;
        }
        let Some(oid) = wanted.get(inner) else { continue };
        if !seen.insert(inner.to_owned()) {
            continue;
        }
        let size = entry.header().size().unwrap_or(u64::MAX);
        if size > max_file {
            rejected += 1;
            continue;
        }
        let mut limited = (&mut entry).take(size);
        if let Err(e) = take(inner, oid, size, &mut limited) {
            tracing::debug!("tarball entry {inner:?}: {e}");
            rejected += 1;
        }
        // Whatever `take` left unread is skipped by the archive reader.
    }
    Ok(rejected)
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

    fn collect(gz: &[u8], wanted: &HashMap<String, String>, max: u64) -> (Vec<(String, Vec<u8>)>, usize) {
        let mut got = Vec::new();
        let rejected = walk(gz, wanted, max, |p, _, _, r| {
            let mut b = Vec::new();
            r.read_to_end(&mut b).map_err(|e| e.to_string())?;
            if b == b"bad" {
                return Err("bad".into());
            }
            got.push((p.to_owned(), b));
            Ok(())
        })
        .unwrap();
        (got, rejected)
    }

    #[test]
    fn hands_over_only_wanted_regular_files() {
        let gz = tarball(&[("config/a.json", b"{}"), ("config/b.json", b"[1]"), ("state/x", b"bad")]);
        let wanted: HashMap<String, String> =
            [("config/a.json".to_string(), "o1".to_string()), ("state/x".to_string(), "o2".to_string())].into();
        let (got, rejected) = collect(&gz, &wanted, 1 << 20);
        assert_eq!(got, vec![("config/a.json".to_string(), b"{}".to_vec())]);
        assert_eq!(rejected, 1);
    }

    #[test]
    fn links_folders_and_escaping_paths_are_never_handed_over() {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "o-r-abc1234/config/agents/x.md", "../../.ssh/id_rsa").unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, "o-r-abc1234/config/sub/", &b""[..]).unwrap();
        // Raw names with `..` and a leading slash (the tar crate's safe setters refuse them).
        for name in ["o-r-abc1234/config/../../etc/x", "o-r-abc1234//etc/passwd"] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(1);
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
        }
        let gz = b.into_inner().unwrap().finish().unwrap();
        let wanted: HashMap<String, String> = [
            ("config/agents/x.md".to_string(), "o".to_string()),
            ("config/sub".to_string(), "o".to_string()),
            ("config/../../etc/x".to_string(), "o".to_string()),
            ("/etc/passwd".to_string(), "o".to_string()),
        ]
        .into();
        let (got, rejected) = collect(&gz, &wanted, 1 << 20);
        assert!(got.is_empty(), "{got:?}");
        assert_eq!(rejected, 0);
    }

    #[test]
    fn size_limits_and_garbage() {
        let big = vec![7u8; 5000];
        let gz = tarball(&[("a", &big), ("b", b"bb")]);
        let wanted: HashMap<String, String> = [("a".to_string(), "o".to_string()), ("b".to_string(), "o".to_string())].into();
        let (got, rejected) = collect(&gz, &wanted, 100);
        assert_eq!((got.len(), rejected), (1, 1));
        assert!(walk(&b"not gzip"[..], &wanted, 100, |_, _, _, _| Ok(())).is_err());
    }
}
