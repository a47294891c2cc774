use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use super::*;
use crate::source::{Category, FileSource, FileSourceOptions};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(500);

fn config_src(root: &Path) -> FileSource {
    FileSource::new(Category::Config, root, FileSourceOptions::default()).unwrap()
}

fn state_src(root: &Path) -> FileSource {
    FileSource::new(Category::State, root, FileSourceOptions::default()).unwrap()
}

fn put(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
}

/// A config root (plus a state root next to it) watched with events sent into a channel.
fn start(config: &Path, state: &Path, include: bool) -> (Watcher, Receiver<WatchEvent>) {
    let (tx, rx) = mpsc::channel();
    let roots = for_sources(&config_src(config), &state_src(state), include);
    let w = Watcher::start(roots, move |ev| {
        let _ = tx.send(ev);
    })
    .unwrap();
    (w, rx)
}

/// Waits (up to [`WAIT`]) for an event matching `pred`; returns every event seen until then.
fn wait_for(rx: &Receiver<WatchEvent>, pred: impl Fn(&WatchEvent) -> bool) -> Vec<WatchEvent> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) => {
                let hit = pred(&ev);
                seen.push(ev);
                if hit {
                    return seen;
                }
            }
            Err(_) => panic!("no matching event within {WAIT:?}; saw {seen:?}"),
        }
    }
}

fn wait_changed(rx: &Receiver<WatchEvent>, path: &Path) -> Vec<WatchEvent> {
    wait_for(rx, |ev| *ev == WatchEvent::Changed(path.to_path_buf()))
}

/// Collects events for [`QUIET`].
fn quiet(rx: &Receiver<WatchEvent>) -> Vec<WatchEvent> {
    let deadline = Instant::now() + QUIET;
    let mut seen = Vec::new();
    while let Ok(ev) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        seen.push(ev);
    }
    seen
}

/// Polls `cond` for up to [`WAIT`].
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Dirs {
    tmp: tempfile::TempDir,
    config: PathBuf,
    state: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    let state = tmp.path().join("state");
    fs::create_dir_all(&config).unwrap();
    fs::create_dir_all(&state).unwrap();
    Dirs { tmp, config, state }
}

#[test]
fn top_level_synced_file_change_is_reported() {
    let d = dirs();
    put(&d.config, "opencode.json", b"{}");
    put(&d.state, "kv.json", b"{}");
    let (w, rx) = start(&d.config, &d.state, false);
    fs::write(d.config.join("opencode.json"), b"{\"a\":1}").unwrap();
    wait_changed(&rx, &d.config.join("opencode.json"));
    fs::write(d.state.join("kv.json"), b"{\"a\":1}").unwrap();
    wait_changed(&rx, &d.state.join("kv.json"));
    // A new file is reported too.
    put(&d.config, "AGENTS.md", b"# hi");
    wait_changed(&rx, &d.config.join("AGENTS.md"));
    w.stop();
}

#[test]
fn ignored_paths_give_nothing_and_are_not_watched() {
    let d = dirs();
    put(&d.config, "node_modules/pkg/index.js", b"x");
    put(&d.config, "agents/node_modules/pkg/a.md", b"x");
    put(&d.config, "skills/.git/HEAD", b"x");
    put(&d.config, ".hidden/a.md", b"x");
    put(&d.config, "package.json", b"{}");
    put(&d.config, "agents/a.md", b"x");
    put(&d.state, "sub/kv.json", b"{}");
    let (w, rx) = start(&d.config, &d.state, false);

    let watched = w.watched_dirs();
    assert!(watched.contains(&d.config), "{watched:?}");
    assert!(watched.contains(&d.config.join("agents")), "{watched:?}");
    assert!(watched.contains(&d.config.join("skills")), "{watched:?}");
    for p in &watched {
        let rel = p
            .strip_prefix(&d.tmp)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(!rel.contains("node_modules"), "{p:?} watched");
        assert!(!rel.contains("/."), "{p:?} watched");
    }
    assert!(!watched.contains(&d.state.join("sub")), "{watched:?}");

    put(&d.config, "node_modules/pkg/index.js", b"y");
    put(&d.config, "node_modules/new.md", b"y");
    put(&d.config, "agents/node_modules/pkg/a.md", b"y");
    put(&d.config, "skills/.git/HEAD", b"y");
    put(&d.config, ".hidden/a.md", b"y");
    put(&d.config, "package.json", b"{\"a\":1}");
    put(&d.config, "notes.txt", b"y");
    put(&d.config, ".opencode.json.swp", b"y");
    put(&d.state, "sub/kv.json", b"y");
    // Folders created later that must not be watched either.
    put(&d.config, "agents/more/node_modules/x/a.md", b"y");
    put(&d.config, "skills/s/.cache/a.md", b"y");
    let got: Vec<_> = quiet(&rx)
        .into_iter()
        .filter(|e| *e != WatchEvent::Changed(d.config.join("agents/more")))
        .collect();
    assert_eq!(got, vec![], "unexpected events");
    eventually("agents/more watched", || {
        w.watched_dirs().contains(&d.config.join("agents/more"))
    });
    for p in w.watched_dirs() {
        let rel = p
            .strip_prefix(&d.tmp)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            !rel.contains("node_modules") && !rel.contains("/."),
            "{p:?} watched"
        );
    }
    // Still alive.
    put(&d.config, "agents/a.md", b"z");
    wait_changed(&rx, &d.config.join("agents/a.md"));
}

#[test]
fn nested_file_in_recursive_folder_is_reported() {
    let d = dirs();
    put(&d.config, "agents/sub/x.md", b"x");
    put(&d.config, "skills/deep/er/SKILL.md", b"x");
    let (w, rx) = start(&d.config, &d.state, false);
    assert!(w.watched_dirs().contains(&d.config.join("agents/sub")));
    put(&d.config, "agents/sub/x.md", b"y");
    wait_changed(&rx, &d.config.join("agents/sub/x.md"));
    put(&d.config, "skills/deep/er/SKILL.md", b"y");
    wait_changed(&rx, &d.config.join("skills/deep/er/SKILL.md"));
    fs::remove_file(d.config.join("agents/sub/x.md")).unwrap();
    wait_changed(&rx, &d.config.join("agents/sub/x.md"));
}

#[test]
fn folder_created_after_start_is_watched() {
    let d = dirs();
    let (w, rx) = start(&d.config, &d.state, false);
    assert!(!w.watched_dirs().contains(&d.config.join("agents")));
    fs::create_dir(d.config.join("agents")).unwrap();
    wait_changed(&rx, &d.config.join("agents"));
    eventually("agents watched", || {
        w.watched_dirs().contains(&d.config.join("agents"))
    });
    put(&d.config, "agents/a.md", b"x");
    wait_changed(&rx, &d.config.join("agents/a.md"));

    // Created in one go, file included: no race with the watch being added.
    put(&d.config, "commands/deep/er/c.md", b"x");
    wait_changed(&rx, &d.config.join("commands/deep/er/c.md"));
    eventually("commands/deep/er watched", || {
        w.watched_dirs()
            .contains(&d.config.join("commands/deep/er"))
    });
    put(&d.config, "commands/deep/er/c.md", b"y");
    wait_changed(&rx, &d.config.join("commands/deep/er/c.md"));

    // Removing a listed folder is reported and drops its watches.
    fs::remove_dir_all(d.config.join("commands")).unwrap();
    wait_changed(&rx, &d.config.join("commands"));
    eventually("commands unwatched", || {
        !w.watched_dirs()
            .iter()
            .any(|p| p.starts_with(d.config.join("commands")))
    });
}

#[test]
fn root_created_after_start_is_watched() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    fs::create_dir(&config).unwrap();
    let state = tmp.path().join("local/state/opencode");
    let (w, rx) = start(&config, &state, false);
    let watched = w.watched_dirs();
    assert!(watched.contains(&tmp.path().to_path_buf()), "{watched:?}");

    // Parent first, then (separately) the root and a file.
    fs::create_dir(tmp.path().join("local")).unwrap();
    eventually("pending watch moves down", || {
        w.watched_dirs().contains(&tmp.path().join("local"))
    });
    put(&state, "model.json", b"{}");
    wait_changed(&rx, &state.join("model.json"));
    eventually("root watched, parents released", || {
        let w = w.watched_dirs();
        w.contains(&state)
            && !w.contains(&tmp.path().to_path_buf())
            && !w.contains(&tmp.path().join("local"))
    });
    fs::write(state.join("model.json"), b"{\"a\":1}").unwrap();
    wait_changed(&rx, &state.join("model.json"));

    // The root going away asks for a rescan, and it is waited for again.
    fs::remove_dir_all(tmp.path().join("local")).unwrap();
    wait_for(&rx, |e| *e == WatchEvent::Rescan);
    eventually("waiting for the root again", || {
        w.watched_dirs().contains(&tmp.path().to_path_buf())
    });
    put(&state, "kv.json", b"{}");
    wait_changed(&rx, &state.join("kv.json"));
}

#[test]
fn atomic_rename_save_reports_target() {
    let d = dirs();
    put(&d.config, "opencode.json", b"{}");
    put(&d.config, "agents/a.md", b"x");
    let (w, rx) = start(&d.config, &d.state, false);
    let tmp = d.config.join(".opencode.json.oc-sync-tmp-1234");
    fs::write(&tmp, b"{\"a\":1}").unwrap();
    fs::rename(&tmp, d.config.join("opencode.json")).unwrap();
    let seen = wait_changed(&rx, &d.config.join("opencode.json"));
    assert!(
        !seen.contains(&WatchEvent::Changed(tmp.clone())),
        "{seen:?}"
    );
    // Editor style, in a sub-folder.
    let tmp2 = d.config.join("agents/a.md~");
    fs::write(&tmp2, b"y").unwrap();
    fs::rename(&tmp2, d.config.join("agents/a.md")).unwrap();
    let seen = wait_changed(&rx, &d.config.join("agents/a.md"));
    assert!(!seen.contains(&WatchEvent::Changed(tmp2)), "{seen:?}");
    drop(w);
}

#[test]
fn stop_is_prompt_and_final() {
    let d = dirs();
    put(&d.config, "opencode.json", b"{}");
    let (w, rx) = start(&d.config, &d.state, false);
    fs::write(d.config.join("opencode.json"), b"{\"a\":1}").unwrap();
    wait_changed(&rx, &d.config.join("opencode.json"));
    let t = Instant::now();
    w.stop();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t.elapsed()
    );
    while rx.try_recv().is_ok() {}
    fs::write(d.config.join("opencode.json"), b"{\"a\":2}").unwrap();
    put(&d.config, "agents/a.md", b"x");
    assert_eq!(quiet(&rx), vec![]);
}

#[test]
fn drop_stops_too() {
    let d = dirs();
    let (w, rx) = start(&d.config, &d.state, false);
    drop(w);
    put(&d.config, "opencode.json", b"{}");
    assert_eq!(quiet(&rx), vec![]);
}

#[test]
fn rapid_writes_are_survived() {
    let d = dirs();
    let (w, rx) = start(&d.config, &d.state, false);
    for n in 0..200 {
        fs::write(d.config.join("opencode.json"), format!("{{\"n\":{n}}}")).unwrap();
        put(&d.config, &format!("agents/a{}.md", n % 7), b"x");
    }
    wait_for(&rx, |e| {
        matches!(e, WatchEvent::Rescan) || *e == WatchEvent::Changed(d.config.join("opencode.json"))
    });
    let t = Instant::now();
    w.stop();
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn include_globs_watch_the_whole_tree_filtered() {
    let d = dirs();
    let opts = FileSourceOptions {
        include: vec!["notes/**/*.md".into()],
        ..FileSourceOptions::default()
    };
    let cfg = FileSource::new(Category::Config, &d.config, opts).unwrap();
    put(&d.config, "notes/a/b.md", b"x");
    put(&d.config, "node_modules/x/y.md", b"x");
    let (tx, rx) = mpsc::channel();
    let w = Watcher::start(for_sources(&cfg, &state_src(&d.state), true), move |e| {
        let _ = tx.send(e);
    })
    .unwrap();
    let watched = w.watched_dirs();
    assert!(watched.contains(&d.config.join("notes/a")), "{watched:?}");
    assert!(
        !watched
            .iter()
            .any(|p| p.to_string_lossy().contains("node_modules"))
    );
    put(&d.config, "notes/a/b.md", b"y");
    wait_changed(&rx, &d.config.join("notes/a/b.md"));
    put(&d.config, "other/new/c.md", b"y"); // watched (recursive root) but not synced
    put(&d.config, "notes/new/c.md", b"y");
    let seen = wait_changed(&rx, &d.config.join("notes/new/c.md"));
    assert!(!seen.contains(&WatchEvent::Changed(d.config.join("other/new/c.md"))));
}

#[test]
fn rescan_flag_and_errors_map_to_rescan() {
    use notify::event::Flag;
    let ev = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
    assert!(needs_rescan(&Ok(ev)));
    assert!(!needs_rescan(&Ok(notify::Event::new(EventKind::Any))));
    assert!(needs_rescan(&Err(notify::Error::generic("queue overflow"))));
    assert!(!is_change(&EventKind::Access(AccessKind::Open(
        AccessMode::Any
    ))));
    assert!(is_change(&EventKind::Access(AccessKind::Close(
        AccessMode::Write
    ))));
}

#[test]
fn watch_root_from_sources() {
    let d = dirs();
    let roots = for_sources(&config_src(&d.config), &state_src(&d.state), false);
    assert_eq!(roots.len(), 2);
    assert_eq!(roots[0].root, d.config);
    assert_eq!(roots[0].folders.len(), CONFIG_FOLDERS.len());
    assert!(!roots[0].recursive_root);
    assert!((roots[0].is_syncable)(Path::new("agents/a.md")));
    assert!(!(roots[0].is_syncable)(Path::new("node_modules/a.md")));
    assert_eq!(roots[1].root, d.state);
    assert!(roots[1].folders.is_empty());
    assert!((roots[1].is_syncable)(Path::new("kv.json")));
}
