//! oc-sync's logging: a daily-rotated log file of its own (7 files kept) and, inside OpenCode, a small
//! queue of notable records that the plugin shim forwards to `client.app.log`. Nothing is ever written
//! to stdout/stderr from here (that would corrupt OpenCode's TUI).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The prefix of log file names: `oc-sync.YYYY-MM-DD.log`.
pub const LOG_FILE_PREFIX: &str = "oc-sync";
const HOST_QUEUE_MAX: usize = 500;
const KEEP_FILES: usize = 7;

/// One record for the host (OpenCode) log.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogRecord {
    /// "error", "warn", "info" or "debug" (the levels `client.app.log` accepts).
    pub level: String,
    pub message: String,
}

static HOST_QUEUE: Mutex<VecDeque<LogRecord>> = Mutex::new(VecDeque::new());
static INIT: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Sets up logging once per process; later calls are no-ops and return the first call's directory.
/// Returns the directory logs go to (None if it could not be created: logging then stays off,
/// which must never stop oc-sync from working).
pub fn init(log_dir: &Path, level: &str) -> Option<PathBuf> {
    INIT.get_or_init(|| {
        std::fs::create_dir_all(log_dir).ok()?;
        let appender = tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix(LOG_FILE_PREFIX)
            .filename_suffix("log")
            .max_log_files(KEEP_FILES)
            .build(log_dir)
            .ok()?;
        let filter = EnvFilter::try_new(format!("oc_sync={level},oc_sync_node={level}"))
            .unwrap_or_else(|_| EnvFilter::new("oc_sync=info,oc_sync_node=info"));
        let file_layer = tracing_subscriber::fmt::layer()
            .with_writer(appender)
            .with_ansi(false)
            .with_target(false)
            .with_thread_names(false);
        tracing_subscriber::registry().with(filter).with(file_layer).with(HostLayer).try_init().ok()?;
        Some(log_dir.to_path_buf())
    })
    .clone()
}

/// Takes the records queued for the host log since the last call.
pub fn take_host_records() -> Vec<LogRecord> {
    let mut q = HOST_QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    q.drain(..).collect()
}

/// Queues a record for the host directly (used for things worth showing even before logging is set up).
pub fn push_host_record(level: &str, message: impl Into<String>) {
    let mut q = HOST_QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    if q.len() >= HOST_QUEUE_MAX {
        q.pop_front();
    }
    q.push_back(LogRecord { level: level.into(), message: message.into() });
}

/// Forwards info, warn and error events to the host queue.
struct HostLayer;

impl<S: Subscriber> Layer<S> for HostLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::INFO {
            return;
        }
        let mut v = MessageVisitor::default();
        event.record(&mut v);
        let level = match level {
            Level::ERROR => "error",
            Level::WARN => "warn",
            _ => "info",
        };
        push_host_record(level, v.finish());
    }
}

#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl MessageVisitor {
    fn finish(self) -> String {
        if self.fields.is_empty() { self.message } else { format!("{}{}", self.message, self.fields) }
    }
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

/// The newest log file in `dir`, if any (for `oc-sync status` and troubleshooting).
pub fn newest_log_file(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(LOG_FILE_PREFIX)))
        .max()
}
