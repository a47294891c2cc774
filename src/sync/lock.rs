//! One sync at a time per machine: an exclusive OS file lock on `<state dir>/sync.lock`, shared by
//! the CLI and the plugin. The OS releases it if the process dies, so a crash never leaves it stuck.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

use fs2::FileExt;

use super::error::SyncError;

/// How long a sync waits for another sync on this machine (CLI vs plugin) to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(120);

pub struct SyncLock {
    file: File,
}

impl SyncLock {
    /// Waits up to `timeout` for the lock: [`SyncError::Busy`] when another sync keeps it longer.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<SyncLock, SyncError> {
        let open = || -> std::io::Result<File> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)
        };
        let file = open().map_err(|e| SyncError::local(format!("cannot open the sync lock {}", path.display()), e))?;
        let start = Instant::now();
        loop {
            match file.try_lock_exclusive() {
                Ok(()) => return Ok(SyncLock { file }),
                Err(_) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => return Err(SyncError::Busy(path.to_path_buf())),
            }
        }
    }
}

impl Drop for SyncLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_then_times_out() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sync.lock");
        let a = SyncLock::acquire(&p, Duration::from_secs(1)).unwrap();
        let e = SyncLock::acquire(&p, Duration::from_millis(100)).err().unwrap();
        assert!(matches!(e, SyncError::Busy(_)), "{e:?}");
        assert!(e.to_string().contains("another oc-sync sync is running"), "{e}");
        drop(a);
        assert!(SyncLock::acquire(&p, Duration::from_millis(100)).is_ok());
    }
}
