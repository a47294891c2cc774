//! Safe local file writes: temp file in the same directory, fsync, rename over the target.
//! A crash leaves either the old or the new content, never a torn file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically. Keeps the existing file's permissions; a new file gets
/// `new_mode` (Unix) when given, else the process default.
pub fn atomic_write(path: &Path, bytes: &[u8], new_mode: Option<u32>) -> io::Result<()> {
    write_via_temp(path, bytes, new_mode, true)
}

/// [`atomic_write`] without its two fsyncs: still never a torn file, but the new file may not
/// survive a power cut until [`sync_written`] has run. For many small immutable files written in
/// one go (merge bases), made durable together before anything that names them is written.
pub fn atomic_write_unsynced(path: &Path, bytes: &[u8], new_mode: Option<u32>) -> io::Result<()> {
    write_via_temp(path, bytes, new_mode, false)
}

/// Makes files written with [`atomic_write_unsynced`] durable: on Linux one `syncfs` of the
/// file system holding them, elsewhere an fsync of each file and of its folder.
pub fn sync_written(paths: &[PathBuf]) -> io::Result<()> {
    let Some(first) = paths.first() else { return Ok(()) };
    #[cfg(target_os = "linux")]
    {
        let _ = first;
        use std::os::fd::AsRawFd;
        let f = File::open(first)?;
        // SAFETY: a plain syscall on a file descriptor we own for the duration of the call.
        if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
            return Ok(());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = first;
    for p in paths {
        File::open(p)?.sync_all()?;
        if let Some(dir) = p.parent() {
            sync_dir(dir);
        }
    }
    Ok(())
}

fn write_via_temp(path: &Path, bytes: &[u8], new_mode: Option<u32>, durable: bool) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let existing_perms = fs::metadata(path).ok().map(|m| m.permissions());
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = create_with_mode(&tmp, new_mode)?;
        f.write_all(bytes)?;
        if let Some(perms) = existing_perms {
            f.set_permissions(perms)?;
        }
        if durable {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)?;
        if durable {
            sync_dir(dir);
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes a file only the owner can read (0600): for anything holding a secret.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_write(path, bytes, Some(0o600))?;
    set_private(path)
}

/// Writes `value` as pretty JSON to a private file (0600, atomic): stored tokens and credentials.
pub fn save_private_json(path: &Path, value: &impl serde::Serialize) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    write_private(path, &bytes)
}

/// Removes a file; returns whether it existed.
pub fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates `path` with `bytes` only if it does not exist yet (atomically: two racing processes
/// cannot both create it). Returns false when it already existed.
pub fn create_new_atomic(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = temp_path(path);
    {
        let mut f = create_with_mode(&tmp, None)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(dir);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
pub fn set_private(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
pub fn set_private(_path: &Path) -> io::Result<()> {
    Ok(())
}

/// Temp files younger than this may belong to a write still under way (another oc-sync command):
/// left alone.
pub const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether `name` is one of oc-sync's own temp files: `.NAME.oc-sync-tmp-` and 12 hex digits.
pub fn is_temp_name(name: &str) -> bool {
    let Some((head, suffix)) = name.rsplit_once(".oc-sync-tmp-") else { return false };
    head.len() > 1 && head.starts_with('.') && suffix.len() == 12 && suffix.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Removes oc-sync's temp files directly in `dir` that an interrupted write left behind (regular
/// files older than [`STALE_TEMP_AGE`]; never anything else). Returns how many were removed.
/// Only call while holding the sync lock.
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        if !e.file_name().to_str().is_some_and(is_temp_name) {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(e.path()) else { continue };
        let old = meta.modified().ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age >= STALE_TEMP_AGE);
        if meta.is_file() && old && fs::remove_file(e.path()).is_ok() {
            tracing::info!("removed {}, left by an interrupted write", e.path().display());
            removed += 1;
        }
    }
    removed
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut rnd = [0u8; 6];
    let _ = getrandom::fill(&mut rnd);
    let suffix: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    path.with_file_name(format!(".{name}.oc-sync-tmp-{suffix}"))
}

fn create_with_mode(path: &Path, mode: Option<u32>) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if let Some(m) = mode {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(m);
    }
    #[cfg(not(unix))]
    let _ = mode;
    opts.open(path)
}

fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_keeps_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("a").join("f.json");
        atomic_write(&p, b"one", None).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
            atomic_write(&p, b"two", None).unwrap();
            assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
        }
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let leftovers: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("secret.json");
        write_private(&p, b"{}").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn only_old_oc_sync_temp_files_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let names = [".a.json.oc-sync-tmp-0123456789ab", ".b.oc-sync-tmp-0123456789ab", "a.json", ".a.json.oc-sync-tmp-xyz", "x.oc-sync-tmp-0123456789ab"];
        for n in names {
            fs::write(d.join(n), b"x").unwrap();
        }
        assert_eq!(remove_stale_temps(d), 0, "fresh temp files may belong to a write under way");
        let old = std::time::SystemTime::now() - STALE_TEMP_AGE - std::time::Duration::from_secs(1);
        for n in names {
            File::options().write(true).open(d.join(n)).unwrap().set_modified(old).unwrap();
        }
        assert_eq!(remove_stale_temps(d), 2);
        let mut left: Vec<String> = fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, [".a.json.oc-sync-tmp-xyz", "a.json", "x.oc-sync-tmp-0123456789ab"]);
        assert!(is_temp_name(temp_path(&d.join("f.json")).file_name().unwrap().to_str().unwrap()));
    }

    #[test]
    fn create_new_atomic_only_once() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("id");
        assert!(create_new_atomic(&p, b"first").unwrap());
        assert!(!create_new_atomic(&p, b"second").unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"first");
    }
}
