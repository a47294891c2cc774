//! The sync engine: compares this machine's items with the remote's and decides, item by item,
//! what to push, pull, merge or delete. `plan` holds the pure decision rules; the driver that reads
//! sources, applies merges and strategies and commits to a remote builds on it.

pub mod conflicts;
pub mod fault;
pub mod intent;
pub mod overrides;
pub mod lock;
pub mod plan;
pub mod refusals;
pub mod run;
pub mod session;
pub mod state;
