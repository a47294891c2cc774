//! Shows how far `oc-sync sync` has got, on stderr (stdout keeps the summary or the JSON): a
//! progress bar on a terminal (items and bytes done of the total, rate, time left), short plain
//! lines when stderr is not a terminal and the sync is long enough to be worth it, nothing with
//! `--json` unless stderr is a terminal.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::sync::{Phase, Progress};

/// Plain lines only for a sync with at least this many items...
pub const LINES_MIN_ITEMS: u64 = 20;
/// ...or this many bytes to move.
pub const LINES_MIN_BYTES: u64 = 4 << 20;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An indicatif bar on the terminal's stderr.
    Bar,
    /// Short lines on stderr: at each phase, every tenth of the items, and at the end.
    Lines,
    /// Nothing.
    Silent,
}

impl Mode {
    /// `json`: the command prints JSON on stdout; `err_terminal`: stderr is a terminal.
    pub fn pick(json: bool, err_terminal: bool) -> Mode {
        match (json, err_terminal) {
            (_, true) => Mode::Bar,
            (false, false) => Mode::Lines,
            (true, false) => Mode::Silent,
        }
    }
}

/// Turns progress events into a bar or lines.
pub struct View<'w> {
    mode: Mode,
    bar: Option<ProgressBar>,
    out: RefCell<&'w mut dyn std::io::Write>,
    start: Instant,
    /// Plain lines: shown for this sync (it is long enough); the last phase and tenth printed.
    lines_on: Cell<bool>,
    last: Cell<(Option<Phase>, u64)>,
}

impl<'w> View<'w> {
    /// `err`: where plain lines go (the bar draws on the process's stderr itself).
    pub fn new(mode: Mode, err: &'w mut dyn std::io::Write) -> Self {
        let bar = (mode == Mode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
            bar.set_message("sync: reading this machine's items and the remote");
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        View { mode, bar, out: RefCell::new(err), start: Instant::now(), lines_on: Cell::new(false), last: Cell::new((None, 0)) }
    }

    /// Shows one progress event.
    pub fn show(&self, p: &Progress) {
        match self.mode {
            Mode::Silent => {}
            Mode::Bar => self.draw(p),
            Mode::Lines => self.line(p),
        }
    }

    /// Removes the bar (the summary follows on stdout).
    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn draw(&self, p: &Progress) {
        let Some(bar) = &self.bar else { return };
        let phase = p.phase.map(Phase::as_str).unwrap_or("planning");
        if p.bytes_total > 0 {
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} sync: {prefix} {bytes}/{total_bytes}, {msg}, {binary_bytes_per_sec}, {eta} left [{wide_bar}]",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_done);
        } else {
            bar.set_style(ProgressStyle::with_template("{spinner} sync: {prefix} {msg} [{wide_bar}]").expect("valid template").progress_chars("=> "));
            bar.set_length(p.items_total.max(1));
            bar.set_position(p.items_done);
        }
        bar.set_prefix(phase);
        bar.set_message(format!("{}/{} items", p.items_done, p.items_total));
    }

    fn line(&self, p: &Progress) {
        if !self.lines_on.get() {
            if p.items_total < LINES_MIN_ITEMS && p.bytes_total < LINES_MIN_BYTES {
                return;
            }
            self.lines_on.set(true);
        }
        let tenth = (p.items_done * 10).checked_div(p.items_total).unwrap_or(0);
        let (last_phase, last_tenth) = self.last.get();
        if last_phase == p.phase && tenth == last_tenth {
            return;
        }
        self.last.set((p.phase, tenth));
        let _ = writeln!(self.out.borrow_mut(), "{}", line_text(p, self.start.elapsed()));
    }
}

/// One plain progress line, e.g. "sync: downloading 120/500 items, 12.0 MiB/40.0 MiB (1m 3s)".
pub fn line_text(p: &Progress, elapsed: Duration) -> String {
    let phase = p.phase.map(Phase::as_str).unwrap_or("planning");
    format!(
        "sync: {phase} {}/{} items, {}/{} ({})",
        p.items_done,
        p.items_total,
        HumanBytes(p.bytes_done),
        HumanBytes(p.bytes_total),
        HumanDuration(elapsed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(phase: Phase, items_done: u64, items_total: u64) -> Progress {
        Progress { phase: Some(phase), items_done, items_total, bytes_done: items_done * 1024, bytes_total: items_total * 1024 }
    }

    #[test]
    fn mode_follows_json_and_the_terminal() {
        assert_eq!(Mode::pick(false, true), Mode::Bar);
        assert_eq!(Mode::pick(true, true), Mode::Bar);
        assert_eq!(Mode::pick(false, false), Mode::Lines);
        assert_eq!(Mode::pick(true, false), Mode::Silent);
    }

    #[test]
    fn plain_lines_at_each_phase_and_tenth_only_for_long_syncs() {
        let mut out = Vec::new();
        {
            let v = View::new(Mode::Lines, &mut out);
            v.show(&p(Phase::Planning, 0, 5)); // short: nothing
            v.show(&p(Phase::Planning, 0, 100));
            for i in 1..=100 {
                v.show(&p(Phase::Writing, i, 100));
            }
            v.show(&p(Phase::Done, 100, 100));
        }
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Planning, the first write (a new phase), each tenth, the end.
        assert_eq!(lines.len(), 1 + 1 + 10 + 1, "{text}");
        assert!(lines[0].starts_with("sync: planning 0/100 items, 0 B/100.00 KiB"), "{text}");
        assert!(lines[1].starts_with("sync: writing 1/100 items"), "{text}");
        assert!(lines[2].starts_with("sync: writing 10/100 items"), "{text}");
        assert!(lines[12].starts_with("sync: done 100/100 items"), "{text}");
    }

    #[test]
    fn silent_shows_nothing() {
        let mut out = Vec::new();
        {
            let v = View::new(Mode::Silent, &mut out);
            v.show(&p(Phase::Planning, 0, 1000));
            v.show(&p(Phase::Done, 1000, 1000));
        }
        assert!(out.is_empty());
    }
}
