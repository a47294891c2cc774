//! Auto-sync: the background host that runs inside OpenCode (through the plugin). The [`engine`]
//! owns a thread and runtime; the [`scheduler`] decides when to sync (debounce, timer, retries,
//! hourly budget, remote poll); [`watch`] turns file changes into triggers; [`problem`] is what
//! stops syncing, shown once in OpenCode; the engine's `live` part re-reads the config and checks the remote between
//! syncs; [`commands`] answers the person's slash commands and the agent's tools inside OpenCode.

pub mod commands;
pub mod engine;
pub mod power;
pub mod problem;
pub mod scheduler;
pub mod watch;
