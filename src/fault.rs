//! Named steps of a sync where tests make it fail, to check that a sync killed (or cut off) at any
//! step loses nothing. Two ways in, both for tests only:
//!
//! - in-process: [`inject`] installs a hook on the current thread that decides, step by step,
//!   whether the sync fails there (as if the process died: nothing after that step runs);
//! - a real process: `OC_SYNC_TEST_PAUSE_AT=<step>` makes the process that reaches `<step>`
//!   create the file named by `OC_SYNC_TEST_PAUSE_MARK` and wait there (a test then kills it with
//!   SIGKILL); it aborts by itself after two minutes so a forgotten process never lingers.
//!
//! Without a hook or the variable every step is a no-op.

use std::cell::RefCell;

use std::time::Duration;


/// The steps, in the order a sync reaches them.
pub const BEFORE_COMMIT: &str = "before-commit";
/// Folder remote: the new snapshot is written, HEAD not moved yet (GitHub: the commit object
/// exists, the ref not moved; the fake's faults cover that one).
pub const REF_UPDATE: &str = "ref-update";
pub const AFTER_COMMIT: &str = "after-commit";
/// Git remote: the new commit is in the local mirror (its ref moved), `git push` not run yet. Not
/// in [`ALL_STEPS`]: only a git remote reaches it.
pub const GIT_PUSH: &str = "git-push";
/// After each local write (the first hit is "in the middle of the local writes").
pub const LOCAL_WRITE: &str = "local-write";
/// Inside the database transaction of a session write, before it commits.
pub const DB_IMPORT: &str = "db-import";
pub const BEFORE_STATE_SAVE: &str = "before-state-save";

pub const ALL_STEPS: &[&str] = &[BEFORE_COMMIT, REF_UPDATE, AFTER_COMMIT, LOCAL_WRITE, DB_IMPORT, BEFORE_STATE_SAVE];

type Hook = Box<dyn FnMut(&str) -> bool>;

thread_local! {
    static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

/// A sync step failed on purpose (tests only).
#[derive(Debug, Clone, thiserror::Error)]
#[error("test fault injected at sync step {0}")]
pub struct Injected(pub &'static str);

/// Removes the hook when dropped.
pub struct HookGuard(());

impl Drop for HookGuard {
    fn drop(&mut self) {
        HOOK.with(|h| h.borrow_mut().take());
    }
}

/// Installs `hook` on this thread: called at every step, it returns true to fail there.
pub fn inject(hook: impl FnMut(&str) -> bool + 'static) -> HookGuard {
    HOOK.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
    HookGuard(())
}

/// Marks that the sync reached `step`; fails when a test asked for it.
pub fn step(step: &'static str) -> Result<(), Injected> {
    pause_if_asked(step);
    let fail = HOOK.with(|h| h.borrow_mut().as_mut().is_some_and(|f| f(step)));
    if fail { Err(Injected(step)) } else { Ok(()) }
}

fn pause_if_asked(step: &str) {
    let Some(at) = std::env::var_os("OC_SYNC_TEST_PAUSE_AT") else { return };
    if at.to_str() != Some(step) {
        return;
    }
    if let Some(mark) = std::env::var_os("OC_SYNC_TEST_PAUSE_MARK") {
        let _ = std::fs::write(mark, step);
    }
    std::thread::sleep(Duration::from_secs(120));
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_fails_the_steps_it_chooses_and_goes_away() {
        assert!(step(AFTER_COMMIT).is_ok());
        {
            let _g = inject(|s| s == AFTER_COMMIT);
            assert!(step(BEFORE_COMMIT).is_ok());
            assert_eq!(step(AFTER_COMMIT).unwrap_err().to_string(), "test fault injected at sync step after-commit");
        }
        assert!(step(AFTER_COMMIT).is_ok());
    }
}
