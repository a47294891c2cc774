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

/// Collapses a log line that repeats: the first is logged, repeats are counted (with a reminder at
/// the 10th, 100th, 1000th... repeat, so a lasting failure shows in each day's file), and when a
/// different line comes (or [`Collapse::reset`], e.g. after a success) one line says how often the
/// previous one repeated. Lines compare by their text (the caller leaves counters out of it).
#[derive(Debug, Default)]
pub struct Collapse {
    last: Mutex<Option<(String, u64)>>,
}

impl Collapse {
    pub const fn new() -> Self {
        Collapse { last: Mutex::new(None) }
    }

    /// Whether to log `line` now (false: a repeat, counted).
    pub fn first(&self, line: &str) -> bool {
        let (log, summary) = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            match last.as_mut() {
                Some((l, n)) if l == line => {
                    *n += 1;
                    let reminder = (*n >= 10 && n.checked_ilog10().is_some_and(|d| 10u64.pow(d) == *n)).then(|| format!("repeated {n} times so far: {line}"));
                    (false, reminder)
                }
                _ => (true, last.replace((line.to_string(), 0)).and_then(|(l, n)| (n > 0).then(|| repeated(&l, n)))),
            }
        };
        if let Some(s) = summary {
            tracing::info!("{s}");
        }
        log
    }

    /// The line stopped (e.g. a sync succeeded): says how often it repeated, if it did.
    pub fn reset(&self) {
        let prev = self.last.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((l, n)) = prev
            && n > 0
        {
            tracing::info!("{}", repeated(&l, n));
        }
    }
}

fn repeated(line: &str, n: u64) -> String {
    format!("the previous line repeated {n} more time{}: {line}", if n == 1 { "" } else { "s" })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what the [`Collapse`] logs, through a subscriber of this thread only.
    fn logged(f: impl FnOnce()) -> Vec<String> {
        struct Grab(std::sync::Arc<Mutex<Vec<String>>>);
        impl<S: Subscriber> Layer<S> for Grab {
            fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
                let mut v = MessageVisitor::default();
                event.record(&mut v);
                self.0.lock().unwrap().push(v.finish());
            }
        }
        let lines = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sub = tracing_subscriber::registry().with(Grab(lines.clone()));
        tracing::subscriber::with_default(sub, f);
        std::sync::Arc::try_unwrap(lines).unwrap().into_inner().unwrap()
    }

    #[test]
    fn repeated_lines_are_logged_once_with_their_count() {
        let c = Collapse::new();
        let mut shown = Vec::new();
        let lines = logged(|| {
            for line in std::iter::repeat_n("sync failed: 401", 12).chain(["sync failed: offline", "sync failed: offline"]) {
                if c.first(line) {
                    tracing::warn!("{line}");
                    shown.push(line);
                }
            }
            c.reset();
            c.reset();
        });
        assert_eq!(shown, ["sync failed: 401", "sync failed: offline"]);
        assert_eq!(
            lines,
            [
                "sync failed: 401",
                "repeated 10 times so far: sync failed: 401",
                "the previous line repeated 11 more times: sync failed: 401",
                "sync failed: offline",
                "the previous line repeated 1 more time: sync failed: offline",
            ]
        );
    }

    #[test]
    fn reminders_at_each_power_of_ten() {
        let c = Collapse::new();
        let lines = logged(|| {
            for _ in 0..=1000 {
                c.first("x");
            }
        });
        assert_eq!(lines, ["repeated 10 times so far: x", "repeated 100 times so far: x", "repeated 1000 times so far: x"]);
    }
}
