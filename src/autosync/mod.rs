//! Auto-sync: the background host that runs inside OpenCode (through the plugin). The [`engine`]
//! owns a thread and runtime; the [`scheduler`] decides when to sync (debounce, timer, retries,
//! hourly budget); [`watch`] turns file changes into triggers.

pub mod engine;
mod live;
pub mod problem;
pub mod scheduler;
pub mod watch;
