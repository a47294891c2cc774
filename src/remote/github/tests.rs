//! Tests against the in-process fake GitHub. The fake runs on the test's multi-thread runtime;
//! the (blocking) remote runs inside `spawn_blocking`, never inside an async task.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use fake_github::{FakeGithub, FakeOptions};

use super::*;
use crate::clock::VectorClock;
use crate::config::Config;
use crate::remote::{Entry, sha256_hex};
use crate::sync::run::SyncOptions;
use crate::testing::{Machine, config};

const OWNER: &str = "octo-user";
const REPO: &str = "sync";

async fn fake() -> Arc<FakeGithub> {
    let gh = FakeGithub::start(FakeOptions::default()).await.unwrap();
    gh.add_repo(OWNER, REPO, true, true);
    Arc::new(gh)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn connect(gh: &FakeGithub) -> GithubRemote {
    GithubRemote::connect(&gh.url, gh.token(), OWNER, REPO, "main").unwrap().with_retry_unit(Duration::from_millis(5))
}

fn settings(gh: &FakeGithub, cache: &Path) -> GithubSettings {
    GithubSettings {
        api_url: gh.url.clone(),
        token: gh.token().to_owned(),
        owner: None,
        repo: REPO.into(),
        branch: None,
        cache_file: Some(cache.join("github.json")),
        data_dir: Some(cache.join("data")),
        retry_unit: Duration::from_millis(5),
    }
}

fn open(gh: &FakeGithub, cache: &Path) -> GithubRemote {
    GithubRemote::open(&settings(gh, cache)).unwrap().with_retry_unit(Duration::from_millis(5))
}

/// One sync of `m` through a freshly opened remote (as a new `oc-sync` process would).
fn sync_in_new_process(gh: &FakeGithub, cache: &Path, m: &Machine, cfg: &Config) -> crate::sync::run::SyncReport {
    let r = open(gh, cache);
    m.syncer("a", cfg, &r).sync(&SyncOptions::default()).unwrap()
}

fn requests(gh: &FakeGithub) -> Vec<String> {
    gh.requests().iter().map(|r| format!("{} {} {}", r.method, r.path, r.status)).collect()
}

fn entry(hash: Option<&str>, size: u64, machine: &str, n: u64) -> Entry {
    let mut clock = VectorClock::new();
    for _ in 0..n {
        clock.bump(machine);
    }
    Entry {
        clock,
        hash: hash.map(str::to_owned),
        size,
        kind: "text".into(),
        category: "config".into(),
        modified_ms: 1,
        machine: machine.into(),
        deleted_ms: if hash.is_none() { Some(2) } else { None },
    }
}

/// Changes putting `files` (key, bytes) live.
fn put(files: &[(&str, &[u8])]) -> Changes {
    let mut c = Changes {
        message: "test sync".into(),
        ..Default::default()
    };
    for (k, b) in files {
        let h = sha256_hex(b);
        c.entries
            .insert(k.to_string(), entry(Some(&h), b.len() as u64, "a", 1));
        c.blobs.insert(h, b.to_vec());
    }
    c
}

/// The bytes of the item file at `rev_path` (`HEAD:config/x`), after its header line.
fn item_bytes(dir: &Path, rev_path: &str) -> Vec<u8> {
    let out = Command::new("git").arg("-C").arg(dir).args(["show", rev_path]).output().unwrap();
    assert!(out.status.success(), "{rev_path}");
    let file = out.stdout;
    assert!(file.starts_with(crate::remote::envelope::MAGIC), "{rev_path} has no header");
    let nl = file.iter().position(|&b| b == b'\n').unwrap();
    file[nl + 1..].to_vec()
}

fn item_text(dir: &Path, rev_path: &str) -> String {
    String::from_utf8(item_bytes(dir, rev_path)).unwrap()
}

fn git(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_refuses_a_public_repository() {
    let gh = fake().await;
    gh.add_repo(OWNER, "public", false, true);
    let (url, token) = (gh.url.clone(), gh.token().to_owned());
    let err =
        blocking(move || GithubRemote::connect(&url, &token, OWNER, "public", "main").unwrap_err())
            .await;
    let text = err.to_string();
    assert!(text.contains("public"), "{text}");
    assert!(text.contains("private"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_token_and_missing_repo_give_clear_messages() {
    let gh = fake().await;
    let url = gh.url.clone();
    let bad = "ghp_wrongwrongwrongwrongwrongwrong1234".to_owned();
    let bad2 = bad.clone();
    let err =
        blocking(move || GithubRemote::connect(&url, &bad2, OWNER, REPO, "main").unwrap_err())
            .await;
    let text = err.to_string();
    assert!(text.contains("wrong, expired or revoked"), "{text}");
    assert!(
        text.contains("Contents: Read and write") && text.contains("\"repo\" scope"),
        "{text}"
    );
    assert!(!text.contains(&bad), "token leaked: {text}");

    let (url, token) = (gh.url.clone(), gh.token().to_owned());
    let token2 = token.clone();
    let err =
        blocking(move || GithubRemote::connect(&url, &token2, OWNER, "nope", "main").unwrap_err())
            .await;
    let text = err.to_string();
    assert!(text.contains("does not exist"), "{text}");
    assert!(!text.contains(&token), "token leaked: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_then_read_back_and_git_agrees() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        let r = connect(&g);
        let head = r.head().unwrap().expect("initial commit");
        assert_eq!(r.manifest(&head).unwrap().entries, Manifest::default().entries);
        let binary: &[u8] = &[0xff, 0x00, 0xfe, 0x80, 1, 2, 3];
        let changes = put(&[
            ("config/x", b"hello\n"),
            ("config/sub/dir/y.json", b"{\"a\": 1}\n"),
            ("state/bin", binary),
        ]);
        let CommitOutcome::Committed(v) = r.commit(Some(&head), changes.clone()).unwrap() else {
            panic!("conflict")
        };
        assert_eq!(r.head().unwrap(), Some(v.clone()));

        // A fresh remote (no cache) reads the same.
        let r2 = connect(&g);
        let m = r2.manifest(&v).unwrap();
        assert_eq!(m.entries, Manifest::default().apply(&changes).entries);
        for (h, bytes) in &changes.blobs {
            assert_eq!(&r2.blob(h).unwrap(), bytes);
            // The writer can read its own inline blobs too (lazy tree listing).
            assert_eq!(&r.blob(h).unwrap(), bytes);
        }

        let dir = g.repo_git_dir(OWNER, REPO);
        assert_eq!(item_text(&dir, "HEAD:config/x"), "hello\n");
        assert_eq!(item_bytes(&dir, "HEAD:state/bin"), binary);
        assert_eq!(git(&dir, &["show", "HEAD:.oc-sync/format"]).1, "2\n");
        let (ok, stub) = git(&dir, &["show", &format!("HEAD:{MANIFEST_PATH}")]);
        assert!(ok && stub.contains("\"format\": 2") && !stub.contains("config/x"), "{stub}");
        let (ok, out) = git(&dir, &["fsck", "--strict"]);
        assert!(ok, "{out}");
        let (_, log) = git(&dir, &["log", "-1", "--format=%s%n%P"]);
        assert!(
            log.starts_with("test sync\n") && log.contains(&head.0),
            "{log}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_expected_and_race_are_conflicts() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        let r = connect(&g);
        let h0 = r.head().unwrap().unwrap();
        let CommitOutcome::Committed(h1) = r.commit(Some(&h0), put(&[("config/a", b"1")])).unwrap()
        else {
            panic!()
        };
        // Stale expected.
        assert_eq!(
            r.commit(Some(&h0), put(&[("config/a", b"2")])).unwrap(),
            CommitOutcome::Conflict {
                current: Some(h1.clone())
            }
        );
        // Expected None on a branch with commits.
        assert_eq!(
            r.commit(None, put(&[("config/a", b"3")])).unwrap(),
            CommitOutcome::Conflict {
                current: Some(h1.clone())
            }
        );
        // Someone else moves the branch between our read and our ref update.
        assert_eq!(r.head().unwrap(), Some(h1.clone()));
        g.faults().race_next_ref_update(OWNER, REPO, "main");
        let out = r.commit(Some(&h1), put(&[("config/a", b"4")])).unwrap();
        let raced = g.faults().race_commits();
        assert_eq!(raced.len(), 1);
        assert_eq!(
            out,
            CommitOutcome::Conflict {
                current: Some(Version(raced[0].clone()))
            }
        );
        // Nothing of ours was applied; retrying on the new head works and keeps their file.
        let h2 = r.head().unwrap().unwrap();
        let CommitOutcome::Committed(_) = r.commit(Some(&h2), put(&[("config/a", b"5")])).unwrap()
        else {
            panic!()
        };
        let dir = g.repo_git_dir(OWNER, REPO);
        assert_eq!(item_text(&dir, "HEAD:config/a"), "5");
        let (_, ls) = git(&dir, &["ls-tree", "-r", "--name-only", "HEAD"]);
        assert!(ls.contains("other-machine-"), "{ls}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_branch_is_created_by_a_commit_on_none() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        let r = GithubRemote::connect(&g.url, g.token(), OWNER, REPO, "oc-sync").unwrap();
        assert_eq!(r.head().unwrap(), None);
        let CommitOutcome::Committed(v) = r.commit(None, put(&[("config/a", b"x")])).unwrap()
        else {
            panic!()
        };
        assert_eq!(g.branch_head(OWNER, REPO, "oc-sync"), Some(v.0.clone()));
        assert_eq!(
            r.commit(None, put(&[("config/a", b"y")])).unwrap(),
            CommitOutcome::Conflict { current: Some(v) }
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tombstones_and_removals_delete_files() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        let r = connect(&g);
        let h0 = r.head().unwrap().unwrap();
        let CommitOutcome::Committed(h1) = r
            .commit(
                Some(&h0),
                put(&[("config/a", b"a"), ("config/b", b"b"), ("config/c", b"c")]),
            )
            .unwrap()
        else {
            panic!()
        };
        let mut c = Changes {
            message: "delete".into(),
            ..Default::default()
        };
        c.entries.insert("config/a".into(), entry(None, 0, "a", 2));
        c.removed.push("config/b".into());
        let CommitOutcome::Committed(h2) = r.commit(Some(&h1), c).unwrap() else {
            panic!()
        };
        let dir = g.repo_git_dir(OWNER, REPO);
        let (_, ls) = git(&dir, &["ls-tree", "-r", "--name-only", "HEAD"]);
        // A tombstone is its header alone; a removed item has no file.
        assert!(
            ls.contains("config/a") && !ls.contains("config/b") && ls.contains("config/c"),
            "{ls}"
        );
        assert_eq!(item_text(&dir, "HEAD:config/a"), "");
        assert!(git(&dir, &["show", "HEAD:config/a"]).1.contains("\"hash\":null"));
        assert!(
            true,
        );
        let m = connect(&g).manifest(&h2).unwrap();
        assert!(m.entries["config/a"].is_tombstone());
        assert!(!m.entries.contains_key("config/b"));
        let (ok, out) = git(&dir, &["fsck", "--strict"]);
        assert!(ok, "{out}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_and_server_errors_are_retried_or_reported() {
    let gh = Arc::new(
        FakeGithub::start(FakeOptions { fault_retry_after: 2, ..Default::default() }).await.unwrap(),
    );
    gh.add_repo(OWNER, REPO, true, true);
    let g = gh.clone();
    blocking(move || {
        let r = connect(&g);
        // A short Retry-After is waited for, then the request succeeds.
        g.faults().fail_next("/repos/*/git/ref/*", 1, 429);
        assert!(r.head().unwrap().is_some());
        g.faults().fail_next("/repos/*/git/ref/*", 2, 403);
        assert!(r.head().unwrap().is_some());
        // Still limited after two waits: RateLimited, with the wait named.
        g.faults().fail_next("/repos/*/git/ref/*", 3, 429);
        let err = r.head().unwrap_err();
        assert!(matches!(err, RemoteError::RateLimited(_)), "{err}");
        assert!(err.to_string().contains("2 seconds"), "{err}");
        // 5xx and dropped connections are retried (4 attempts in all).
        g.faults().fail_next("/repos/*/git/ref/*", 3, 502);
        assert!(r.head().unwrap().is_some());
        g.faults().drop_next("/repos/*/git/ref/*", 2);
        assert!(r.head().unwrap().is_some());
        g.faults().fail_next("/repos/*/git/ref/*", 4, 500);
        let err = r.head().unwrap_err();
        assert!(matches!(err, RemoteError::Unreachable(_)), "{err}");
        assert!(!err.to_string().contains(g.token()));
        assert!(r.head().unwrap().is_some());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_primary_limit_is_rate_limited_until_reset() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        let r = connect(&g);
        g.faults().set_rate_remaining(0);
        let err = r.head().unwrap_err();
        assert!(matches!(err, RemoteError::RateLimited(_)), "{err}");
        assert!(err.to_string().contains("resets in"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_tree_listing_is_walked() {
    let gh = FakeGithub::start(FakeOptions {
        tree_truncate_entries: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    gh.add_repo(OWNER, REPO, true, true);
    let g = Arc::new(gh);
    blocking(move || {
        let r = connect(&g);
        let h0 = r.head().unwrap().unwrap();
        let files: Vec<(String, Vec<u8>)> = (0..10)
            .map(|i| {
                (
                    format!("config/d{}/f{i}", i % 3),
                    format!("{i}\n").into_bytes(),
                )
            })
            .collect();
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(k, b)| (k.as_str(), b.as_slice()))
            .collect();
        let changes = put(&refs);
        let CommitOutcome::Committed(v) = r.commit(Some(&h0), changes.clone()).unwrap() else {
            panic!()
        };
        let fresh = connect(&g);
        assert_eq!(
            fresh.manifest(&v).unwrap().entries,
            Manifest::default().apply(&changes).entries
        );
        for (h, b) in &changes.blobs {
            assert_eq!(&fresh.blob(h).unwrap(), b);
        }
    })
    .await;
}

// ---- two syncers through GitHub ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn two_syncers_converge_and_deletions_propagate() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        let t = tempfile::tempdir().unwrap();
        let remote = connect(&g);
        let cfg = config();
        let a = Machine::new(t.path(), "a");
        let b = Machine::new(t.path(), "b");
        a.put("config/AGENTS.md", "from a\n");
        a.put("config/agents/gone.md", "bye\n");
        b.put("config/opencode.json", "{\"theme\": \"dark\"}\n");
        b.put("state/model.json", "{\"recent\": []}\n");
        let opts = SyncOptions::default();
        a.syncer("a", &cfg, &remote).sync(&opts).unwrap();
        b.syncer("b", &cfg, &remote).sync(&opts).unwrap();
        a.syncer("a", &cfg, &remote).sync(&opts).unwrap();
        for m in [&a, &b] {
            assert_eq!(m.get("config/AGENTS.md").as_deref(), Some("from a\n"));
            assert_eq!(
                m.get("config/opencode.json").as_deref(),
                Some("{\"theme\": \"dark\"}\n")
            );
            assert_eq!(
                m.get("state/model.json").as_deref(),
                Some("{\"recent\": []}\n")
            );
            assert_eq!(m.get("config/agents/gone.md").as_deref(), Some("bye\n"));
        }
        // Delete on b, edit on a; both propagate.
        std::fs::remove_file(b.root.join("config/agents/gone.md")).unwrap();
        b.syncer("b", &cfg, &remote).sync(&opts).unwrap();
        a.put("config/AGENTS.md", "edited on a\n");
        a.syncer("a", &cfg, &remote).sync(&opts).unwrap();
        b.syncer("b", &cfg, &remote).sync(&opts).unwrap();
        assert_eq!(a.get("config/agents/gone.md"), None);
        assert_eq!(b.get("config/AGENTS.md").as_deref(), Some("edited on a\n"));

        let dir = g.repo_git_dir(OWNER, REPO);
        // The deleted item is a tombstone: its header alone.
        assert_eq!(item_text(&dir, "HEAD:config/agents/gone.md"), "");
        assert_eq!(
            item_text(&dir, "HEAD:config/AGENTS.md"),
            "edited on a\n"
        );
        let (ok, out) = git(&dir, &["fsck", "--strict"]);
        assert!(ok, "{out}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_file_change_after_a_large_push_takes_at_most_4_requests() {
    let gh = fake().await;
    let g = gh.clone();
    let counts = blocking(move || {
        let t = tempfile::tempdir().unwrap();
        let remote = connect(&g);
        let cfg = config();
        let a = Machine::new(t.path(), "a");
        for i in 0..300 {
            a.put(
                &format!("config/skills/s{}/f{i}.md", i % 20),
                &format!("skill {i}\n"),
            );
        }
        let opts = SyncOptions::default();
        g.clear_requests();
        let r = a.syncer("a", &cfg, &remote).sync(&opts).unwrap();
        assert_eq!(r.pushed.len(), 300);
        let initial = g.requests();
        g.clear_requests();
        a.put("config/skills/s3/f3.md", "changed\n");
        a.syncer("a", &cfg, &remote).sync(&opts).unwrap();
        let one = g.requests();
        let dir = g.repo_git_dir(OWNER, REPO);
        assert_eq!(
            item_text(&dir, "HEAD:config/skills/s3/f3.md"),
            "changed\n"
        );
        (initial, one)
    })
    .await;
    let show = |rs: &[fake_github::RecordedRequest]| {
        rs.iter()
            .map(|r| format!("{} {} {}", r.method, r.path, r.status))
            .collect::<Vec<_>>()
    };
    eprintln!(
        "initial push: {:?}\none-file change: {:?}",
        show(&counts.0),
        show(&counts.1)
    );
    assert!(counts.0.len() <= 5, "initial push: {:?}", show(&counts.0));
    assert!(
        counts.1.len() <= 4,
        "one-file change: {:?}",
        show(&counts.1)
    );
    assert!(
        counts.1.iter().all(|r| r.status < 300),
        "{:?}",
        show(&counts.1)
    );
}

#[test]
fn tree_entries_are_split_by_inline_size() {
    let e = |n: usize| json!({"path": "p", "content": "x".repeat(n)});
    let b = split_tree_entries(vec![e(100), e(100), e(500), e(10)], 400);
    assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1, 1]);
    assert_eq!(split_tree_entries(vec![], 10).len(), 1);
}

#[test]
fn names_are_checked() {
    assert!(valid_name("oc-sync.data_1"));
    assert!(!valid_name("a/b") && !valid_name("..") && !valid_name(""));
    assert!(valid_branch("main") && valid_branch("sync/laptop"));
    assert!(
        !valid_branch("a..b")
            && !valid_branch("a b")
            && !valid_branch("/x")
            && !valid_branch("x.lock")
    );
    assert!(valid_oid(&"a".repeat(40)) && !valid_oid(&"A".repeat(40)) && !valid_oid("abc"));
}

// ---- opening the configured repository -------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn open_creates_a_missing_repository_private_and_waits_for_its_branch() {
    let gh = Arc::new(FakeGithub::start(FakeOptions { ref_unreadable_after_create: 2, ..Default::default() }).await.unwrap());
    let g = gh.clone();
    blocking(move || {
        let t = tempfile::tempdir().unwrap();
        let r = open(&g, t.path());
        assert_eq!((r.owner(), r.repo(), r.branch()), (OWNER, REPO, "main"));
        let reqs = requests(&g);
        let create = g.requests().into_iter().find(|q| q.method == "POST" && q.path == "/user/repos").expect("repo created");
        assert_eq!(create.request_json().unwrap()["private"], true, "{reqs:?}");
        assert!(reqs.iter().filter(|q| q.contains("/git/ref/heads/main 409")).count() == 2, "{reqs:?}");
        // The cache remembers owner, branch and visibility: a second open sends nothing.
        g.clear_requests();
        let r2 = open(&g, t.path());
        assert_eq!(r2.branch(), "main");
        assert!(requests(&g).is_empty(), "{:?}", requests(&g));
        let facts = cache::read_facts(&t.path().join("github.json")).unwrap();
        assert_eq!((facts.visibility.as_str(), facts.login.as_deref()), ("private", Some(OWNER)));
        let text = std::fs::read_to_string(t.path().join("github.json")).unwrap();
        assert!(!text.contains(g.token()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn open_refuses_public_and_foreign_missing_repositories_and_bad_tokens() {
    let gh = Arc::new(FakeGithub::start(FakeOptions::default()).await.unwrap());
    gh.add_repo(OWNER, REPO, false, true);
    let g = gh.clone();
    blocking(move || {
        let t = tempfile::tempdir().unwrap();
        let err = GithubRemote::open(&settings(&g, t.path())).unwrap_err();
        assert!(matches!(err, RemoteError::Denied(_)) && err.to_string().contains("public"), "{err}");
        let mut s = settings(&g, t.path());
        s.owner = Some("some-org".into());
        let err = GithubRemote::open(&s).unwrap_err();
        assert!(err.to_string().contains("only in your own account"), "{err}");
        let mut s = settings(&g, t.path());
        s.token = "ghp_wrongwrongwrongwrong".into();
        let err = GithubRemote::open(&s).unwrap_err();
        assert!(matches!(err, RemoteError::BadToken(_)) && err.to_string().contains("wrong, expired or revoked"), "{err}");
        assert!(!err.to_string().contains("ghp_wrongwrongwrongwrong"));
        let mut s = settings(&g, t.path());
        s.api_url = "http://example.com".into();
        assert!(GithubRemote::open(&s).unwrap_err().to_string().contains("unencrypted"));
        // Made private: accepted; made public again: the next write (after a fresh open) refuses.
        g.set_private(OWNER, REPO, true);
        let r = open(&g, t.path());
        assert!(r.head().unwrap().is_some());
        g.set_private(OWNER, REPO, false);
        let fresh = tempfile::tempdir().unwrap();
        assert!(GithubRemote::open(&settings(&g, fresh.path())).unwrap_err().to_string().contains("public"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_repository_is_initialised_through_the_contents_api() {
    let gh = Arc::new(FakeGithub::start(FakeOptions::default()).await.unwrap());
    gh.add_repo(OWNER, REPO, true, false);
    let g = gh.clone();
    blocking(move || {
        let t = tempfile::tempdir().unwrap();
        let r = open(&g, t.path());
        let head = r.head().unwrap().expect("initialised");
        let m = r.manifest(&head).unwrap();
        assert!(m.entries.is_empty());
        let out = r.commit(Some(&head), put(&[("config/a.md", b"A\n")])).unwrap();
        assert!(matches!(out, CommitOutcome::Committed(_)));
        let dir = g.repo_git_dir(OWNER, REPO);
        assert_eq!(item_text(&dir, "main:config/a.md"), "A\n");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_sync_is_one_conditional_request_across_runs() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        let t = tempfile::tempdir().unwrap();
        let cfg = config();
        let a = Machine::new(t.path(), "a");
        for i in 0..50 {
            a.put(&format!("config/agents/a{i}.md"), &format!("agent {i}\n"));
        }
        sync_in_new_process(&g, t.path(), &a, &cfg);
        // A new process (new remote object): idle.
        g.clear_requests();
        let rep = sync_in_new_process(&g, t.path(), &a, &cfg);
        assert!(rep.pushed.is_empty() && rep.pulled.is_empty());
        let first_idle = requests(&g);
        g.clear_requests();
        sync_in_new_process(&g, t.path(), &a, &cfg);
        let idle = requests(&g);
        assert!(first_idle.len() == 1, "{first_idle:?}");
        assert_eq!(idle.len(), 1, "{idle:?}");
        assert!(idle[0].starts_with("GET /repos/octo-user/sync/git/ref/heads/main 304"), "{idle:?}");
        // One change, new process: at most 4 requests.
        a.put("config/agents/a7.md", "changed\n");
        g.clear_requests();
        sync_in_new_process(&g, t.path(), &a, &cfg);
        let one = requests(&g);
        assert!(one.len() <= 4, "{one:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_pull_uses_the_tarball_and_later_pulls_only_the_change() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        let t = tempfile::tempdir().unwrap();
        let cfg = config();
        let a = Machine::new(t.path(), "a");
        let b = Machine::new(t.path(), "b");
        for i in 0..120 {
            a.put(&format!("config/skills/s{}/f{i}.md", i % 12), &format!("skill {i}\n"));
        }
        let opts = SyncOptions::default();
        let ra = open(&g, &t.path().join("ca"));
        a.syncer("a", &cfg, &ra).sync(&opts).unwrap();
        g.clear_requests();
        let rb = open(&g, &t.path().join("cb"));
        let rep = b.syncer("b", &cfg, &rb).sync(&opts).unwrap();
        assert_eq!(rep.pulled.len(), 120);
        let first = requests(&g);
        assert!(first.len() <= 8, "{first:?}");
        assert!(first.iter().any(|q| q.contains("/tarball/")), "{first:?}");
        assert_eq!(b.get("config/skills/s3/f99.md").as_deref(), Some("skill 99\n"));
        // One change on a; b pulls it: compare + manifest + blob, no full listing.
        a.put("config/skills/s0/f0.md", "new\n");
        a.syncer("a", &cfg, &ra).sync(&opts).unwrap();
        g.clear_requests();
        let rep = b.syncer("b", &cfg, &rb).sync(&opts).unwrap();
        assert_eq!(rep.pulled, vec!["config/skills/s0/f0.md".to_string()]);
        let one = requests(&g);
        assert!(one.len() <= 4, "{one:?}");
        assert!(one.iter().any(|q| q.contains("/compare/")), "{one:?}");
        assert!(!one.iter().any(|q| q.contains("recursive")), "{one:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_item_over_githubs_file_limit_is_stored_in_checked_parts() {
    let gh = Arc::new(FakeGithub::start(FakeOptions { max_file_size: 3000, ..Default::default() }).await.unwrap());
    gh.add_repo(OWNER, REPO, true, true);
    let g = gh.clone();
    blocking(move || {
        let r = connect(&g).with_chunk_bytes(2048);
        let big: Vec<u8> = (0..7000u32).map(|i| (i % 251) as u8).collect();
        let head = r.head().unwrap();
        r.manifest(head.as_ref().unwrap()).unwrap();
        let v1 = match r.commit(head.as_ref(), put(&[("state/big.bin", &big), ("config/small.md", b"s\n")])).unwrap() {
            CommitOutcome::Committed(v) => v,
            other => panic!("{other:?}"),
        };
        let dir = g.repo_git_dir(OWNER, REPO);
        let (_, ls) = git(&dir, &["ls-tree", "-r", "--name-only", "main"]);
        let hash = sha256_hex(&big);
        assert!(ls.contains(&format!(".oc-sync/chunks/{hash}/3")), "{ls}");
        // The item's file is its header naming the parts.
        assert!(ls.lines().any(|l| l == "state/big.bin"), "{ls}");
        assert!(git(&dir, &["show", "main:state/big.bin"]).1.contains("\"parts\":4"));
        assert_eq!(item_text(&dir, "main:state/big.bin"), "");
        // Another process reads it back, checked.
        let r2 = connect(&g);
        let m = r2.manifest(&v1).unwrap();
        assert_eq!(m.entries["state/big.bin"].hash.as_deref(), Some(hash.as_str()));
        assert_eq!(r2.blob(&hash).unwrap(), big);
        // Replaced by a small version: the parts go away.
        let v2 = match r.commit(Some(&v1), put(&[("state/big.bin", b"small now")])).unwrap() {
            CommitOutcome::Committed(v) => v,
            other => panic!("{other:?}"),
        };
        let (_, ls) = git(&dir, &["ls-tree", "-r", "--name-only", &v2.0]);
        assert!(!ls.contains(".oc-sync/chunks/"), "{ls}");
        assert!(ls.lines().any(|l| l == "state/big.bin"), "{ls}");
        let (ok, out) = git(&dir, &["fsck", "--strict"]);
        assert!(ok, "{out}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_stay_under_the_content_creation_limit() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        let t = tempfile::tempdir().unwrap();
        let r = open(&g, t.path());
        let mut head = r.head().unwrap();
        let mut refused = None;
        for i in 0..40 {
            let text = format!("v{i}\n");
            match r.commit(head.as_ref(), put(&[("config/a.md", text.as_bytes())])) {
                Ok(CommitOutcome::Committed(v)) => head = Some(v),
                Ok(other) => panic!("{other:?}"),
                Err(e) => {
                    refused = Some((i, e));
                    break;
                }
            }
        }
        let (i, e) = refused.expect("held back before GitHub's 80/minute");
        assert!(matches!(e, RemoteError::RateLimited(_)), "{e}");
        assert!(i * 3 <= 70, "{i}");
        // GitHub itself never refused anything.
        assert!(g.requests().iter().all(|q| q.status < 400 || q.status == 404 || q.status == 409), "{:?}", requests(&g));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_too_big_for_one_tree_request_is_split() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        let r = connect(&g);
        let files: Vec<(String, Vec<u8>)> = (0..10).map(|i| (format!("state/f{i}.txt"), format!("{i}").repeat(900_000).into_bytes())).collect();
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(k, b)| (k.as_str(), b.as_slice())).collect();
        let head = r.head().unwrap();
        r.manifest(head.as_ref().unwrap()).unwrap();
        g.clear_requests();
        assert!(matches!(r.commit(head.as_ref(), put(&refs)).unwrap(), CommitOutcome::Committed(_)));
        let trees = g.requests().iter().filter(|q| q.method == "POST" && q.path.ends_with("/git/trees")).count();
        assert_eq!(trees, 2, "{:?}", requests(&g));
        let dir = g.repo_git_dir(OWNER, REPO);
        let (_, ls) = git(&dir, &["ls-tree", "-r", "--name-only", "main"]);
        assert_eq!(ls.lines().filter(|l| l.starts_with("state/f")).count(), 10, "{ls}");
    })
    .await;
}

// ---- a hostile repository: entries that are not plain files -----------------------------------

use crate::testing::home_snapshot;

/// An item file (format 2) for `content` at `key`, as another machine would write it.
fn item_file(content: &[u8]) -> Vec<u8> {
    crate::remote::envelope::encode(&entry(Some(&sha256_hex(content)), content.len() as u64, "mallory", 5), Some(content))
}

#[tokio::test(flavor = "multi_thread")]
async fn symlinks_and_submodules_in_the_repository_are_refused_by_name_and_never_fetched() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        let t = tempfile::tempdir().unwrap();
        let cfg = config();
        let a = Machine::new(t.path(), "a");
        let b = Machine::new(t.path(), "b");
        a.put("config/agents/ok.md", "fine\n");
        let ra = open(&g, &t.path().join("ca"));
        a.syncer("a", &cfg, &ra).sync(&SyncOptions::default()).unwrap();
        // The attacker's commit: a symbolic link and a submodule at item paths, plus 20 plain
        // item files (so a first pull takes the tarball path).
        let dir = g.repo_git_dir(OWNER, REPO);
        let target: &[u8] = b"../../../.ssh/authorized_keys";
        let gitlink: &[u8] = b"0123456789abcdef0123456789abcdef01234567";
        let plain: Vec<(String, Vec<u8>)> =
            (0..20).map(|i| (format!("config/skills/s/f{i}.md"), item_file(format!("skill {i}\n").as_bytes()))).collect();
        let mut entries: Vec<(&str, &str, &[u8])> = vec![
            ("config/agents/x.md", "120000", target),
            ("config/agents/sub.md", "160000", gitlink),
            ("state/link.json", "120000", target),
        ];
        entries.extend(plain.iter().map(|(k, v)| (k.as_str(), "100644", v.as_slice())));
        g.commit_entries_as_other_machine(OWNER, REPO, "main", &entries).unwrap();
        let (_, ls) = git(&dir, &["ls-tree", "-r", "main", "config/agents", "state"]);
        assert!(ls.contains("120000 blob") && ls.contains("160000 commit"), "{ls}");
        let link_sha = git(&dir, &["rev-parse", "main:config/agents/x.md"]).1.trim().to_string();

        let check = |m: &Machine, name: &str, remote: &GithubRemote, first: bool| {
            let before = home_snapshot::snapshot(&m.root);
            g.clear_requests();
            let r = m.syncer(name, &cfg, remote).sync(&SyncOptions::default()).unwrap();
            let reqs = requests(&g);
            for (key, what) in [("config/agents/x.md", "symbolic link"), ("config/agents/sub.md", "submodule"), ("state/link.json", "symbolic link")] {
                assert!(r.refused.iter().any(|s| s.starts_with(&format!("{key}: ")) && s.contains(what)), "{key}: {r:?}");
                assert!(std::fs::symlink_metadata(m.root.join(key)).is_err(), "{key} must not be written");
            }
            assert!(!reqs.iter().any(|q| q.contains(&link_sha) || q.contains(std::str::from_utf8(gitlink).unwrap())), "fetched as a blob: {reqs:?}");
            assert_eq!(m.get("config/skills/s/f7.md").as_deref(), Some("skill 7\n"));
            if first {
                assert!(reqs.iter().any(|q| q.contains("/tarball/")), "{reqs:?}");
            }
            let after = home_snapshot::snapshot(&m.root);
            let changed = home_snapshot::assert_only_changed_under(&before, &after, &["config/skills", "config/agents", "sync"]);
            assert!(!changed.iter().any(|c| c.contains("agents/x.md") || c.contains("sub.md") || c.contains("link.json")), "{changed:?}");
            r
        };
        // b: a first pull (tree listing + tarball).
        let rb = open(&g, &t.path().join("cb"));
        check(&b, "b", &rb, true);
        // a: an incremental pull from its cached snapshot (compare).
        check(&a, "a", &ra, false);
        // A second sync: still refused, nothing fetched again, nothing written.
        g.clear_requests();
        let r = b.syncer("b", &cfg, &rb).sync(&SyncOptions::default()).unwrap();
        assert_eq!(r.refused.len(), 3, "{r:?}");
        assert!(!requests(&g).iter().any(|q| q.contains("/git/blobs/")), "{:?}", requests(&g));
    })
    .await;
}

// ---- format 2: costs follow the change, reads are raw and checked ----------------------------

/// A remote on `g` with its own cache directory (as one machine's process).
fn machine_remote(g: &FakeGithub, dir: &Path) -> GithubRemote {
    open(g, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_item_change_costs_at_most_4_requests_each_way_and_reads_are_raw() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        let t = tempfile::tempdir().unwrap();
        let a = machine_remote(&g, &t.path().join("a"));
        let b = machine_remote(&g, &t.path().join("b"));
        let h0 = a.head().unwrap().unwrap();
        let files: Vec<(String, Vec<u8>)> =
            (0..40).map(|i| (format!("messages/p/s/m{i}.json"), format!("{{\"n\":{i}}}\n").into_bytes())).collect();
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        let CommitOutcome::Committed(h1) = a.commit(Some(&h0), put(&refs)).unwrap() else { panic!() };
        // b pulls everything once.
        let hb = b.head().unwrap().unwrap();
        assert_eq!(hb, h1);
        assert_eq!(b.manifest(&hb).unwrap().entries.len(), 40);
        for (_, v) in &files {
            assert_eq!(&b.blob(&sha256_hex(v)).unwrap(), v);
        }
        // a appends one message and changes the session item: tree, commit, ref.
        g.clear_requests();
        let mut c = put(&[("messages/p/s/m40.json", b"{\"n\":40}\n"), ("sessions/p/s.json", b"{\"title\":\"t\"}\n")]);
        c.message = "append".into();
        let CommitOutcome::Committed(h2) = a.commit(Some(&h1), c.clone()).unwrap() else { panic!() };
        let (n, sent, _) = g.traffic();
        assert!(n <= 4 && sent <= 64 << 10, "push: {n} requests, {sent} bytes: {:?}", requests(&g));
        // b's pull of that change: ref, compare, two raw blob reads; the blobs then cost nothing.
        g.clear_requests();
        assert_eq!(b.head().unwrap(), Some(h2.clone()));
        let m = b.manifest(&h2).unwrap();
        assert_eq!(m.entries.len(), 42);
        for (h, bytes) in &c.blobs {
            assert_eq!(&b.blob(h).unwrap(), bytes);
        }
        let reqs = g.requests();
        assert!(reqs.len() <= 4, "pull: {:?}", requests(&g));
        let (_, _, received) = g.traffic();
        assert!(received <= 64 << 10, "pull received {received} bytes");
        // Raw: the blob answers are the item files themselves, not base64 JSON.
        for r in reqs.iter().filter(|r| r.path.contains("/git/blobs/")) {
            assert!(r.response_body.starts_with(crate::remote::envelope::MAGIC), "{}", r.path);
            assert!(r.request_headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("accept") && v.contains("raw")));
        }
        // The writer moved its index without reading back: its next read of h2 costs nothing.
        g.clear_requests();
        assert_eq!(a.manifest(&h2).unwrap(), m);
        assert!(g.requests().is_empty(), "{:?}", requests(&g));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_pull_of_500_items_takes_at_most_10_requests() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        let t = tempfile::tempdir().unwrap();
        let a = machine_remote(&g, &t.path().join("a"));
        let h0 = a.head().unwrap().unwrap();
        let files: Vec<(String, Vec<u8>)> = (0..500)
            .map(|i| (format!("messages/p/s{}/m{i}.json", i % 7), format!("{{\"n\":{i},\"text\":\"{}\"}}\n", "x".repeat(i % 300)).into_bytes()))
            .collect();
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        let CommitOutcome::Committed(h1) = a.commit(Some(&h0), put(&refs)).unwrap() else { panic!() };
        g.clear_requests();
        let b = machine_remote(&g, &t.path().join("b"));
        let hb = b.head().unwrap().unwrap();
        assert_eq!(hb, h1);
        assert_eq!(b.manifest(&hb).unwrap().entries.len(), 500);
        for (_, v) in &files {
            assert_eq!(&b.blob(&sha256_hex(v)).unwrap(), v);
        }
        let reqs = requests(&g);
        assert!(reqs.len() <= 10, "{} requests: {reqs:?}", reqs.len());
        assert!(reqs.iter().any(|r| r.contains("/tarball/")), "{reqs:?}");
        // The contents waited on disk (memory stays bounded) and are gone once taken.
        let cache = t.path().join("b").join("data").join("github-blobs");
        assert!(cache.is_dir());
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
    })
    .await;
}

/// A new repository `name` holding a format-2 tree with `entries` (path, mode, bytes), committed
/// as another machine; returns a fresh remote's result of reading its head.
fn read_after(g: &FakeGithub, name: &str, entries: &[(&str, &str, &[u8])]) -> Result<Manifest, RemoteError> {
    g.add_repo(OWNER, name, true, true);
    let mut all: Vec<(&str, &str, &[u8])> = vec![(".oc-sync/format", "100644", b"2\n")];
    all.extend_from_slice(entries);
    let c = g.commit_entries_as_other_machine(OWNER, name, "main", &all).unwrap();
    let r = GithubRemote::connect(&g.url, g.token(), OWNER, name, "main").unwrap();
    r.manifest(&Version(c))
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_item_files_and_formats_are_refused() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        let good = item_file(b"fine\n");
        assert_eq!(read_after(&g, "h0", &[("config/b.md", "100644", &good)]).unwrap().entries.len(), 1);
        // Content that does not match its header.
        let mut swapped = good.clone();
        *swapped.last_mut().unwrap() = b'X';
        let e = read_after(&g, "h1", &[("config/b.md", "100644", &swapped)]).unwrap_err();
        assert!(e.is_corrupt() && e.to_string().contains("hashes to"), "{e}");
        // A header is checked for the key its path names (here: a machine name with a control
        // character fails validation).
        let mut bad = entry(Some(&sha256_hex(b"x")), 1, "evil\u{7}", 1);
        bad.category = "config".into();
        let bad_file = crate::remote::envelope::encode(&bad, Some(b"x"));
        let e = read_after(&g, "h2", &[("config/c.md", "100644", &bad_file)]).unwrap_err();
        assert!(e.is_corrupt() && e.to_string().contains("control"), "{e}");
        // A file that is not an item file at an item path.
        let e = read_after(&g, "h3", &[("config/d.md", "100644", b"just text\n")]).unwrap_err();
        assert!(e.is_corrupt() && e.to_string().contains("no header"), "{e}");
        // A format file saying 3.
        let e = read_after(&g, "h4", &[(".oc-sync/format", "100644", b"3\n")]).unwrap_err();
        assert!(matches!(e, RemoteError::UnsupportedFormat { found: 3, .. }), "{e}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_bytes_that_do_not_hash_to_the_sha_asked_are_refused() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        let r = connect(&g);
        let h0 = r.head().unwrap().unwrap();
        let CommitOutcome::Committed(h1) = r.commit(Some(&h0), put(&[("config/a.md", b"A\n")])).unwrap() else { panic!() };
        // A reader that must fetch the item file gets other bytes than the blob id names.
        g.faults().inject(fake_github::Fault::tamper("/repos/*/git/blobs/*"));
        let e = connect(&g).manifest(&h1).unwrap_err();
        assert!(e.is_corrupt() && e.to_string().contains("git blob id"), "{e}");
        // Served honestly, the same read works.
        assert_eq!(connect(&g).manifest(&h1).unwrap().entries.len(), 1);
    })
    .await;
}

#[test]
fn git_blob_ids_are_computed_like_git() {
    assert_eq!(super::read::git_blob_sha(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    assert_eq!(super::read::git_blob_sha(b"2\n"), "0cfbf08886fca9a91cb753ec8734c84fcbe52c9f");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_format_1_branch_is_read_for_the_upgrade_and_replaced_in_one_commit() {
    let gh = fake().await;
    let g = gh.clone();
    blocking(move || {
        // A format-1 branch as oc-sync 0.1 wrote it: the manifest, raw items, a chunked item.
        let items: Vec<(String, Vec<u8>)> =
            (0..20).map(|i| (format!("config/agents/a{i}.md"), format!("agent {i}\n").into_bytes())).collect();
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let big_hash = sha256_hex(&big);
        let mut m = Manifest::default();
        for (k, v) in &items {
            m.entries.insert(k.clone(), entry(Some(&sha256_hex(v)), v.len() as u64, "a", 2));
        }
        m.entries.insert("state/big.bin".into(), entry(Some(&big_hash), big.len() as u64, "a", 1));
        m.entries.insert("config/agents/gone.md".into(), entry(None, 0, "a", 3));
        let manifest = serde_json::to_vec_pretty(&m).unwrap();
        let p0 = format!(".oc-sync/chunks/{big_hash}/00000");
        let p1 = format!(".oc-sync/chunks/{big_hash}/00001");
        let mut files: Vec<(&str, &[u8])> = items.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        files.push((".oc-sync/manifest.json", &manifest));
        files.push((&p0, &big[..3000]));
        files.push((&p1, &big[3000..]));
        let v1 = Version(g.commit_as_other_machine(OWNER, REPO, "main", &files).unwrap());

        let r = connect(&g).with_chunk_bytes(3000);
        assert!(matches!(r.head(), Err(RemoteError::NeedsUpgrade)));
        let (at, read) = r.format1().unwrap().expect("format 1");
        assert_eq!((at.clone(), read.clone()), (v1.clone(), m.clone()));
        let mut changes = Changes { message: "upgrade to format 2".into(), ..Default::default() };
        for (k, e) in &read.entries {
            changes.entries.insert(k.clone(), e.clone());
            if let Some(h) = &e.hash {
                changes.blobs.insert(h.clone(), r.format1_blob(h).unwrap());
            }
        }
        assert_eq!(changes.blobs[&big_hash], big);
        let CommitOutcome::Committed(v2) = r.upgrade(&at, changes).unwrap() else { panic!("conflict") };
        // Another machine reads format 2 with the same entries and contents.
        let fresh = connect(&g);
        assert_eq!(fresh.head().unwrap(), Some(v2.clone()));
        assert_eq!(fresh.manifest(&v2).unwrap().entries, m.entries);
        assert_eq!(fresh.blob(&big_hash).unwrap(), big);
        assert!(fresh.format1().unwrap().is_none());
        let dir = g.repo_git_dir(OWNER, REPO);
        let (_, ls) = git(&dir, &["ls-tree", "-r", "--name-only", &v2.0]);
        assert!(!ls.contains("/00000") && ls.contains(&format!(".oc-sync/chunks/{big_hash}/1")), "{ls}");
        assert_eq!(git(&dir, &["show", &format!("{}:.oc-sync/format", v2.0)]).1, "2\n");
        let (_, parents) = git(&dir, &["log", "-1", "--format=%P", &v2.0]);
        assert_eq!(parents.trim(), v1.0);
        // The upgrade is a compare-and-swap: from a stale version it applies nothing.
        assert!(matches!(connect(&g).upgrade(&v1, Changes::default()).unwrap(), CommitOutcome::Conflict { .. }));
        let (ok, out) = git(&dir, &["fsck", "--strict"]);
        assert!(ok, "{out}");
    })
    .await;
}
