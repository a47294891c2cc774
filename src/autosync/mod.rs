//! Auto-sync: the background host that runs inside OpenCode (through the plugin). The [`engine`]
//! owns a thread and runtime; the [`scheduler`] decides when to sync (debounce, timer, retries,
//! hourly budget); [`watch`] turns file changes into triggers; [`commands`] answers the person's
//! slash commands and the agent's tools inside OpenCode.

pub mod commands;
pub mod engine;
pub mod scheduler;
pub mod watch;
