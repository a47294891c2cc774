//! The sync engine: compares this machine's items with the remote's and decides, item by item,
//! what to push, pull, merge or delete.
//!
//! - [`plan`] holds the pure decision rules; [`run`] is the driver ([`Syncer`]) that reads the
//!   sources, applies merges and strategies and commits to the remote, with the commit journal
//!   ([`intent`]) that makes a sync killed at any step lose nothing;
//! - [`state`] keeps the base version of every item; [`conflicts`] the copies of every conflict;
//! - [`this_machine`] runs one sync of this machine ([`sync_now`]) from the config: the lock
//!   ([`lock`]), the sources ([`sources`], with the per-machine [`overrides`]), the [`codec`]s;
//! - [`resolve`] settles a waiting conflict; [`pending`] counts local changes for `status`.

pub mod codec;
pub mod conflicts;
pub mod error;
pub mod failure;
pub mod intent;
pub mod lock;
pub mod overrides;
pub mod pending;
pub mod plan;
pub mod progress;
pub mod refusals;
pub mod resolve;
pub mod run;
pub mod sources;
pub mod state;
pub mod this_machine;
pub mod upgrade;

pub use error::{Result, SyncError};
pub use run::{SyncOptions, SyncReport, Syncer};
pub use progress::{Phase, Progress, Tracker};
pub use sources::Scope;
pub use this_machine::{sync_now, Hooks};
