//! One sync at a time per machine: an exclusive OS file lock on `<state dir>/sync.lock`, shared by
//! the CLI and the plugin. The OS releases it if the process dies, so a crash never leaves it stuck.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

use fs2::FileExt;

pub struct SyncLock {
    file: File,
}

impl SyncLock {
    /// Waits up to `timeout` for the lock.
    pub fn acquire(path: &Path, timeout: Duration) -> std::io::Result<SyncLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?;
        let start = Instant::now();
        loop {
            match file.try_lock_exclusive() {
                Ok(()) => return Ok(SyncLock { file }),
                Err(_) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::WouldBlock,
                        format!(
                            "another oc-sync sync is running on this machine (lock {}); wait for it to finish and retry",
                            path.display()
                        ),
                    ));
                }
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
        assert!(e.to_string().contains("another oc-sync sync is running"), "{e}");
        drop(a);
        assert!(SyncLock::acquire(&p, Duration::from_millis(100)).is_ok());
    }
}
