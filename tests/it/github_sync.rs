//! Drives the real `oc-sync` binary on 2-3 simulated machines (one HOME each) that sync through
//! the in-process fake GitHub (crate `fake_github`): repository creation, convergence, races,
//! faults, the private-only rule, request economy, the tarball pull, status and chunking.
//!
//! The fake runs on the test's multi-thread runtime; every run of the binary happens inside
//! `spawn_blocking`.

use std::path::Path;
use std::process::Command;

use fake_github::{Fault, FakeGithub, FakeOptions, RecordedRequest};
use serde_json::Value;

const REPO: &str = ".opencode-sync";

use crate::common::Machine;

/// A machine with its own HOME, the given machine id and extra oc-sync settings, pointed at `gh`.
fn machine(gh: &FakeGithub, id: &str, settings: Value) -> Machine {
    Machine::new(id).github(&gh.url, gh.token()).settings(settings)
}

async fn start(opts: FakeOptions) -> FakeGithub {
    FakeGithub::start(opts).await.expect("start the fake GitHub")
}

fn git(dir: &Path, args: &[&str]) -> (bool, Vec<u8>, String) {
    let o = Command::new("git").arg("-C").arg(dir).args(args).output().expect("run git");
    (o.status.success(), o.stdout, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The bytes of `path` on branch main of the sync repository, if present: an item file's
/// content after its header line (format 2), any other file as it is.
fn repo_file(gh: &FakeGithub, path: &str) -> Option<Vec<u8>> {
    let (ok, out, _) = git(&gh.repo_git_dir(gh.login(), REPO), &["show", &format!("main:{path}")]);
    ok.then(|| item_content(out))
}

/// An item file's content (after its header line), or the bytes as they are for other files.
fn item_content(file: Vec<u8>) -> Vec<u8> {
    if file.starts_with(oc_sync::remote::envelope::MAGIC) {
        let nl = file.iter().position(|&b| b == b'\n').expect("a header line");
        return file[nl + 1..].to_vec();
    }
    file
}

/// Every file path on branch main of the sync repository.
fn repo_paths(gh: &FakeGithub) -> Vec<String> {
    let (ok, out, err) = git(&gh.repo_git_dir(gh.login(), REPO), &["ls-tree", "-r", "--name-only", "main"]);
    assert!(ok, "git ls-tree: {err}");
    String::from_utf8_lossy(&out).lines().map(str::to_owned).collect()
}

fn assert_fsck(gh: &FakeGithub) {
    let (ok, out, err) = git(&gh.repo_git_dir(gh.login(), REPO), &["fsck", "--strict"]);
    assert!(ok, "git fsck --strict failed:\n{}\n{err}", String::from_utf8_lossy(&out));
}

fn head(gh: &FakeGithub) -> Option<String> {
    gh.branch_head(gh.login(), REPO, "main")
}

fn show(reqs: &[RecordedRequest]) -> String {
    reqs.iter().map(|r| format!("  {} {} -> {}\n", r.method, r.path, r.status)).collect()
}

fn is_post_tree(r: &RecordedRequest) -> bool {
    r.method == "POST" && r.path.ends_with("/git/trees")
}

// ---------------------------------------------------------------------------------------------

async fn first_sync_and_convergence(opts: FakeOptions) {
    let unreadable = opts.ref_unreadable_after_create as usize;
    let gh = start(opts).await;
    let a = machine(&gh, "a", serde_json::json!({}));
    let b = machine(&gh, "b", serde_json::json!({}));
    let cfg_text = "{\n  \"model\": \"anthropic/claude\",\n  \"theme\": \"dark\"\n}\n";
    a.write_cfg("opencode.json", cfg_text);
    a.write_state("prompt-history.jsonl", "{\"input\":\"hello\"}\n");
    assert!(head(&gh).is_none());

    let v = a.sync_json().await;
    assert_eq!(v["pushed"], serde_json::json!(["config/opencode.json", "state/prompt-history.jsonl"]), "{v}");

    // The repository was created private, in the token's account.
    let reqs = gh.requests();
    let create: Vec<&RecordedRequest> = reqs.iter().filter(|r| r.method == "POST" && r.path == "/user/repos").collect();
    assert_eq!(create.len(), 1, "one POST /user/repos:\n{}", show(&reqs));
    let body = create[0].request_json().unwrap();
    assert_eq!(body["private"], true, "{body}");
    assert_eq!(body["name"], REPO, "{body}");
    assert_eq!(create[0].status, 201);
    assert_eq!(create[0].response_json().unwrap()["private"], true);
    assert!(gh.repo_git_dir(gh.login(), REPO).is_dir());
    let empty_answers = reqs.iter().filter(|r| r.path.contains("/git/ref") && r.status == 409).count();
    assert_eq!(empty_answers, unreadable, "ref reads answered 409 right after creation:\n{}", show(&reqs));

    // The files are in the repository, readable.
    assert_eq!(repo_file(&gh, "config/opencode.json").as_deref(), Some(cfg_text.as_bytes()));
    assert_eq!(repo_file(&gh, "state/prompt-history.jsonl").as_deref(), Some(&b"{\"input\":\"hello\"}\n"[..]));
    assert!(repo_file(&gh, ".oc-sync/manifest.json").is_some());
    assert_eq!(repo_file(&gh, ".oc-sync/format").as_deref(), Some(&b"2\n"[..]));
    assert_eq!(v["version"].as_str(), head(&gh).as_deref(), "{v}");

    // B pulls them byte-identically.
    let v = b.sync_json().await;
    assert_eq!(v["pulled"], serde_json::json!(["config/opencode.json", "state/prompt-history.jsonl"]), "{v}");
    assert_eq!(v["pushed"], serde_json::json!([]), "{v}");
    assert_eq!(b.read_cfg("opencode.json").as_deref(), Some(cfg_text));
    assert_eq!(b.read_state("prompt-history.jsonl").as_deref(), Some("{\"input\":\"hello\"}\n"));
    assert_eq!(a.synced_files(), b.synced_files());
    assert_eq!(b.json("opencode-sync.json")["machineId"], "b", "oc-sync's own config is never synced");
    // Only one repository creation in all.
    assert_eq!(gh.requests().iter().filter(|r| r.method == "POST" && r.path == "/user/repos").count(), 1);

    // B edits; A gets it.
    b.set_key("theme", "light");
    b.write_cfg("agents/review.md", "# review\nbe nice\n");
    let v = b.sync_json().await;
    assert_eq!(v["pushed"], serde_json::json!(["config/agents/review.md", "config/opencode.json"]), "{v}");
    let v = a.sync_json().await;
    assert_eq!(v["pulled"], serde_json::json!(["config/agents/review.md", "config/opencode.json"]), "{v}");
    assert_eq!(a.json("opencode.json")["theme"], "light");
    assert_eq!(a.read_cfg("agents/review.md").as_deref(), Some("# review\nbe nice\n"));
    assert_eq!(a.synced_files(), b.synced_files());
    assert_eq!(repo_file(&gh, "config/agents/review.md").as_deref(), Some(&b"# review\nbe nice\n"[..]));
    assert_fsck(&gh);
}

#[tokio::test(flavor = "multi_thread")]
async fn first_sync_creates_a_private_repo_and_two_machines_converge() {
    first_sync_and_convergence(FakeOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn first_sync_copes_with_a_branch_unreadable_right_after_creation() {
    first_sync_and_convergence(FakeOptions { ref_unreadable_after_create: 2, ..Default::default() }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_machines_converge() {
    let gh = start(FakeOptions::default()).await;
    let ms: Vec<Machine> = ["a", "b", "c"].iter().map(|id| machine(&gh, id, serde_json::json!({}))).collect();
    ms[0].write_cfg("opencode.json", "{\n  \"model\": \"m0\"\n}\n");
    for m in &ms {
        m.sync_json().await;
    }
    // Offline: each changes its own key and adds its own file.
    ms[0].set_key("model", "m1");
    ms[1].set_key("theme", "light");
    ms[2].set_key("username", "me");
    for (m, id) in ms.iter().zip(["a", "b", "c"]) {
        m.write_cfg(&format!("agents/{id}.md"), &format!("agent of {id}\n"));
    }
    for i in [0, 1, 2, 0, 1] {
        ms[i].sync_json().await;
    }
    for m in &ms {
        let j = m.json("opencode.json");
        assert_eq!(
            (j["model"].as_str(), j["theme"].as_str(), j["username"].as_str()),
            (Some("m1"), Some("light"), Some("me")),
            "{j}"
        );
        for id in ["a", "b", "c"] {
            assert_eq!(m.read_cfg(&format!("agents/{id}.md")), Some(format!("agent of {id}\n")));
        }
    }
    assert_eq!(ms[0].synced_files(), ms[1].synced_files());
    assert_eq!(ms[0].synced_files(), ms[2].synced_files());
    // The repository holds the same merged file.
    let repo_json: Value = serde_json::from_slice(&repo_file(&gh, "config/opencode.json").unwrap()).unwrap();
    assert_eq!(repo_json, ms[0].json("opencode.json"));
    assert_fsck(&gh);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_race_is_retried() {
    let gh = start(FakeOptions::default()).await;
    let a = machine(&gh, "a", serde_json::json!({}));
    a.write_cfg("opencode.json", "{ \"model\": \"x\" }\n");
    a.sync_json().await;
    a.write_cfg("agents/new.md", "new agent\n");
    gh.faults().race_next_ref_update(gh.login(), REPO, "main");
    gh.clear_requests();
    let v = a.sync_json().await;
    assert_eq!(v["pushed"], serde_json::json!(["config/agents/new.md"]), "{v}");
    let races = gh.faults().race_commits();
    assert_eq!(races.len(), 1, "the race happened");
    let reqs = gh.requests();
    let patches: Vec<&RecordedRequest> = reqs.iter().filter(|r| r.method == "PATCH").collect();
    assert!(patches.len() >= 2 && patches[0].status == 422, "the first ref update lost the race:\n{}", show(&reqs));
    assert_eq!(patches.last().unwrap().status, 200, "{}", show(&reqs));

    // Both the other machine's commit and A's change are in the final tree.
    let paths = repo_paths(&gh);
    assert!(paths.iter().any(|p| p.starts_with("other-machine-")), "{paths:?}");
    assert_eq!(repo_file(&gh, "config/agents/new.md").as_deref(), Some(&b"new agent\n"[..]));
    assert!(repo_file(&gh, "config/opencode.json").is_some());
    let (ok, log, _) = git(&gh.repo_git_dir(gh.login(), REPO), &["log", "--format=%H %an", "main"]);
    assert!(ok);
    let log = String::from_utf8_lossy(&log).into_owned();
    assert!(log.lines().count() >= 3, "initial + first sync + race + retry:\n{log}");
    assert!(log.lines().any(|l| l.ends_with("Another Machine") && l.starts_with(&races[0])), "{log}");
    // A's commit is on top of the race commit.
    let (ok, _, _) = git(&gh.repo_git_dir(gh.login(), REPO), &["merge-base", "--is-ancestor", &races[0], "main"]);
    assert!(ok, "the race commit is an ancestor of main");
    assert_eq!(v["version"].as_str(), head(&gh).as_deref());
    assert_fsck(&gh);
}

// ---- faults ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn transient_faults_are_retried() {
    let gh = start(FakeOptions { fault_retry_after: 1, ..Default::default() }).await;
    let a = machine(&gh, "a", serde_json::json!({}));
    let b = machine(&gh, "b", serde_json::json!({}));
    a.write_cfg("opencode.json", "{ \"model\": \"x\" }\n");
    a.sync_json().await;

    // 502 twice on the tree creation.
    a.write_cfg("agents/one.md", "one\n");
    gh.faults().fail_next("/repos/*/git/trees", 2, 502);
    gh.clear_requests();
    let v = a.sync_json().await;
    assert_eq!(v["pushed"], serde_json::json!(["config/agents/one.md"]), "{v}");
    let reqs = gh.requests();
    let trees: Vec<u16> = reqs.iter().filter(|r| is_post_tree(r)).map(|r| r.status).collect();
    assert_eq!(trees, vec![502, 502, 201], "{}", show(&reqs));
    assert_eq!(gh.faults().pending(), 0);
    assert_eq!(repo_file(&gh, "config/agents/one.md").as_deref(), Some(&b"one\n"[..]));

    // A dropped connection on the commit creation.
    a.write_cfg("agents/two.md", "two\n");
    gh.faults().drop_next("/repos/*/git/commits", 1);
    gh.clear_requests();
    let v = a.sync_json().await;
    assert_eq!(v["pushed"], serde_json::json!(["config/agents/two.md"]), "{v}");
    let reqs = gh.requests();
    let commits: Vec<u16> = reqs.iter().filter(|r| r.method == "POST" && r.path.ends_with("/git/commits")).map(|r| r.status).collect();
    assert_eq!(commits, vec![0, 201], "{}", show(&reqs));
    assert_eq!(repo_file(&gh, "config/agents/two.md").as_deref(), Some(&b"two\n"[..]));

    // 403 with Retry-After (secondary rate limit) on the ref update.
    a.write_cfg("agents/three.md", "three\n");
    gh.faults().inject(Fault::status(403, "/repos/*/git/refs/heads/*").method("PATCH"));
    gh.clear_requests();
    let started = std::time::Instant::now();
    let v = a.sync_json().await;
    assert_eq!(v["pushed"], serde_json::json!(["config/agents/three.md"]), "{v}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "the Retry-After wait is scaled by OC_SYNC_GITHUB_RETRY_MS");
    let reqs = gh.requests();
    let patches: Vec<u16> = reqs.iter().filter(|r| r.method == "PATCH").map(|r| r.status).collect();
    assert_eq!(patches, vec![403, 200], "{}", show(&reqs));
    assert_eq!(repo_file(&gh, "config/agents/three.md").as_deref(), Some(&b"three\n"[..]));

    // Everything arrives on the other machine.
    b.sync_json().await;
    assert_eq!(a.synced_files(), b.synced_files());
    assert_fsck(&gh);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_persistent_server_error_fails_cleanly_and_touches_nothing() {
    let gh = start(FakeOptions::default()).await;
    let a = machine(&gh, "a", serde_json::json!({}));
    a.write_cfg("opencode.json", "{ \"model\": \"x\" }\n");
    a.sync_json().await;
    let head_before = head(&gh);
    a.write_cfg("opencode.json", "{ \"model\": \"y\" }\n");
    a.write_state("prompt-history.jsonl", "{\"input\":\"local\"}\n");
    let local_before = a.synced_files();

    gh.faults().fail_next("/repos/*/git/trees", 100, 500);
    let r = a.run_async(&["sync"]).await;
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.out, r.err);
    assert!(!r.all().contains(gh.token()), "the token is never printed:\n{}", r.all());
    assert!(r.err.contains("sync failed"), "{}", r.err);
    assert!(r.err.contains("500"), "the message names the HTTP status: {}", r.err);
    assert_eq!(a.synced_files(), local_before, "local files untouched");
    assert_eq!(head(&gh), head_before, "the branch did not move");
    let r = a.run_async(&["sync", "--json"]).await;
    assert_eq!(r.code, 1);
    let v: Value = serde_json::from_str(&r.out).unwrap_or_else(|e| panic!("{e}: {}", r.out));
    assert_eq!(v["ok"], false);
    assert!(!r.all().contains(gh.token()));

    // Once GitHub recovers, the pending changes go out.
    gh.faults().clear();
    let v = a.sync_json().await;
    assert_eq!(v["pushed"], serde_json::json!(["config/opencode.json", "state/prompt-history.jsonl"]), "{v}");
    assert_eq!(repo_file(&gh, "config/opencode.json").as_deref(), Some(&b"{ \"model\": \"y\" }\n"[..]));
    assert_eq!(a.synced_files(), local_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_explained_without_printing_it() {
    let gh = start(FakeOptions::default()).await;
    let a = machine(&gh, "a", serde_json::json!({}));
    a.write_cfg("opencode.json", "{ \"model\": \"x\" }\n");
    let wrong = "ghp_wrongwrongwrongwrongwrongwrong1234";
    let r = a.run_env_async(&["sync"], &[("GITHUB_TOKEN", wrong)]).await;
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.out, r.err);
    let all = r.all();
    assert!(all.contains("wrong, expired or revoked"), "{all}");
    assert!(all.contains("personal access token") && all.contains("oc-sync login"), "says how to create one: {all}");
    assert!(!all.contains(wrong) && !all.contains(gh.token()), "no token in the output: {all}");
    assert!(gh.requests().iter().all(|q| q.status == 401), "{}", show(&gh.requests()));
    assert!(head(&gh).is_none(), "nothing created");

    // After a successful sync with the right token, a now-revoked token is reported too.
    a.sync_json().await;
    let r = a.run_env_async(&["sync"], &[("GITHUB_TOKEN", wrong)]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.all().contains("wrong, expired or revoked"), "{}", r.all());
    assert!(!r.all().contains(wrong));
    assert_eq!(a.read_cfg("opencode.json").as_deref(), Some("{ \"model\": \"x\" }\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn public_repository_is_refused() {
    let gh = start(FakeOptions::default()).await;
    gh.add_repo(gh.login(), REPO, false, true);
    let head_before = head(&gh);
    let a = machine(&gh, "a", serde_json::json!({}));
    a.write_cfg("opencode.json", "{ \"model\": \"secret\" }\n");
    let r = a.run_async(&["sync"]).await;
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.out, r.err);
    assert!(r.err.contains("public") && r.err.contains("private"), "{}", r.err);
    assert!(!r.all().contains(gh.token()));
    let reqs = gh.requests();
    assert!(!reqs.iter().any(|q| q.method != "GET"), "nothing written:\n{}", show(&reqs));
    assert_eq!(head(&gh), head_before);
    assert_eq!(repo_paths(&gh), vec!["README.md".to_string()]);

    // Still refused when the repository turns public after a successful sync (once the
    // visibility is re-checked: the cache is keyed by the settings, so a new machine checks now).
    gh.set_private(gh.login(), REPO, true);
    a.sync_json().await;
    gh.set_private(gh.login(), REPO, false);
    let b = machine(&gh, "b", serde_json::json!({}));
    b.write_cfg("agents/x.md", "x\n");
    gh.clear_requests();
    let r = b.run_async(&["sync"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.err.contains("public"), "{}", r.err);
    assert!(!gh.requests().iter().any(is_post_tree));
    assert!(b.read_cfg("opencode.json").is_none(), "nothing pulled from a public repository");
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_repository_is_initialised() {
    let gh = start(FakeOptions::default()).await;
    gh.add_repo(gh.login(), REPO, true, false);
    assert!(head(&gh).is_none());
    let a = machine(&gh, "a", serde_json::json!({}));
    a.write_cfg("opencode.json", "{ \"model\": \"x\" }\n");
    a.write_state("prompt-history.jsonl", "{\"input\":\"x\"}\n");
    let v = a.sync_json().await;
    assert_eq!(v["pushed"], serde_json::json!(["config/opencode.json", "state/prompt-history.jsonl"]), "{v}");
    assert!(!gh.requests().iter().any(|r| r.path == "/user/repos"), "the existing repository is used");
    assert_eq!(repo_file(&gh, "config/opencode.json").as_deref(), Some(&b"{ \"model\": \"x\" }\n"[..]));
    assert_eq!(repo_file(&gh, "state/prompt-history.jsonl").as_deref(), Some(&b"{\"input\":\"x\"}\n"[..]));
    assert_eq!(v["version"].as_str(), head(&gh).as_deref());
    assert_fsck(&gh);
    let b = machine(&gh, "b", serde_json::json!({}));
    b.sync_json().await;
    assert_eq!(a.synced_files(), b.synced_files());
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sync_is_one_conditional_request() {
    let gh = start(FakeOptions::default()).await;
    let a = machine(&gh, "a", serde_json::json!({}));
    a.write_cfg("opencode.json", "{ \"model\": \"x\" }\n");
    a.sync_json().await;
    let ref_path = format!("/repos/{}/{REPO}/git/ref/heads/main", gh.login());

    // The first idle sync after a push: one request (it cannot know the ref's ETag yet).
    gh.clear_requests();
    let out = a.ok_async(&["sync"]).await;
    assert!(out.contains("already in sync"), "{out}");
    let reqs = gh.requests();
    assert_eq!(reqs.len(), 1, "{}", show(&reqs));
    assert_eq!((reqs[0].method.as_str(), reqs[0].path.as_str()), ("GET", ref_path.as_str()));

    // From then on: one conditional request answered 304.
    for _ in 0..2 {
        gh.clear_requests();
        let out = a.ok_async(&["sync"]).await;
        assert!(out.contains("already in sync"), "{out}");
        let reqs = gh.requests();
        assert_eq!(reqs.len(), 1, "{}", show(&reqs));
        assert_eq!((reqs[0].method.as_str(), reqs[0].path.as_str(), reqs[0].status), ("GET", ref_path.as_str(), 304), "{}", show(&reqs));
        assert!(reqs[0].request_headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("if-none-match")));
    }

    // A one-file change: GET ref + POST trees + POST commits + PATCH ref.
    a.write_cfg("agents/x.md", "x\n");
    gh.clear_requests();
    let v = a.sync_json().await;
    assert_eq!(v["pushed"], serde_json::json!(["config/agents/x.md"]), "{v}");
    let reqs = gh.requests();
    assert!(reqs.len() <= 4, "at most 4 requests for a one-file change:\n{}", show(&reqs));
    assert_eq!(reqs.iter().filter(|r| is_post_tree(r)).count(), 1, "{}", show(&reqs));
    assert_eq!(reqs.iter().filter(|r| r.method == "PATCH").count(), 1, "{}", show(&reqs));
}

#[tokio::test(flavor = "multi_thread")]
async fn first_pull_uses_the_tarball() {
    let gh = start(FakeOptions::default()).await;
    let a = machine(&gh, "a", serde_json::json!({}));
    let b = machine(&gh, "b", serde_json::json!({}));
    for i in 0..200 {
        a.write_cfg(&format!("skills/s{i}/SKILL.md"), &format!("---\nname: s{i}\n---\nskill number {i}\n"));
    }
    let v = a.sync_json().await;
    assert_eq!(v["pushed"].as_array().unwrap().len(), 200, "{v}");
    assert_eq!(repo_file(&gh, "config/skills/s7/SKILL.md").as_deref(), Some(&b"---\nname: s7\n---\nskill number 7\n"[..]));

    gh.clear_requests();
    let v = b.sync_json().await;
    assert_eq!(v["pulled"].as_array().unwrap().len(), 200, "{v}");
    let reqs = gh.requests();
    eprintln!("B's first pull:\n{}", show(&reqs));
    assert!(reqs.len() < 15, "a handful of requests, not one per file:\n{}", show(&reqs));
    assert_eq!(reqs.iter().filter(|r| r.method == "GET" && r.path.contains("/tarball/")).count(), 1, "{}", show(&reqs));
    assert!(reqs.iter().filter(|r| r.path.contains("/git/blobs/")).count() <= 1, "only the manifest is read as a blob:\n{}", show(&reqs));
    assert_eq!(a.synced_files(), b.synced_files());
    assert_eq!(b.synced_files().len(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_the_github_remote() {
    let gh = start(FakeOptions::default()).await;
    let a = machine(&gh, "a", serde_json::json!({}));
    a.write_cfg("opencode.json", "{ \"model\": \"x\" }\n");
    a.sync_json().await;
    gh.clear_requests();
    let r = a.run_async(&["status", "--json"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains(gh.token()), "the token is masked:\n{}", r.out);
    let v: Value = serde_json::from_str(&r.out).unwrap_or_else(|e| panic!("{e}: {}", r.out));
    let g = &v["github"];
    assert_eq!(g["owner"], gh.login(), "{g}");
    assert_eq!(g["account"], gh.login(), "{g}");
    assert_eq!(g["repo"], REPO, "{g}");
    assert_eq!(g["branch"], "main", "{g}");
    assert_eq!(g["visibility"], "private", "{g}");
    assert_eq!(g["lastPush"]["sha"].as_str(), head(&gh).as_deref(), "{g}");
    assert_eq!(g["tokenSource"], "GITHUB_TOKEN", "{g}");
    assert!(g["token"].is_string() && g["token"] != gh.token(), "{g}");
    assert_eq!(v["remote"]["kind"], "github", "{v}");
    assert!(gh.requests().is_empty(), "status contacts nobody:\n{}", show(&gh.requests()));
    // Plain text too.
    let r = a.run_async(&["status"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains(gh.token()));
    assert!(r.out.contains(REPO), "{}", r.out);
}

/// A deterministic, incompressible-looking byte string.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_file_is_chunked() {
    // Any file is allowed under skills/; the file source's limit is 50 MiB. GitHub (the fake) is
    // told to refuse files over 48 MiB, so only a chunked upload can succeed.
    const MIB: usize = 1024 * 1024;
    let gh = start(FakeOptions { max_file_size: 48 * MIB as u64, ..Default::default() }).await;
    let a = machine(&gh, "a", serde_json::json!({}));
    let b = machine(&gh, "b", serde_json::json!({}));
    let big = noise(49 * MIB, 42);
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&big))
    };
    a.write_cfg_bytes("skills/big/weights.bin", &big);
    a.write_cfg("skills/big/SKILL.md", "big skill\n");
    let v = a.sync_json().await;
    assert_eq!(v["pushed"], serde_json::json!(["config/skills/big/SKILL.md", "config/skills/big/weights.bin"]), "{v}");
    let paths = repo_paths(&gh);
    let parts: Vec<&String> = paths.iter().filter(|p| p.starts_with(".oc-sync/chunks/")).collect();
    assert_eq!(parts, vec![&format!(".oc-sync/chunks/{sha}/0"), &format!(".oc-sync/chunks/{sha}/1")], "{paths:?}");
    // The item's own file is its header naming the parts.
    assert_eq!(repo_file(&gh, "config/skills/big/weights.bin"), Some(Vec::new()), "{paths:?}");
    let p0 = repo_file(&gh, parts[0]).unwrap();
    let p1 = repo_file(&gh, parts[1]).unwrap();
    assert_eq!(p0.len(), 48 * MIB);
    assert_eq!([p0, p1].concat(), big);

    let v = b.sync_json().await;
    assert_eq!(v["pulled"], serde_json::json!(["config/skills/big/SKILL.md", "config/skills/big/weights.bin"]), "{v}");
    assert!(std::fs::read(b.cfg_dir().join("skills/big/weights.bin")).unwrap() == big, "byte-identical");
    assert!(a.synced_files() == b.synced_files());

    // Deleting it removes its parts from the branch, and the file on the other machine.
    std::fs::remove_file(a.cfg_dir().join("skills/big/weights.bin")).unwrap();
    let v = a.sync_json().await;
    assert_eq!(v["deletedRemote"], serde_json::json!(["config/skills/big/weights.bin"]), "{v}");
    let paths = repo_paths(&gh);
    assert!(!paths.iter().any(|p| p.starts_with(".oc-sync/chunks/")), "{paths:?}");
    b.sync_json().await;
    assert!(!b.cfg_dir().join("skills/big/weights.bin").exists());
    assert_fsck(&gh);
}

#[tokio::test(flavor = "multi_thread")]
async fn deletions_and_binary_files_travel() {
    let gh = start(FakeOptions::default()).await;
    let a = machine(&gh, "a", serde_json::json!({}));
    let b = machine(&gh, "b", serde_json::json!({}));
    let icon: Vec<u8> = (0..=255u8).cycle().take(5000).chain([0xff, 0xfe, 0x00]).collect();
    a.write_cfg_bytes("skills/pic/icon.png", &icon);
    a.write_cfg("agents/gone.md", "soon gone\n");
    a.write_cfg("opencode.json", "{ \"model\": \"x\" }\n");
    gh.clear_requests();
    a.sync_json().await;
    // The binary file went up as a blob (base64), not inline.
    let reqs = gh.requests();
    assert_eq!(reqs.iter().filter(|r| r.method == "POST" && r.path.ends_with("/git/blobs")).count(), 1, "{}", show(&reqs));
    assert_eq!(repo_file(&gh, "config/skills/pic/icon.png"), Some(icon.clone()));
    b.sync_json().await;
    assert_eq!(std::fs::read(b.cfg_dir().join("skills/pic/icon.png")).unwrap(), icon);

    std::fs::remove_file(a.cfg_dir().join("agents/gone.md")).unwrap();
    let v = a.sync_json().await;
    assert_eq!(v["deletedRemote"], serde_json::json!(["config/agents/gone.md"]), "{v}");
    // A tombstone: the header alone (it keeps the deleting machine's clock).
    assert_eq!(repo_file(&gh, "config/agents/gone.md"), Some(Vec::new()), "{:?}", repo_paths(&gh));
    let v = b.sync_json().await;
    assert_eq!(v["deletedLocal"], serde_json::json!(["config/agents/gone.md"]), "{v}");
    assert!(b.read_cfg("agents/gone.md").is_none());
    assert_eq!(a.synced_files(), b.synced_files());
    assert_fsck(&gh);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_rate_limit_fails_with_a_clear_message() {
    let gh = start(FakeOptions::default()).await;
    let a = machine(&gh, "a", serde_json::json!({}));
    a.write_cfg("opencode.json", "{ \"model\": \"x\" }\n");
    a.sync_json().await;
    a.write_cfg("opencode.json", "{ \"model\": \"y\" }\n");
    let local_before = a.synced_files();
    let head_before = head(&gh);
    gh.faults().set_rate_remaining(0);
    let r = a.run_async(&["sync"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.err.contains("rate limit"), "{}", r.err);
    assert!(!r.all().contains(gh.token()));
    assert_eq!(a.synced_files(), local_before);
    assert_eq!(head(&gh), head_before);
    gh.faults().set_rate_remaining(5000);
    let v = a.sync_json().await;
    assert_eq!(v["pushed"], serde_json::json!(["config/opencode.json"]), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_tree_listing_is_walked() {
    let gh = start(FakeOptions { tree_truncate_entries: 10, ..Default::default() }).await;
    let a = machine(&gh, "a", serde_json::json!({}));
    let b = machine(&gh, "b", serde_json::json!({}));
    for i in 0..20 {
        a.write_cfg(&format!("agents/a{i}.md"), &format!("agent {i}\n"));
    }
    a.write_cfg("opencode.json", "{ \"model\": \"x\" }\n");
    a.sync_json().await;
    let v = b.sync_json().await;
    assert_eq!(v["pulled"].as_array().unwrap().len(), 21, "{v}");
    assert_eq!(a.synced_files(), b.synced_files());
    // And a change on top of it.
    b.write_cfg("agents/a3.md", "changed\n");
    b.sync_json().await;
    a.sync_json().await;
    assert_eq!(a.read_cfg("agents/a3.md").as_deref(), Some("changed\n"));
    assert_eq!(a.synced_files(), b.synced_files());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_branch_is_created_and_used() {
    let gh = start(FakeOptions::default()).await;
    let a = machine(&gh, "a", serde_json::json!({ "branch": "oc-sync-data" }));
    let b = machine(&gh, "b", serde_json::json!({ "branch": "oc-sync-data" }));
    a.write_cfg("opencode.json", "{ \"model\": \"x\" }\n");
    let v = a.sync_json().await;
    let on_branch = gh.branch_head(gh.login(), REPO, "oc-sync-data");
    assert!(on_branch.is_some());
    assert_eq!(v["version"].as_str(), on_branch.as_deref(), "{v}");
    let main = head(&gh).expect("the initial commit stays on main");
    let (ok, out, _) = git(&gh.repo_git_dir(gh.login(), REPO), &["show", "oc-sync-data:config/opencode.json"]);
    assert!(ok && item_content(out) == b"{ \"model\": \"x\" }\n");
    b.sync_json().await;
    assert_eq!(a.synced_files(), b.synced_files());
    assert_eq!(head(&gh).as_deref(), Some(main.as_str()), "main untouched");
    assert_fsck(&gh);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_repository_of_another_owner_is_not_created() {
    let gh = start(FakeOptions::default()).await;
    let c = machine(&gh, "c", serde_json::json!({ "repoOwner": "some-org" }));
    c.write_cfg("opencode.json", "{ \"model\": \"x\" }\n");
    let r = c.run_async(&["sync"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.err.contains("some-org/.opencode-sync") && r.err.contains("does not exist"), "{}", r.err);
    assert!(!r.all().contains(gh.token()));
    assert!(!gh.requests().iter().any(|q| q.path == "/user/repos"), "{}", show(&gh.requests()));
}

// ---- regressions ---------------------------------------------------------------------------

/// `repoOwner` set to the token's own login, repository missing: it is created (GET /user tells
/// that the owner is the person's own account).
#[tokio::test(flavor = "multi_thread")]
async fn repo_owner_set_to_the_own_account_creates_the_repository() {
    let gh = start(FakeOptions::default()).await;
    let a = machine(&gh, "a", serde_json::json!({ "repoOwner": gh.login() }));
    a.write_cfg("opencode.json", "{ \"model\": \"x\" }\n");
    a.sync_json().await;
    assert_eq!(repo_file(&gh, "config/opencode.json").as_deref(), Some(&b"{ \"model\": \"x\" }\n"[..]));
}

/// Right after creating the repository only its default branch exists: a configured other branch
/// is not waited for (it is created by the first commit).
#[tokio::test(flavor = "multi_thread")]
async fn first_sync_with_a_configured_branch_does_not_wait_for_it() {
    let gh = start(FakeOptions::default()).await;
    let a = machine(&gh, "a", serde_json::json!({ "branch": "oc-sync-data" }));
    a.write_cfg("opencode.json", "{ \"model\": \"x\" }\n");
    let started = std::time::Instant::now();
    a.sync_json().await;
    let reqs = gh.requests();
    let polls = reqs.iter().filter(|r| r.path.ends_with("/git/ref/heads/oc-sync-data")).count();
    assert!(polls <= 2, "{}", show(&reqs));
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "took {:?}", started.elapsed());
}

/// A hostile commit in the sync repository: a symbolic link (aimed at the victim's `.bashrc`) and a
/// submodule at item paths.
/// The victim's HOME changes only where a sync may write; both are refused by name in `sync`,
/// `sync --json` and `status`; neither is fetched; idle syncs stay one conditional request.
#[tokio::test(flavor = "multi_thread")]
async fn symlinks_and_submodules_in_the_repository_change_nothing_outside_the_synced_dirs() {
    use crate::common::home_snapshot as hs;
    let gh = start(FakeOptions::default()).await;
    let a = machine(&gh, "a", serde_json::json!({}));
    a.write_cfg("agents/ok.md", "ok\n");
    a.sync_json().await;
    let target: &[u8] = b"../../.bashrc";
    let gitlink: &[u8] = b"89abcdef0123456789abcdef0123456789abcdef";
    gh.commit_entries_as_other_machine(
        gh.login(),
        REPO,
        "main",
        &[("config/agents/x.md", "120000", target), ("config/agents/sub.md", "160000", gitlink)],
    )
    .unwrap();
    let link_blob = String::from_utf8_lossy(&git(&gh.repo_git_dir(gh.login(), REPO), &["rev-parse", "main:config/agents/x.md"]).1).trim().to_string();

    for (m, first_pull) in [(machine(&gh, "b", serde_json::json!({})), true), (a, false)] {
        hs::plant_canaries(&m.home);
        let before = hs::snapshot(&m.home);
        gh.clear_requests();
        let out = m.ok_async(&["sync"]).await;
        let reqs = gh.requests();
        assert!(out.contains("refused from the remote: config/agents/x.md: a symbolic link in the repository"), "{out}");
        assert!(out.contains("refused from the remote: config/agents/sub.md: a submodule in the repository"), "{out}");
        // A first pull lists the tree (which carries modes) and never asks for them. An incremental
        // pull learns of new paths from `compare`, which has no modes: it may ask for a new path's
        // blob once (a submodule's commit id answers 404, a link's target fails the item check),
        // then lists the tree, which decides; nothing of theirs is ever written.
        if first_pull {
            assert!(!reqs.iter().any(|r| r.path.contains(&link_blob) || r.path.contains("89abcdef0123")), "{}", show(&reqs));
        } else {
            assert!(reqs.iter().any(|r| r.path.contains("/git/trees/")), "{}", show(&reqs));
        }
        let after = hs::snapshot(&m.home);
        let changed = hs::assert_only_changed_under(&before, &after, &[".config/opencode/agents/ok.md", ".config/opencode/agents", ".local/state/oc-sync", ".local/share/oc-sync/github-blobs"]);
        assert!(!changed.iter().any(|c| c.contains("x.md") || c.contains("sub.md")), "{changed:?}");
        assert!(std::fs::symlink_metadata(m.cfg_dir().join("agents/x.md")).is_err());
        hs::assert_canaries_intact(&m.home);
        let v = m.sync_json().await;
        assert_eq!(v["refused"].as_array().unwrap().len(), 2, "{v}");
        let status = m.ok_async(&["status"]).await;
        assert!(status.contains("refused    config/agents/x.md: a symbolic link"), "{status}");
        // Idle: one conditional request, nothing downloaded again.
        gh.clear_requests();
        m.ok_async(&["sync"]).await;
        let reqs = gh.requests();
        assert_eq!(reqs.len(), 1, "{}", show(&reqs));
        assert_eq!(reqs[0].status, 304, "{}", show(&reqs));
    }
}

/// a and b share a config; b adds b1 and syncs; a adds a1 (its sync will merge). Returns them.
async fn lost_answer_world(gh: &FakeGithub) -> (Machine, Machine) {
    let a = machine(gh, "a", serde_json::json!({}));
    let b = machine(gh, "b", serde_json::json!({}));
    a.write_cfg("opencode.json", "{ \"seed\": \"s\" }\n");
    a.sync_json().await;
    b.sync_json().await;
    b.set_key("b1", "B");
    b.sync_json().await;
    a.set_key("a1", "A");
    (a, b)
}

/// After a's failed sync: a adds a2, everybody syncs; every key must be on both machines.
async fn assert_nothing_lost(gh: &FakeGithub, a: &Machine, b: &Machine, what: &str) {
    a.set_key("a2", "A2");
    for m in [a, b, a, b] {
        m.sync_json().await;
    }
    for m in [a, b] {
        let j = m.json("opencode.json");
        for (k, v) in [("seed", "s"), ("b1", "B"), ("a1", "A"), ("a2", "A2")] {
            assert_eq!(j[k], v, "{what}: {k}: {j}");
        }
    }
    assert_eq!(a.synced_files(), b.synced_files(), "{what}");
    assert_fsck(gh);
}

/// Issue #12 on GitHub: the branch moves but every answer to `PATCH git/refs` is lost (the
/// client's retries too), or the ref update never happens (dropped before it was applied: like a
/// process killed between the commit object and the ref update). Nothing is lost either way.
#[tokio::test(flavor = "multi_thread")]
async fn an_edit_after_a_lost_or_failed_ref_update_survives() {
    for applied in [true, false] {
        let gh = start(FakeOptions::default()).await;
        let (a, b) = lost_answer_world(&gh).await;
        let before = head(&gh);
        let fault = if applied { Fault::apply_then_drop("/repos/*/git/refs/heads/*") } else { Fault::drop_connection("/repos/*/git/refs/heads/*") };
        gh.faults().inject(fault.method("PATCH").times(10));
        let r = a.run_async(&["sync"]).await;
        assert_eq!(r.code, 1, "applied {applied}: the sync fails\n{}", r.all());
        assert_eq!(head(&gh) != before, applied, "the branch moved only when the update was applied");
        gh.faults().clear();
        assert_nothing_lost(&gh, &a, &b, &format!("ref update applied {applied}")).await;
    }
}

/// A lost answer the client's own retry runs into: the retried PATCH is refused (not a fast
/// forward of the head it expected, because its first try went through). The sync finds its
/// own commit and succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_ref_update_whose_first_answer_was_lost_is_recognised() {
    let gh = start(FakeOptions::default()).await;
    let (a, b) = lost_answer_world(&gh).await;
    gh.faults().inject(Fault::apply_then_drop("/repos/*/git/refs/heads/*").method("PATCH"));
    a.sync_json().await;
    assert_nothing_lost(&gh, &a, &b, "one lost answer").await;
}

/// A real `kill -9` of oc-sync at every step of a sync to GitHub.
#[tokio::test(flavor = "multi_thread")]
async fn every_edit_survives_a_kill_9_at_any_step_on_github() {
    for step in ["before-commit", "after-commit", "local-write", "before-state-save"] {
        let gh = start(FakeOptions::default()).await;
        let (a, b) = lost_answer_world(&gh).await;
        a.kill_sync_at_async(step).await;
        assert_nothing_lost(&gh, &a, &b, step).await;
    }
}
