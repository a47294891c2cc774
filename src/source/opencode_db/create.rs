//! A machine where OpenCode is installed but has never run has no database yet. oc-sync never
//! creates OpenCode's schema itself: it has OpenCode create the database with its own migrations,
//! by running the `opencode` program with a harmless command that opens it (`opencode session
//! list`), and imports the sessions afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::paths::EnvSnapshot;

/// How long OpenCode may take to create its database. A first run offline can stall over a minute
/// in OpenCode's own dependency install before it opens the database.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(150);

/// What became of a missing database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// OpenCode (this program) created it.
    By(PathBuf),
    /// It still does not exist: why, and what the person can do.
    Waiting(String),
}

/// The `opencode` program: `$OC_SYNC_OPENCODE` when set, else the first `opencode` on `PATH`.
pub fn find_opencode(env: &EnvSnapshot) -> Option<PathBuf> {
    if let Some(p) = env.var("OC_SYNC_OPENCODE") {
        return Some(PathBuf::from(p));
    }
    let exe = if cfg!(windows) { "opencode.exe" } else { "opencode" };
    std::env::split_paths(env.var("PATH")?).map(|dir| dir.join(exe)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// Has OpenCode create the database at `db` (which does not exist): runs `opencode session list`
/// with this environment in the current directory (as if the person ran it there: OpenCode records
/// that folder's project, so pulled sessions of that project point at it), its output kept out of
/// the person's terminal.
pub fn have_opencode_create(db: &Path, env: &EnvSnapshot) -> Created {
    let Some(opencode) = find_opencode(env) else {
        return Created::Waiting(format!(
            "OpenCode's database {} does not exist yet and no `opencode` program was found on PATH: \
             install OpenCode (or run it once), then run `oc-sync sync` again",
            db.display()
        ));
    };
    match run(&opencode, env, CREATE_TIMEOUT) {
        Ok(()) if db.is_file() => Created::By(opencode),
        Ok(()) => Created::Waiting(format!(
            "`{} session list` ran but did not create OpenCode's database {}: run OpenCode once, then `oc-sync sync` again",
            opencode.display(),
            db.display()
        )),
        Err(why) => Created::Waiting(format!(
            "OpenCode's database {} does not exist yet and `{} session list` failed ({why}): run OpenCode once, then `oc-sync sync` again",
            db.display(),
            opencode.display()
        )),
    }
}

fn run(opencode: &Path, env: &EnvSnapshot, timeout: Duration) -> Result<(), String> {
    let mut cmd = Command::new(opencode);
    cmd.arg("session").arg("list").env_clear().envs(env.vars());
    match crate::child::run_within(&mut cmd, timeout) {
        Ok(Some(done)) if done.status.success() => Ok(()),
        Ok(Some(done)) => {
            let last = done.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
            Err(format!("{}{}{last}", done.status, if last.is_empty() { "" } else { ": " }))
        }
        Ok(None) => Err(format!("no answer within {} s", timeout.as_secs())),
        Err(e) => Err(format!("cannot start it: {e}")),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn script(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("opencode");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn opencode_on_path_creates_the_database() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let db = t.path().join("data/opencode.db");
        script(&bin, &format!("[ \"$1 $2\" = \"session list\" ] || exit 3\nmkdir -p {0} && : > {1}", db.parent().unwrap().display(), db.display()));
        let env = EnvSnapshot::new(t.path(), [("PATH", format!("/nonexistent:{}:/usr/bin:/bin", bin.display()))]);
        assert_eq!(find_opencode(&env), Some(bin.join("opencode")));
        assert_eq!(have_opencode_create(&db, &env), Created::By(bin.join("opencode")));
    }

    #[test]
    fn without_opencode_the_sessions_wait_and_say_why() {
        let t = tempfile::tempdir().unwrap();
        let env = EnvSnapshot::new(t.path(), [("PATH", "/nonexistent")]);
        let Created::Waiting(why) = have_opencode_create(&t.path().join("opencode.db"), &env) else { panic!() };
        assert!(why.contains("no `opencode` program was found on PATH"), "{why}");
    }

    #[test]
    fn a_failing_opencode_is_reported_with_its_last_line() {
        let t = tempfile::tempdir().unwrap();
        let oc = script(t.path(), "echo 'Error: something broke' >&2; exit 2");
        let env = EnvSnapshot::new(t.path(), [("OC_SYNC_OPENCODE", oc.display().to_string())]);
        let Created::Waiting(why) = have_opencode_create(&t.path().join("opencode.db"), &env) else { panic!() };
        assert!(why.contains("Error: something broke") && why.contains("failed"), "{why}");
    }
}
