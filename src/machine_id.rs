//! This machine's stable id: used in vector clocks and shown in status.
//!
//! `machineId` in the config wins; otherwise an id is generated once (`<hostname>-<6 hex>`) and kept in
//! oc-sync's state dir, so it survives restarts and hostname changes.

use std::path::Path;

use crate::config::valid_machine_id;
use crate::fsutil;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineId {
    pub id: String,
    /// Where it came from: "config", "state file" or "new".
    pub origin: &'static str,
}

/// Returns the configured id, else the stored one, creating and storing a new one if there is none.
pub fn get_or_create(configured: Option<&str>, file: &Path) -> std::io::Result<MachineId> {
    if let Some(id) = configured {
        return Ok(MachineId { id: id.to_string(), origin: "config" });
    }
    if let Some(id) = read(file)? {
        return Ok(MachineId { id, origin: "state file" });
    }
    let id = generate();
    if fsutil::create_new_atomic(file, format!("{id}\n").as_bytes())? {
        Ok(MachineId { id, origin: "new" })
    } else {
        // Another process created it first: use theirs.
        let id = read(file)?.ok_or_else(|| std::io::Error::other("machine id file vanished"))?;
        Ok(MachineId { id, origin: "state file" })
    }
}

/// Reads the stored id without creating one.
pub fn peek(configured: Option<&str>, file: &Path) -> Option<MachineId> {
    if let Some(id) = configured {
        return Some(MachineId { id: id.to_string(), origin: "config" });
    }
    read(file).ok().flatten().map(|id| MachineId { id, origin: "state file" })
}

fn read(file: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(file) {
        Ok(s) => {
            let id = s.trim().to_string();
            if valid_machine_id(&id) {
                Ok(Some(id))
            } else {
                Err(std::io::Error::other(format!(
                    "{} holds an invalid machine id {:?}; delete the file to get a new id, or set machineId in the config",
                    file.display(),
                    id
                )))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn generate() -> String {
    let host = gethostname::gethostname().to_string_lossy().to_lowercase();
    let mut host: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(40)
        .collect();
    if host.is_empty() {
        host = "machine".into();
    }
    let mut rnd = [0u8; 3];
    getrandom::fill(&mut rnd).expect("the OS random source failed");
    format!("{host}-{}", rnd.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_stable() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("state").join("machine-id");
        assert!(peek(None, &f).is_none());
        let a = get_or_create(None, &f).unwrap();
        assert_eq!(a.origin, "new");
        assert!(valid_machine_id(&a.id), "{}", a.id);
        let b = get_or_create(None, &f).unwrap();
        assert_eq!((b.id.as_str(), b.origin), (a.id.as_str(), "state file"));
        assert_eq!(peek(None, &f).unwrap().id, a.id);
    }

    #[test]
    fn configured_id_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("machine-id");
        let m = get_or_create(Some("work-laptop"), &f).unwrap();
        assert_eq!((m.id.as_str(), m.origin), ("work-laptop", "config"));
        assert!(!f.exists(), "a configured id is not written to the state file");
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("machine-id");
        std::fs::write(&f, "not valid!\n").unwrap();
        let e = get_or_create(None, &f).unwrap_err().to_string();
        assert!(e.contains("invalid machine id") && e.contains("delete the file"), "{e}");
    }
}
