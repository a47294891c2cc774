//! Reading format 2 from GitHub: the tree index (see [`crate::remote::tree_index`]) follows the
//! branch by what changed. From the commit the index describes to a new one: one `compare` naming
//! the changed files, then only those files, each fetched raw (`Accept:
//! application/vnd.github.raw+json`, no base64) and checked (its git blob id, then its header and
//! content against its key). Without a usable compare: the tree listing (one request), then the
//! files whose blob id the index lacks; more than a few come from one streamed tarball instead.
//!
//! Item contents read along the way are kept for [`crate::remote::Remote::blob`]: small ones in a
//! bounded memory cache, bigger ones in a disk cache (files named by their sha256), so the pull
//! that follows costs no request for them.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{Read, Seek, Write};
use std::path::Path;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::compare::Changed;
use super::{GithubRemote, TARBALL_MIN_BLOBS, tarball, valid_oid};
use crate::remote::envelope::{self, FORMAT_FILE, LEGACY_MANIFEST, MAGIC, MAX_HEADER_BYTES, is_own_path};
use crate::remote::tree_index::TreeIndex;
use crate::remote::{Entry, RemoteError, Version, sha256_hex, truncate};

/// Item contents up to this size are kept in memory after a read; bigger ones on disk.
pub const SMALL_ITEM: usize = 256 << 10;
/// Most bytes the memory cache holds.
const MEM_CACHE_BYTES: usize = 32 << 20;

/// The git blob id (sha1 hex) of `bytes`: sha1 of `"blob <len>\0"` followed by the bytes.
pub fn git_blob_sha(bytes: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex::encode(h.finalize())
}

/// Whether a tree path can hold an item: outside `.oc-sync/` and inside a folder (every item key
/// starts with its category's folder; a file at the root, like the README GitHub creates, is a
/// person's and ignored).
pub fn is_item_path(path: &str) -> bool {
    !is_own_path(path) && path.contains('/')
}

/// What the remote knows about the commit its tree index describes.
pub(super) struct State {
    pub ix: TreeIndex,
    /// Root tree id of `ix.version`.
    pub tree_sha: Option<String>,
    /// Files under `.oc-sync/` → blob id.
    pub own_files: BTreeMap<String, String>,
    /// Entries that are not plain files → what they are.
    pub not_files: BTreeMap<String, String>,
    /// The branch head as last seen (by `head`, a commit or a conflict).
    pub last_head: Option<Option<Version>>,
}

impl Default for State {
    fn default() -> Self {
        State {
            ix: TreeIndex::new(),
            tree_sha: None,
            own_files: BTreeMap::new(),
            not_files: BTreeMap::new(),
            last_head: None,
        }
    }
}

/// Recently read small item contents, by sha256, bounded in bytes.
#[derive(Default)]
pub(super) struct MemCache {
    map: HashMap<String, Vec<u8>>,
    order: VecDeque<String>,
    bytes: usize,
}

impl MemCache {
    pub fn get(&self, hash: &str) -> Option<Vec<u8>> {
        self.map.get(hash).cloned()
    }

    pub fn put(&mut self, hash: &str, bytes: Vec<u8>) {
        if bytes.len() > SMALL_ITEM || self.map.contains_key(hash) {
            return;
        }
        self.bytes += bytes.len();
        self.map.insert(hash.to_owned(), bytes);
        self.order.push_back(hash.to_owned());
        while self.bytes > MEM_CACHE_BYTES {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(b) = self.map.remove(&old) {
                self.bytes -= b.len();
            }
        }
    }
}

/// The tree of one commit, split into plain files and the rest.
pub(super) struct Listing {
    pub tree_sha: String,
    /// Plain files (mode 100644/100755) → blob id.
    pub files: HashMap<String, String>,
    /// Blob sizes, when the listing gave them.
    pub sizes: HashMap<String, u64>,
    /// Entries that are not plain files (symbolic links, submodules) → what they are.
    pub not_files: BTreeMap<String, String>,
}

/// An item file read from a tarball entry.
struct Ingested {
    entry: Entry,
    parts: Option<u32>,
    /// The content when small (else it went to the disk cache; none for tombstones and parts).
    small: Option<Vec<u8>>,
}

/// Reads one item file of `size` bytes from `r` without holding a big one in memory: the header
/// is decoded and checked for `key`, the content goes to memory (small) or to `dir/<sha256>`
/// (checked against the header's hash before it gets that name), and the whole file must have the
/// git blob id `oid`.
fn ingest_item(key: &str, oid: &str, size: u64, r: &mut dyn Read, dir: &Path) -> Result<Ingested, String> {
    let io = |e: std::io::Error| format!("cannot read {key:?} from the tarball: {e}");
    let mut git = Sha1::new();
    git.update(format!("blob {size}\0").as_bytes());
    let head_cap = ((MAGIC.len() + MAX_HEADER_BYTES + 1) as u64).min(size) as usize;
    let mut head = Vec::with_capacity(head_cap.min(64 << 10));
    let mut buf = vec![0u8; 64 << 10];
    while head.len() < head_cap && !head.get(MAGIC.len()..).is_some_and(|h| h.contains(&b'\n')) {
        let want = (head_cap - head.len()).min(buf.len());
        let n = r.read(&mut buf[..want]).map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let (entry, parts, start) = envelope::decode_header(key, &head, size)?;
    git.update(&head);
    let mut content = Sha256::new();
    content.update(&head[start..]);
    let body_len = size - start as u64;
    let mut read = head.len() as u64;
    let whole = entry.hash.is_some() && parts.is_none();
    let mut small: Option<Vec<u8>> = None;
    let mut temp: Option<tempfile::NamedTempFile> = None;
    if whole && body_len as usize <= SMALL_ITEM {
        small = Some(head[start..].to_vec());
    } else if whole {
        let mut t = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        t.write_all(&head[start..]).map_err(io)?;
        temp = Some(t);
    }
    drop(head);
    loop {
        let n = r.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        git.update(&buf[..n]);
        content.update(&buf[..n]);
        if let Some(s) = &mut small {
            s.extend_from_slice(&buf[..n]);
        } else if let Some(t) = &mut temp {
            t.write_all(&buf[..n]).map_err(io)?;
        }
    }
    if read != size {
        return Err(format!("{key:?}: the tarball entry ends after {read} of {size} bytes"));
    }
    let actual = hex::encode(git.finalize());
    if actual != oid {
        return Err(format!("{key:?}: the tarball's file has git blob id {actual}, the tree says {oid}"));
    }
    if let (Some(hash), true) = (&entry.hash, whole) {
        let got = hex::encode(content.finalize());
        if &got != hash {
            return Err(format!("{key:?}: content hashes to {got}, header says {hash}"));
        }
        if let Some(t) = temp {
            t.persist(dir.join(hash)).map_err(|e| io(e.error))?;
        }
    }
    Ok(Ingested { entry, parts, small })
}

impl GithubRemote {
    /// Most bytes one item file may have (its content plus its header line).
    fn item_file_cap(&self) -> u64 {
        self.limits.max_blob_bytes.saturating_add(MAX_HEADER_BYTES as u64 + 4096)
    }

    /// Brings the tree index to commit `at` of a format-2 branch. Fails with
    /// [`RemoteError::NeedsUpgrade`] on a format-1 branch, [`RemoteError::UnsupportedFormat`] on a
    /// newer format, [`RemoteError::Corrupt`] on anything unsafe; the index is then not moved.
    pub(super) fn sync_index(&self, at: &Version) -> Result<(), RemoteError> {
        if !valid_oid(&at.0) {
            return Err(RemoteError::Corrupt(format!(
                "version {:?} of {} is not a commit id",
                truncate(&at.0, 80),
                self.describe_repo()
            )));
        }
        let base = {
            let s = self.state();
            if s.ix.version.as_ref() == Some(at) {
                return Ok(());
            }
            s.ix.version.clone().filter(|_| s.tree_sha.is_some())
        };
        let mut done = false;
        if let Some(base) = base {
            done = self.index_by_compare(&base, at)?;
        }
        if !done {
            self.index_by_listing(at)?;
        }
        self.save_index();
        Ok(())
    }

    /// Moves the index from `base` to `at` by GitHub's compare. False when the compare cannot
    /// be used (or a changed file needs the tree listing to tell what it is).
    fn index_by_compare(&self, base: &Version, at: &Version) -> Result<bool, RemoteError> {
        let Some(delta) = self.compare(base, at)? else { return Ok(false) };
        let mut items = Vec::new();
        for c in &delta.changes {
            match c {
                Changed::Removed(p) if p == FORMAT_FILE => return Ok(false),
                Changed::Set(p, sha) if p == FORMAT_FILE => self.check_format_blob(sha)?,
                Changed::Set(p, sha) if is_item_path(p) => items.push((p.clone(), sha.clone())),
                _ => {}
            }
        }
        if !self.fetch_items(at, &items, false, None)? {
            return Ok(false);
        }
        let mut s = self.state();
        for c in delta.changes {
            match c {
                Changed::Removed(p) if is_own_path(&p) => {
                    s.own_files.remove(&p);
                }
                Changed::Removed(p) => {
                    s.ix.remove(&p);
                    s.not_files.remove(&p);
                }
                Changed::Set(p, sha) if is_own_path(&p) => {
                    s.not_files.remove(&p);
                    s.own_files.insert(p, sha);
                }
                Changed::Set(p, _) => {
                    s.not_files.remove(&p);
                }
            }
        }
        s.tree_sha = Some(delta.tree_sha);
        s.ix.version = Some(at.clone());
        Ok(true)
    }

    /// Rebuilds the index for `at` from the tree listing, reading only the item files whose blob
    /// id the index lacks.
    fn index_by_listing(&self, at: &Version) -> Result<(), RemoteError> {
        let l = self.list_tree(&at.0)?;
        match l.files.get(FORMAT_FILE) {
            Some(sha) => self.check_format_blob(sha)?,
            None if l.files.contains_key(LEGACY_MANIFEST) || l.not_files.contains_key(LEGACY_MANIFEST) => {
                return Err(RemoteError::NeedsUpgrade);
            }
            None if l.files.keys().any(|p| is_item_path(p)) => {
                return Err(RemoteError::Corrupt(format!(
                    "commit {at} of {} holds files in folders but no {FORMAT_FILE}: it is not an oc-sync \
                     repository, or a damaged one",
                    self.describe_repo()
                )));
            }
            // Nothing of oc-sync's yet (a new repository with its README).
            None => {}
        }
        let items: Vec<(String, String)> =
            l.files.iter().filter(|(p, _)| is_item_path(p)).map(|(p, s)| (p.clone(), s.clone())).collect();
        let total: u64 = l.sizes.values().sum();
        self.fetch_items(at, &items, true, Some(total))?;
        let mut s = self.state();
        let gone: Vec<String> = s.ix.items.keys().filter(|k| !l.files.contains_key(*k)).cloned().collect();
        for k in gone {
            s.ix.remove(&k);
        }
        s.own_files = l.files.into_iter().filter(|(p, _)| is_own_path(p)).collect();
        s.not_files = l.not_files;
        s.tree_sha = Some(l.tree_sha);
        s.ix.version = Some(at.clone());
        Ok(())
    }

    /// Checks the format file (blob `sha`): "2\n" (known without a request when its blob id is
    /// that of "2\n"), else the format it names is refused.
    fn check_format_blob(&self, sha: &str) -> Result<(), RemoteError> {
        if sha == git_blob_sha(envelope::format_file_content()) {
            return Ok(());
        }
        let bytes = self.get_raw_checked(sha, 64, FORMAT_FILE)?;
        let text = String::from_utf8_lossy(&bytes);
        match text.trim().parse::<u32>() {
            Ok(2) => Ok(()),
            Ok(1) => Err(RemoteError::NeedsUpgrade),
            Ok(n) if n > 2 => Err(RemoteError::UnsupportedFormat { found: n, supported: envelope::FORMAT }),
            _ => Err(RemoteError::Corrupt(format!(
                "{FORMAT_FILE} in {} holds {:?}, not a repository format",
                self.describe_repo(),
                truncate(&text, 40)
            ))),
        }
    }

    /// `GET git/blobs/{sha}` raw, checked: at most `cap` bytes, and the bytes' git blob id must be
    /// `sha`. `what` names the file for messages.
    pub(super) fn get_raw_checked(&self, sha: &str, cap: u64, what: &str) -> Result<Vec<u8>, RemoteError> {
        match self.get_raw(sha, cap, what)? {
            Ok(b) => Ok(b),
            Err(r) => Err(self.http_error(&format!("read {what}"), &r)),
        }
    }

    /// Raw blob read: the bytes (their git blob id checked against `sha`), or GitHub's answer.
    fn get_raw(&self, sha: &str, cap: u64, what: &str) -> Result<Result<Vec<u8>, super::http::Resp>, RemoteError> {
        if !valid_oid(sha) {
            return Err(RemoteError::Corrupt(format!(
                "{what} in {} names {:?}, not a blob id",
                self.name(),
                truncate(sha, 80)
            )));
        }
        let bytes = match self.http.get_raw(&format!("{}/git/blobs/{sha}", self.repo_path()), cap)? {
            Ok(b) => b,
            Err(r) => return Ok(Err(r)),
        };
        let actual = git_blob_sha(&bytes);
        if actual != sha {
            return Err(RemoteError::Corrupt(format!(
                "GitHub answered blob {sha} ({what}) of {} with bytes whose git blob id is {actual}",
                self.name()
            )));
        }
        Ok(Ok(bytes))
    }

    /// Reads the item files `items` (path → blob id) of commit `at` that the index does not hold
    /// with that blob id, into the index. Strict: a file that is not an item file is an error;
    /// else such a file returns false (the caller lists the tree to learn what it is).
    /// `total`: the listed bytes of the whole commit (for the tarball's size limit), if known.
    fn fetch_items(&self, at: &Version, items: &[(String, String)], strict: bool, total: Option<u64>) -> Result<bool, RemoteError> {
        for (p, _) in items {
            envelope::key_of_path(p)
                .map_err(|m| RemoteError::Corrupt(format!("commit {at} of {}: {m}", self.describe_repo())))?;
        }
        let mut need: Vec<(String, String)> = {
            let s = self.state();
            items.iter().filter(|(p, o)| s.ix.items.get(p).is_none_or(|i| &i.oid != o)).cloned().collect()
        };
        if need.len() >= TARBALL_MIN_BLOBS {
            let cap = total.unwrap_or(self.limits.max_blob_bytes.saturating_mul(4)).saturating_mul(2).saturating_add(16 << 20);
            need = self.ingest_tarball(at, need, cap)?;
            // What the tarball did not hold as a regular item file (a link, a submodule...): the
            // tree listing says what it is before anything is read one by one.
            if !strict && !need.is_empty() {
                return Ok(false);
            }
        }
        for (p, oid) in need {
            let bytes = match self.get_raw(&oid, self.item_file_cap(), &p)? {
                Ok(b) => b,
                Err(r) if !strict && matches!(r.status, 404 | 422) => return Ok(false),
                Err(r) => return Err(self.http_error(&format!("read {p}"), &r)),
            };
            let kept = {
                let mut s = self.state();
                match s.ix.put_file(&p, &oid, &bytes) {
                    Ok(d) => match (&d.entry.hash, d.parts) {
                        (Some(h), None) => Some((h.clone(), bytes.len() - d.content.len())),
                        _ => None,
                    },
                    Err(_) if !strict => return Ok(false),
                    Err(e) => {
                        return Err(match e {
                            RemoteError::Corrupt(m) => {
                                RemoteError::Corrupt(format!("commit {at} of {}: {m}", self.describe_repo()))
                            }
                            e => e,
                        });
                    }
                }
            };
            if let Some((hash, start)) = kept {
                let mut bytes = bytes;
                bytes.drain(..start);
                self.keep(&hash, bytes);
            }
        }
        Ok(true)
    }

    /// Keeps an item's checked content for `blob`: in memory when small, else on disk.
    pub(super) fn keep(&self, hash: &str, bytes: Vec<u8>) {
        if bytes.len() <= SMALL_ITEM {
            self.mem().put(hash, bytes);
        } else {
            self.keep_on_disk(hash, &bytes);
        }
    }

    /// Keeps an item's checked content in the disk cache (bulk reads: memory stays bounded
    /// whatever the number of items, and none is read twice).
    pub(super) fn keep_on_disk(&self, hash: &str, bytes: &[u8]) {
        if let Err(e) = self.blob_dir().and_then(|d| {
            crate::fsutil::atomic_write(&d.join(hash), bytes, Some(0o600)).map_err(|e| RemoteError::io("cannot keep a blob", e))
        }) {
            tracing::debug!("cannot keep blob {hash} on disk: {e}");
        }
    }

    /// Downloads the tarball of `at` (to a temporary file: never whole in memory) and reads the
    /// wanted item files from it into the index. Returns those it did not deliver.
    fn ingest_tarball(&self, at: &Version, wanted: Vec<(String, String)>, cap: u64) -> Result<Vec<(String, String)>, RemoteError> {
        self.clear_disk_cache();
        let mut tmp = tempfile::tempfile_in(self.blob_dir()?)
            .map_err(|e| RemoteError::io(format!("cannot create a temporary file in {}", self.blob_dir.display()), e))?;
        match self.http.get_to_file(&format!("{}/tarball/{}", self.repo_path(), at.0), cap, &mut tmp) {
            Ok(None) => {}
            Ok(Some(r)) => {
                tracing::info!("bulk download of {at} from {} failed (HTTP {}); reading files one by one", self.name(), r.status);
                return Ok(wanted);
            }
            Err(RemoteError::Corrupt(m)) => {
                tracing::info!("bulk download of {at} from {}: {m}; reading files one by one", self.name());
                return Ok(wanted);
            }
            Err(e) => return Err(e),
        }
        tmp.seek(std::io::SeekFrom::Start(0)).map_err(|e| RemoteError::io("cannot read the downloaded tarball", e))?;
        let map: HashMap<String, String> = wanted.iter().cloned().collect();
        let mut done: HashSet<String> = HashSet::new();
        let result = tarball::walk(std::io::BufReader::new(tmp), &map, self.item_file_cap(), |path, oid, size, r| {
            let ing = ingest_item(path, oid, size, r, &self.blob_dir)?;
            let hash = ing.entry.hash.clone();
            self.state().ix.put(path, oid, ing.entry, ing.parts);
            if let (Some(h), Some(b)) = (hash, ing.small) {
                self.keep_on_disk(&h, &b);
            }
            done.insert(path.to_owned());
            Ok(())
        });
        match result {
            Ok(rejected) => tracing::info!("bulk download of {at}: {} files ({rejected} refused)", done.len()),
            Err(e) => tracing::info!("bulk download of {at} from {}: {e}; reading the rest one by one", self.name()),
        }
        Ok(wanted.into_iter().filter(|(p, _)| !done.contains(p)).collect())
    }

    /// The bytes of the item content `hash` of the indexed snapshot: memory cache, disk cache,
    /// then the item's file (or its parts) read raw and checked.
    pub(super) fn read_blob(&self, hash: &str) -> Result<Vec<u8>, RemoteError> {
        if let Some(b) = self.mem().get(hash) {
            return Ok(b);
        }
        if let Some(b) = self.from_disk(hash) {
            return Ok(b);
        }
        let found = {
            let s = self.state();
            s.ix.find_hash(hash).map(|(k, ix)| {
                let parts: Option<Vec<Option<String>>> = ix
                    .parts
                    .map(|n| (0..n).map(|i| s.own_files.get(&envelope::part_path(hash, i)).cloned()).collect());
                (k.to_owned(), ix.oid.clone(), parts)
            })
        };
        let Some((key, oid, parts)) = found else {
            return Err(RemoteError::Corrupt(format!(
                "blob {hash} is not held by any item of {} read so far (read the manifest first)",
                self.describe_repo()
            )));
        };
        if let Some(parts) = parts {
            return self.read_parts(hash, &parts);
        }
        let mut bytes = self.get_raw_checked(&oid, self.item_file_cap(), &key)?;
        let start = {
            let d = envelope::decode(&key, &bytes)
                .map_err(|m| RemoteError::Corrupt(format!("{}: {m}", self.describe_repo())))?;
            if d.entry.hash.as_deref() != Some(hash) || d.parts.is_some() {
                return Err(RemoteError::Corrupt(format!(
                    "{key} in {} no longer holds blob {hash}",
                    self.describe_repo()
                )));
            }
            bytes.len() - d.content.len()
        };
        bytes.drain(..start);
        Ok(bytes)
    }

    /// Joins the parts of an item stored in parts and checks the whole against `hash`.
    pub(super) fn read_parts(&self, hash: &str, parts: &[Option<String>]) -> Result<Vec<u8>, RemoteError> {
        let named = parts.iter().enumerate().map(|(i, sha)| (envelope::part_path(hash, i as u32), sha.as_deref()));
        self.join_parts(hash, named)
    }

    /// Reads the parts `(path, git blob id)` of the item whose bytes hash to `hash`, in order, each
    /// raw and checked against its id, and checks their concatenation against `hash`.
    pub(super) fn join_parts<'p>(&self, hash: &str, parts: impl Iterator<Item = (String, Option<&'p str>)>) -> Result<Vec<u8>, RemoteError> {
        let mut out = Vec::new();
        for (path, sha) in parts {
            let Some(sha) = sha else {
                return Err(RemoteError::Corrupt(format!("part {path} is missing from {}", self.describe_repo())));
            };
            let cap = self.limits.max_blob_bytes.saturating_sub(out.len() as u64);
            out.extend(self.get_raw_checked(sha, cap, &path)?);
        }
        let actual = sha256_hex(&out);
        if actual != hash {
            return Err(RemoteError::Corrupt(format!(
                "the parts of blob {hash} in {} join to content hashing to {actual}: a part is missing or altered",
                self.describe_repo()
            )));
        }
        Ok(out)
    }

    /// Empties the disk cache (contents an earlier bulk read kept that the engine never took).
    pub(super) fn clear_disk_cache(&self) {
        let Ok(dir) = std::fs::read_dir(&self.blob_dir) else { return };
        for e in dir.flatten() {
            let name = e.file_name();
            if name.to_str().is_some_and(|n| crate::remote::validate_hash(n).is_ok()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// A content from the disk cache (checked; the file is removed once read).
    pub(super) fn from_disk(&self, hash: &str) -> Option<Vec<u8>> {
        let path = self.blob_dir.join(hash);
        let bytes = std::fs::read(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        if sha256_hex(&bytes) != hash {
            return None;
        }
        // Asked again (the same content under two keys): from memory.
        if bytes.len() <= SMALL_ITEM {
            self.mem().put(hash, bytes.clone());
        }
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::VectorClock;

    fn file(bytes: &[u8]) -> Vec<u8> {
        let e = Entry {
            clock: VectorClock::new(),
            hash: Some(sha256_hex(bytes)),
            size: bytes.len() as u64,
            kind: "text".into(),
            category: "config".into(),
            modified_ms: 1,
            machine: "m".into(),
            deleted_ms: None,
        };
        envelope::encode(&e, Some(bytes))
    }

    #[test]
    fn a_tarball_file_is_checked_against_its_git_id_and_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![b'y'; SMALL_ITEM + 10];
        for content in [&b"small\n"[..], &big[..]] {
            let f = file(content);
            let oid = git_blob_sha(&f);
            let got = ingest_item("config/a.md", &oid, f.len() as u64, &mut &f[..], dir.path()).unwrap();
            let hash = sha256_hex(content);
            match got.small {
                Some(b) => assert_eq!(b, content),
                None => assert_eq!(std::fs::read(dir.path().join(&hash)).unwrap(), content),
            }
            // Bytes that are not the blob the tree names.
            let e = ingest_item("config/a.md", &git_blob_sha(b"other"), f.len() as u64, &mut &f[..], dir.path()).err().unwrap();
            assert!(e.contains("git blob id"), "{e}");
            // Content that does not match its header (with the altered file's own git id).
            let mut bad = f.clone();
            *bad.last_mut().unwrap() ^= 1;
            let e = ingest_item("config/a.md", &git_blob_sha(&bad), bad.len() as u64, &mut &bad[..], dir.path()).err().unwrap();
            assert!(e.contains("hashes to"), "{e}");
            // A key that is not a key.
            assert!(ingest_item("../a.md", &oid, f.len() as u64, &mut &f[..], dir.path()).is_err());
        }
        // Nothing but files named by a content hash was left in the directory.
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(crate::remote::validate_hash(&name).is_ok(), "{name}");
        }
    }
}
