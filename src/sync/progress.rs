//! How far a sync has got, for a progress bar or plain progress lines: items and bytes done of the
//! total the sync knows about. The engine tells a [`Tracker`] the work it has planned (once per
//! round, before the round downloads anything) and the work it has done (blobs downloaded, the
//! commit that uploaded a round's items, each local write); the tracker keeps the running totals
//! and hands a [`Progress`] to the caller's sink after each change.
//!
//! The totals are known from the start of a sync: the remote's manifest says what will be
//! downloaded (items and bytes) and this machine's sources what changed locally. Items a large
//! first sync leaves for a later round are counted from the start too; their bytes, not read yet,
//! are estimated at the average size of the items read so far and corrected round by round.

use std::cell::Cell;

use serde::Serialize;

/// What a sync is doing at the moment of a [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// The work of a round is planned (totals known or updated).
    Planning,
    /// Downloading remote content.
    Downloading,
    /// The round's items were uploaded (one commit).
    Uploading,
    /// Writing pulled items on this machine.
    Writing,
    /// The sync is over: done equals total.
    Done,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Planning => "planning",
            Phase::Downloading => "downloading",
            Phase::Uploading => "uploading",
            Phase::Writing => "writing",
            Phase::Done => "done",
        }
    }
}

/// The running totals of one sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub phase: Option<Phase>,
    /// Items pushed, pulled, merged or deleted so far.
    pub items_done: u64,
    /// Items this sync has to move, as known so far (never below `items_done`).
    pub items_total: u64,
    /// Bytes downloaded and uploaded so far.
    pub bytes_done: u64,
    /// Bytes to download and upload, as known so far (never below `bytes_done`).
    pub bytes_total: u64,
}

/// Keeps the running totals of one sync and tells the sink about each change.
pub struct Tracker<'a> {
    sink: &'a dyn Fn(&Progress),
    now: Cell<Progress>,
}

impl<'a> Tracker<'a> {
    pub fn new(sink: &'a dyn Fn(&Progress)) -> Self {
        Tracker { sink, now: Cell::new(Progress::default()) }
    }

    /// The totals so far.
    pub fn current(&self) -> Progress {
        self.now.get()
    }

    fn emit(&self, p: Progress) {
        self.now.set(p);
        (self.sink)(&p);
    }

    /// The work a round found left to do (`items`, `bytes`): the totals become what is done plus
    /// that.
    pub fn remaining(&self, items: u64, bytes: u64) {
        let mut p = self.now.get();
        p.phase = Some(Phase::Planning);
        p.items_total = p.items_done + items;
        p.bytes_total = p.bytes_done + bytes;
        self.emit(p);
    }

    /// The sync has moved on to `phase` (e.g. a bulk download begins), nothing done yet.
    pub fn phase(&self, phase: Phase) {
        let mut p = self.now.get();
        p.phase = Some(phase);
        self.emit(p);
    }

    /// Work done: `items` more items, `bytes` more bytes.
    pub fn done(&self, phase: Phase, items: u64, bytes: u64) {
        if items == 0 && bytes == 0 {
            return;
        }
        let mut p = self.now.get();
        p.phase = Some(phase);
        p.items_done += items;
        p.bytes_done += bytes;
        p.items_total = p.items_total.max(p.items_done);
        p.bytes_total = p.bytes_total.max(p.bytes_done);
        self.emit(p);
    }

    /// The sync is over: what is left of the totals (items waiting for the person, refused,
    /// changed during the sync) is not going to move in this sync.
    pub fn finish(&self) {
        let mut p = self.now.get();
        p.phase = Some(Phase::Done);
        p.items_total = p.items_done;
        p.bytes_total = p.bytes_done;
        self.emit(p);
    }
}

/// Work still to do, as planning counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Remaining {
    pub items: u64,
    pub bytes: u64,
}

impl Remaining {
    /// Adds one item of `bytes` bytes.
    pub fn add(&mut self, bytes: u64) {
        self.items += 1;
        self.bytes += bytes;
    }

    /// Adds `count` items not read yet, estimated at the average size of the `read` items
    /// (`read_bytes` in all).
    pub fn add_unread(&mut self, count: u64, read: u64, read_bytes: u64) {
        self.items += count;
        if read > 0 {
            self.bytes += count * (read_bytes / read);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn totals_grow_with_planning_and_end_at_what_was_done() {
        let seen = RefCell::new(Vec::new());
        let sink = |p: &Progress| seen.borrow_mut().push(*p);
        let t = Tracker::new(&sink);
        t.remaining(10, 1000);
        t.done(Phase::Downloading, 0, 400);
        t.done(Phase::Writing, 4, 0);
        // The next round: what was done is no longer left.
        t.remaining(5, 500);
        t.done(Phase::Downloading, 0, 0); // nothing: no event
        t.finish();
        let seen = seen.into_inner();
        assert_eq!(seen.len(), 5);
        assert_eq!((seen[0].items_done, seen[0].items_total, seen[0].bytes_total), (0, 10, 1000));
        assert_eq!((seen[2].items_done, seen[2].bytes_done, seen[2].phase), (4, 400, Some(Phase::Writing)));
        assert_eq!((seen[3].items_total, seen[3].bytes_total), (9, 900));
        assert_eq!(seen[4], Progress { phase: Some(Phase::Done), items_done: 4, items_total: 4, bytes_done: 400, bytes_total: 400 });
    }

    #[test]
    fn done_beyond_the_estimate_raises_the_total() {
        let sink = |_: &Progress| {};
        let t = Tracker::new(&sink);
        t.remaining(1, 10);
        t.done(Phase::Uploading, 3, 50);
        assert_eq!((t.current().items_total, t.current().bytes_total), (3, 50));
    }

    #[test]
    fn unread_items_are_estimated_at_the_average_size() {
        let mut r = Remaining::default();
        r.add(100);
        r.add(300);
        r.add_unread(3, 2, 400);
        assert_eq!(r, Remaining { items: 5, bytes: 1000 });
        let mut none = Remaining::default();
        none.add_unread(2, 0, 0);
        assert_eq!(none, Remaining { items: 2, bytes: 0 });
    }
}
