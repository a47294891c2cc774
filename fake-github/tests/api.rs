use std::process::Command;
use std::time::Duration;

use fake_github::{FakeGithub, FakeOptions, Fault};
use serde_json::{Value, json};

struct T {
    gh: FakeGithub,
    c: reqwest::Client,
}

impl T {
    async fn new(opts: FakeOptions) -> T {
        let gh = FakeGithub::start(opts).await.unwrap();
        let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        T { gh, c }
    }
    fn req(&self, m: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.c
            .request(m, format!("{}{path}", self.gh.url))
            .header("authorization", format!("Bearer {}", self.gh.token()))
            .header("accept", "application/vnd.github+json")
    }
    async fn call(&self, m: reqwest::Method, path: &str, body: Option<Value>) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut r = self.req(m, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        let (s, _, v) = self.call(reqwest::Method::GET, path, None).await;
        (s, v)
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (s, _, v) = self.call(reqwest::Method::POST, path, Some(body)).await;
        (s, v)
    }
    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        let (s, _, v) = self.call(reqwest::Method::PATCH, path, Some(body)).await;
        (s, v)
    }
    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let (s, _, v) = self.call(reqwest::Method::PUT, path, Some(body)).await;
        (s, v)
    }
    /// tree -> commit on main -> PATCH; returns the commit sha.
    async fn push(&self, files: Value, force: bool) -> (u16, String) {
        let (_, head) = self.get("/repos/me/r/git/ref/heads/main").await;
        let head = head["object"]["sha"].as_str().unwrap().to_string();
        let (_, commit) = self.get(&format!("/repos/me/r/git/commits/{head}")).await;
        let (s, tree) = self.post("/repos/me/r/git/trees", json!({"base_tree": commit["tree"]["sha"], "tree": files})).await;
        assert_eq!(s, 201, "{tree}");
        let (s, c) = self
            .post("/repos/me/r/git/commits", json!({"message": "sync", "tree": tree["sha"], "parents": [head]}))
            .await;
        assert_eq!(s, 201, "{c}");
        let sha = c["sha"].as_str().unwrap().to_string();
        let (s, _) = self.patch("/repos/me/r/git/refs/heads/main", json!({"sha": sha, "force": force})).await;
        (s, sha)
    }
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("--git-dir").arg(dir).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn setup() -> T {
    let t = T::new(FakeOptions::default()).await;
    t.gh.add_repo("me", "r", true, true);
    t
}

#[tokio::test]
async fn user_repo_and_auth() {
    let t = setup().await;
    let (s, u) = t.get("/user").await;
    assert_eq!(s, 200);
    assert_eq!(u["login"], "octo-user");
    for k in ["id", "node_id", "avatar_url", "html_url", "type", "site_admin"] {
        assert!(!u[k].is_null(), "{k}");
    }
    let (s, r) = t.get("/repos/me/r").await;
    assert_eq!(s, 200);
    assert_eq!(r["private"], true);
    assert_eq!(r["visibility"], "private");
    assert_eq!(r["default_branch"], "main");
    assert_eq!(r["full_name"], "me/r");
    assert_eq!(r["owner"]["login"], "me");
    // GHES prefix
    let (s, r2) = t.get("/api/v3/repos/me/r").await;
    assert_eq!((s, &r2["id"]), (200, &r["id"]));
    assert_eq!(t.get("/repos/me/nope").await.0, 404);

    t.gh.add_repo("me", "pub", false, true);
    let (_, p) = t.get("/repos/me/pub").await;
    assert_eq!((p["private"].clone(), p["visibility"].clone()), (json!(false), json!("public")));

    // Bad token / no token.
    let resp = t.c.get(format!("{}/user", t.gh.url)).header("authorization", "token wrong").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers().contains_key("x-ratelimit-limit"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["message"], "Bad credentials");
    assert!(v["documentation_url"].is_string());
    let resp = t.c.get(format!("{}/user", t.gh.url)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // Create a repo.
    let (s, r) = t.post("/user/repos", json!({"name": "sync", "private": true, "auto_init": true})).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["full_name"], "octo-user/sync");
    assert_eq!(r["private"], true);
    let (s, rf) = t.get("/repos/octo-user/sync/git/ref/heads/main").await;
    assert_eq!(s, 200, "{rf}");
    let (s, e) = t.post("/user/repos", json!({"name": "sync", "private": true})).await;
    assert_eq!(s, 422);
    assert_eq!(e["errors"][0]["message"], "name already exists on this account");
    // Without auto_init: empty repo -> 409 on git data.
    let (s, _) = t.post("/user/repos", json!({"name": "empty", "private": true})).await;
    assert_eq!(s, 201);
    let (s, e) = t.get("/repos/octo-user/empty/git/ref/heads/main").await;
    assert_eq!((s, e["message"].as_str().unwrap()), (409, "Git Repository is empty."));
    let (s, _) = t.post("/repos/octo-user/empty/git/blobs", json!({"content": "x"})).await;
    assert_eq!(s, 409);
    t.gh.stop().await;
}

#[tokio::test]
async fn blobs_trees_commits_refs_and_fsck() {
    let t = setup().await;
    let (s, b) = t.post("/repos/me/r/git/blobs", json!({"content": "aGVsbG8=", "encoding": "base64"})).await;
    assert_eq!(s, 201);
    let blob = b["sha"].as_str().unwrap().to_string();
    assert_eq!(blob, "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"); // git hash-object of "hello"
    let (s, g) = t.get(&format!("/repos/me/r/git/blobs/{blob}")).await;
    assert_eq!(s, 200);
    assert_eq!(g["encoding"], "base64");
    assert_eq!(g["size"], 5);
    assert_eq!(g["content"].as_str().unwrap().trim(), "aGVsbG8=");
    assert_eq!(t.get("/repos/me/r/git/blobs/0123456789012345678901234567890123456789").await.0, 404);
    // The raw media type: the bytes themselves, no JSON, no base64.
    for accept in ["application/vnd.github.raw+json", "application/vnd.github.raw", "application/vnd.github.v3.raw"] {
        let resp = t
            .c
            .get(format!("{}/repos/me/r/git/blobs/{blob}", t.gh.url))
            .header("authorization", format!("Bearer {}", t.gh.token()))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/vnd.github.raw"));
        assert_eq!(&resp.bytes().await.unwrap()[..], b"hello", "{accept}");
    }

    let files = json!([
        {"path": "a/b/c.txt", "mode": "100644", "type": "blob", "content": "deep\n"},
        {"path": "bin.dat", "mode": "100644", "type": "blob", "sha": blob},
        {"path": "run.sh", "mode": "100755", "type": "blob", "content": "#!/bin/sh\n"},
    ]);
    let (s, c1) = t.push(files, false).await;
    assert_eq!(s, 200);
    let (s, c) = t.get(&format!("/repos/me/r/git/commits/{c1}")).await;
    assert_eq!(s, 200);
    for k in ["sha", "node_id", "url", "html_url", "author", "committer", "message", "tree", "parents", "verification"] {
        assert!(!c[k].is_null(), "commit lacks {k}: {c}");
    }
    assert_eq!(c["parents"].as_array().unwrap().len(), 1);
    assert_eq!(c["verification"]["verified"], false);
    let (s, tr) = t.get(&format!("/repos/me/r/git/trees/{}?recursive=1", c["tree"]["sha"].as_str().unwrap())).await;
    assert_eq!(s, 200);
    let paths: Vec<&str> = tr["tree"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["README.md", "a", "a/b", "a/b/c.txt", "bin.dat", "run.sh"]);
    assert_eq!(tr["truncated"], false);
    let run = tr["tree"].as_array().unwrap().iter().find(|e| e["path"] == "run.sh").unwrap();
    assert_eq!(run["mode"], "100755");
    assert_eq!(run["size"], 10);

    // Delete a nested file and a whole directory with sha:null; author with date.
    let (_, head) = t.get("/repos/me/r/git/ref/heads/main").await;
    let (s, tree) = t
        .post(
            "/repos/me/r/git/trees",
            json!({"base_tree": c["tree"]["sha"], "tree": [
                {"path": "a", "mode": "040000", "type": "tree", "sha": null},
                {"path": "bin.dat", "mode": "100644", "type": "blob", "sha": null},
                {"path": "x/y.txt", "mode": "100644", "type": "blob", "content": "y"}
            ]}),
        )
        .await;
    assert_eq!(s, 201, "{tree}");
    let top: Vec<&str> = tree["tree"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(top, ["README.md", "run.sh", "x"]);
    let (s, c2) = t
        .post(
            "/repos/me/r/git/commits",
            json!({"message": "del\n", "tree": tree["sha"], "parents": [head["object"]["sha"]],
                   "author": {"name": "Me", "email": "me@example.com", "date": "2024-05-06T07:08:09Z"}}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(c2["author"]["date"], "2024-05-06T07:08:09Z");
    assert_eq!(c2["author"]["name"], "Me");
    assert_eq!(c2["message"], "del\n");
    let (s, r) = t.patch("/repos/me/r/git/refs/heads/main", json!({"sha": c2["sha"], "force": false})).await;
    assert_eq!(s, 200);
    assert_eq!(r["ref"], "refs/heads/main");
    assert_eq!(r["object"]["sha"], c2["sha"]);
    assert_eq!(r["object"]["type"], "commit");

    // Not a fast forward: a sibling of c2.
    let (_, sib) = t
        .post("/repos/me/r/git/commits", json!({"message": "sib", "tree": tree["sha"], "parents": [head["object"]["sha"]]}))
        .await;
    let (s, e) = t.patch("/repos/me/r/git/refs/heads/main", json!({"sha": sib["sha"], "force": false})).await;
    assert_eq!((s, e["message"].as_str().unwrap()), (422, "Update is not a fast forward"));
    // force=true works.
    let (s, _) = t.patch("/repos/me/r/git/refs/heads/main", json!({"sha": sib["sha"], "force": true})).await;
    assert_eq!(s, 200);
    // Create a branch; duplicate -> 422; plural GET form.
    let (s, r) = t.post("/repos/me/r/git/refs", json!({"ref": "refs/heads/feature/x", "sha": c1})).await;
    assert_eq!(s, 201, "{r}");
    let (s, r) = t.get("/repos/me/r/git/refs/heads/feature/x").await;
    assert_eq!((s, r["object"]["sha"].as_str().unwrap()), (200, c1.as_str()));
    assert_eq!(t.post("/repos/me/r/git/refs", json!({"ref": "refs/heads/feature/x", "sha": c1})).await.0, 422);
    assert_eq!(t.get("/repos/me/r/git/ref/heads/nope").await.0, 404);
    // Bad inputs.
    assert_eq!(t.post("/repos/me/r/git/commits", json!({"message": "m", "tree": c1})).await.0, 422);
    assert_eq!(t.post("/repos/me/r/git/trees", json!({"tree": [{"path": "a", "mode": "100644", "type": "blob"}]})).await.0, 422);

    let dir = t.gh.repo_git_dir("me", "r");
    git(&dir, &["fsck", "--strict"]);
    let log = git(&dir, &["log", "--format=%an %s", "main"]);
    assert_eq!(log.lines().collect::<Vec<_>>(), ["octo-user sib", "octo-user sync", "octo-user Initial commit"]);
    assert_eq!(git(&dir, &["show", "feature/x:a/b/c.txt"]), "deep\n");
    t.gh.stop().await;
}

#[tokio::test]
async fn race_mode_makes_patch_fail() {
    let t = setup().await;
    t.gh.faults().race_next_ref_update("me", "r", "main");
    let (s, mine) = t.push(json!([{"path": "f", "mode": "100644", "type": "blob", "content": "1"}]), false).await;
    assert_eq!(s, 422);
    let races = t.gh.faults().race_commits();
    assert_eq!(races.len(), 1);
    assert_eq!(t.gh.branch_head("me", "r", "main").unwrap(), races[0]);
    let rec = t.gh.requests();
    let last = rec.last().unwrap();
    assert_eq!((last.method.as_str(), last.status), ("PATCH", 422));
    assert_eq!(last.response_json().unwrap()["message"], "Update is not a fast forward");
    // Retry on top of the new head succeeds.
    let (s, again) = t.push(json!([{"path": "f", "mode": "100644", "type": "blob", "content": "1"}]), false).await;
    assert_eq!(s, 200);
    assert_ne!(again, mine);
    git(&t.gh.repo_git_dir("me", "r"), &["fsck", "--strict"]);
    t.gh.stop().await;
}

#[tokio::test]
async fn etag_and_rate_limits() {
    let t = T::new(FakeOptions { rate_limit: 10, secondary_per_minute: 3, ..Default::default() }).await;
    t.gh.add_repo("me", "r", true, true);
    let (s, h, _) = t.call(reqwest::Method::GET, "/repos/me/r/git/ref/heads/main", None).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-ratelimit-limit"], "10");
    assert_eq!(h["x-ratelimit-remaining"], "9");
    assert_eq!(h["x-ratelimit-used"], "1");
    assert_eq!(h["x-ratelimit-resource"], "core");
    assert!(h.contains_key("x-ratelimit-reset"));
    let etag = h["etag"].to_str().unwrap().to_string();
    let resp = t.req(reqwest::Method::GET, "/repos/me/r/git/ref/heads/main").header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 304);
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "9");
    // After the ref moves, the ETag no longer matches.
    t.gh.commit_as_other_machine("me", "r", "main", &[("o.txt", b"o")]).unwrap();
    let resp = t.req(reqwest::Method::GET, "/repos/me/r/git/ref/heads/main").header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "8");

    // Secondary limit: 3 content-creating requests per minute.
    for _ in 0..3 {
        assert_eq!(t.post("/repos/me/r/git/blobs", json!({"content": "x"})).await.0, 201);
    }
    let (s, h, v) = t.call(reqwest::Method::POST, "/repos/me/r/git/blobs", Some(json!({"content": "x"}))).await;
    assert_eq!(s, 403);
    assert!(v["message"].as_str().unwrap().contains("secondary rate limit"));
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // Primary limit exhaustion.
    t.gh.faults().set_rate_remaining(0);
    let (s, h, v) = t.call(reqwest::Method::GET, "/user", None).await;
    assert_eq!(s, 403);
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert!(v["message"].as_str().unwrap().starts_with("API rate limit exceeded"));
    t.gh.stop().await;
}

#[tokio::test]
async fn faults() {
    let t = setup().await;
    let f = t.gh.faults();
    f.inject(Fault::status(500, "/repos/*/git/trees").method("POST").times(2));
    f.fail_next("/user", 1, 429);
    f.fail_next("/repos/me/r", 1, 502);
    let body = json!({"tree": [{"path": "a", "mode": "100644", "type": "blob", "content": "a"}]});
    assert_eq!(t.post("/repos/me/r/git/trees", body.clone()).await.0, 500);
    assert_eq!(t.post("/repos/me/r/git/trees", body.clone()).await.0, 500);
    assert_eq!(t.post("/repos/me/r/git/trees", body.clone()).await.0, 201);
    let (s, h, v) = t.call(reqwest::Method::GET, "/user", None).await;
    assert_eq!(s, 429);
    assert_eq!(h["retry-after"], "60");
    assert!(v["message"].is_string());
    assert_eq!(t.get("/user").await.0, 200);
    assert_eq!(t.get("/repos/me/r").await.0, 502);
    assert_eq!(t.get("/repos/me/r").await.0, 200);
    // Dropped connection.
    f.drop_next("/user", 1);
    assert!(t.req(reqwest::Method::GET, "/user").send().await.is_err());
    assert_eq!(t.gh.requests().iter().filter(|r| r.status == 0).count(), 1);
    // Applied, then the answer dropped: the tree exists although the client never heard.
    f.inject(Fault::apply_then_drop("/repos/*/git/trees").method("POST"));
    let lost = json!({"tree": [{"path": "lost", "mode": "100644", "type": "blob", "content": "lost answer"}]});
    assert!(t.req(reqwest::Method::POST, "/repos/me/r/git/trees").json(&lost).send().await.is_err());
    assert_eq!(t.gh.requests().iter().filter(|r| r.status == 0).count(), 2);
    let (s, again) = t.post("/repos/me/r/git/trees", lost).await;
    assert_eq!(s, 201, "the same tree again: already there");
    let sha = again["sha"].as_str().unwrap().to_string();
    assert_eq!(t.get(&format!("/repos/me/r/git/trees/{sha}")).await.0, 200);
    // Delay.
    f.delay_next("/user", 1, Duration::from_millis(300));
    let start = std::time::Instant::now();
    assert_eq!(t.get("/user").await.0, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(f.pending(), 0);
    t.gh.stop().await;
}

#[tokio::test]
async fn tarball_compare_truncation_and_size_limit() {
    let t = T::new(FakeOptions { tree_truncate_entries: 2, max_file_size: 1000, compare_max_files: 2, ..Default::default() }).await;
    t.gh.add_repo("me", "r", true, true);
    let (_, base) = t.get("/repos/me/r/git/ref/heads/main").await;
    let base = base["object"]["sha"].as_str().unwrap().to_string();
    let (s, head) = t
        .push(
            json!([
                {"path": "d/one.txt", "mode": "100644", "type": "blob", "content": "1\n"},
                {"path": "two.txt", "mode": "100644", "type": "blob", "content": "2\n"},
                {"path": "README.md", "mode": "100644", "type": "blob", "sha": null},
            ]),
            false,
        )
        .await;
    assert_eq!(s, 200);

    // Tarball: 302 to a local URL serving git archive output.
    let resp = t.req(reqwest::Method::GET, "/repos/me/r/tarball/main").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(&t.gh.url));
    let data = reqwest::get(&loc).await.unwrap().bytes().await.unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&data[..]));
    let mut names = vec![];
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        names.push(e.path().unwrap().to_string_lossy().to_string());
    }
    let prefix = format!("me-r-{}/", &head[..7]);
    assert!(names.contains(&format!("{prefix}d/one.txt")), "{names:?}");
    assert!(names.contains(&format!("{prefix}two.txt")));
    assert!(!names.iter().any(|n| n.ends_with("README.md")));

    // Compare.
    let (s, cmp) = t.get(&format!("/repos/me/r/compare/{base}...main")).await;
    assert_eq!(s, 200);
    assert_eq!(cmp["status"], "ahead");
    assert_eq!(cmp["ahead_by"], 1);
    assert_eq!(cmp["total_commits"], 1);
    assert_eq!(cmp["commits"][0]["sha"], head.as_str());
    let files = cmp["files"].as_array().unwrap();
    assert_eq!(files.len(), 2); // 3 changed, capped at 2
    assert_eq!(files[0]["filename"], "README.md");
    assert_eq!(files[0]["status"], "removed");
    assert_eq!(files[1]["status"], "added");

    // Truncated recursive listing.
    let (_, tr) = t.get("/repos/me/r/git/trees/main?recursive=1").await;
    assert_eq!(tr["truncated"], true);
    assert_eq!(tr["tree"].as_array().unwrap().len(), 2);

    // Too large.
    let big = "x".repeat(1001);
    let (s, e) = t.post("/repos/me/r/git/blobs", json!({"content": big})).await;
    assert_eq!(s, 422, "{e}");
    let (s, _) = t.post("/repos/me/r/git/trees", json!({"tree": [{"path": "big", "mode": "100644", "type": "blob", "content": big}]})).await;
    assert_eq!(s, 422);
    t.gh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_exactly_one_wins_and_delete_ref() {
    let t = setup().await;
    let (_, head) = t.get("/repos/me/r/git/ref/heads/main").await;
    let head = head["object"]["sha"].as_str().unwrap().to_string();
    let (_, hc) = t.get(&format!("/repos/me/r/git/commits/{head}")).await;
    let mut commits = vec![];
    for i in 0..8 {
        let (_, tree) = t
            .post(
                "/repos/me/r/git/trees",
                json!({"base_tree": hc["tree"]["sha"], "tree": [{"path": format!("f{i}"), "mode": "100644", "type": "blob", "content": "x"}]}),
            )
            .await;
        let (_, c) = t.post("/repos/me/r/git/commits", json!({"message": "m", "tree": tree["sha"], "parents": [head]})).await;
        commits.push(c["sha"].as_str().unwrap().to_string());
    }
    let futs = commits.iter().map(|c| t.patch("/repos/me/r/git/refs/heads/main", json!({"sha": c, "force": false})));
    let results: Vec<(u16, Value)> = futures_join_all(futs).await;
    assert_eq!(results.iter().filter(|(s, _)| *s == 200).count(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|(s, _)| *s == 422).count(), 7);

    assert_eq!(t.post("/repos/me/r/git/refs", json!({"ref": "refs/heads/tmp", "sha": head})).await.0, 201);
    let (s, _, _) = t.call(reqwest::Method::DELETE, "/repos/me/r/git/refs/heads/tmp", None).await;
    assert_eq!(s, 204);
    assert_eq!(t.get("/repos/me/r/git/ref/heads/tmp").await.0, 404);
    let (s, _, _) = t.call(reqwest::Method::DELETE, "/repos/me/r/git/refs/heads/tmp", None).await;
    assert_eq!(s, 422);
    t.gh.stop().await;
}

async fn futures_join_all<F: std::future::Future<Output = (u16, Value)>>(futs: impl Iterator<Item = F>) -> Vec<(u16, Value)> {
    // Poll all futures concurrently on the current task.
    let mut set: Vec<std::pin::Pin<Box<F>>> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<(u16, Value)>> = vec![None; set.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn put_contents_initialises_an_empty_repo() {
    let t = T::new(FakeOptions::default()).await;
    let (s, _) = t.post("/user/repos", json!({"name": "empty", "private": true})).await;
    assert_eq!(s, 201);
    assert_eq!(t.get("/repos/octo-user/empty/git/ref/heads/main").await.0, 409);

    let (s, v) = t
        .put("/repos/octo-user/empty/contents/dir/hello.txt", json!({"message": "init", "content": "aGVsbG8="}))
        .await;
    assert_eq!(s, 201, "{v}");
    let c = &v["content"];
    assert_eq!((c["name"].as_str(), c["path"].as_str(), c["type"].as_str()), (Some("hello.txt"), Some("dir/hello.txt"), Some("file")));
    assert_eq!(c["sha"], "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"); // git hash-object of "hello"
    assert_eq!(c["size"], 5);
    for k in ["url", "html_url", "git_url", "download_url"] {
        assert!(c[k].is_string(), "content lacks {k}: {c}");
    }
    for k in ["self", "git", "html"] {
        assert!(c["_links"][k].is_string(), "_links lacks {k}: {c}");
    }
    let commit = &v["commit"];
    for k in ["sha", "node_id", "url", "html_url", "author", "committer", "message", "tree", "parents", "verification"] {
        assert!(!commit[k].is_null(), "commit lacks {k}: {commit}");
    }
    assert_eq!(commit["parents"], json!([]));
    assert_eq!(commit["message"], "init");
    assert_eq!(commit["author"]["name"], "octo-user");
    assert_eq!(commit["verification"], json!({"verified": false, "reason": "unsigned", "signature": null, "payload": null}));

    // The Git Data API works now.
    let (s, r) = t.get("/repos/octo-user/empty/git/ref/heads/main").await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["object"]["sha"], commit["sha"]);
    let dir = t.gh.repo_git_dir("octo-user", "empty");
    assert_eq!(git(&dir, &["cat-file", "-p", "main:dir/hello.txt"]), "hello");
    git(&dir, &["fsck", "--strict"]);

    // A content-creating request: recorded like other writes, needs the token.
    let resp = t.c.put(format!("{}/repos/octo-user/empty/contents/x", t.gh.url)).json(&json!({"message": "m", "content": ""})).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    t.gh.stop().await;
}

#[tokio::test]
async fn put_contents_update_needs_the_current_sha() {
    let t = setup().await;
    let (s, v) = t.put("/repos/me/r/contents/notes.md", json!({"message": "add", "content": "b25l", "branch": "main"})).await;
    assert_eq!(s, 201, "{v}");
    let first = v["content"]["sha"].as_str().unwrap().to_string();
    let head = t.gh.branch_head("me", "r", "main").unwrap();
    assert_eq!(v["commit"]["sha"].as_str(), Some(head.as_str()));
    assert_eq!(v["commit"]["parents"].as_array().unwrap().len(), 1);

    // Existing file without sha -> 422; with a wrong sha -> 409; nothing changes.
    let (s, e) = t.put("/repos/me/r/contents/notes.md", json!({"message": "upd", "content": "dHdv"})).await;
    assert_eq!((s, e["message"].as_str().unwrap()), (422, "Invalid request.\n\n\"sha\" wasn't supplied."));
    let wrong = "0123456789012345678901234567890123456789";
    let (s, e) = t.put("/repos/me/r/contents/notes.md", json!({"message": "upd", "content": "dHdv", "sha": wrong})).await;
    assert_eq!(s, 409);
    assert_eq!(e["message"].as_str().unwrap(), format!("notes.md does not match {wrong}"));
    assert_eq!(t.gh.branch_head("me", "r", "main").unwrap(), head);

    // With the right sha -> 200; committer honoured.
    let (s, v) = t
        .put(
            "/repos/me/r/contents/notes.md",
            json!({"message": "upd", "content": "dHdv", "sha": first, "committer": {"name": "Bot", "email": "bot@example.com"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["commit"]["committer"]["name"], "Bot");
    assert_eq!(v["commit"]["parents"][0]["sha"].as_str(), Some(head.as_str()));
    let dir = t.gh.repo_git_dir("me", "r");
    assert_eq!(git(&dir, &["cat-file", "-p", "main:notes.md"]), "two");
    assert_eq!(git(&dir, &["cat-file", "-p", "main:README.md"]), "# r\n");
    // Unknown branch of a non-empty repo -> 404.
    let (s, _) = t.put("/repos/me/r/contents/y", json!({"message": "m", "content": "", "branch": "nope"})).await;
    assert_eq!(s, 404);
    git(&dir, &["fsck", "--strict"]);
    t.gh.stop().await;
}

#[tokio::test]
async fn ref_unreadable_after_create() {
    let t = T::new(FakeOptions { ref_unreadable_after_create: 2, ..Default::default() }).await;
    let (s, _) = t.post("/user/repos", json!({"name": "fresh", "private": true, "auto_init": true})).await;
    assert_eq!(s, 201);
    // Repos added directly are not affected.
    t.gh.add_repo("me", "r", true, true);
    assert_eq!(t.get("/repos/me/r/git/ref/heads/main").await.0, 200);
    let (s, e) = t.get("/repos/octo-user/fresh/git/ref/heads/main").await;
    assert_eq!((s, e["message"].as_str().unwrap()), (409, "Git Repository is empty."));
    // Other git data reads are not affected.
    let head = t.gh.branch_head("octo-user", "fresh", "main").unwrap();
    assert_eq!(t.get(&format!("/repos/octo-user/fresh/git/commits/{head}")).await.0, 200);
    assert_eq!(t.get("/repos/octo-user/fresh/git/refs/heads/main").await.0, 409);
    let (s, r) = t.get("/repos/octo-user/fresh/git/ref/heads/main").await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["object"]["sha"].as_str(), Some(head.as_str()));
    assert_eq!(t.get("/repos/octo-user/fresh/git/refs/heads/main").await.0, 200);
    t.gh.stop().await;
}

#[tokio::test]
async fn set_private_and_traffic() {
    let t = setup().await;
    let (_, r) = t.get("/repos/me/r").await;
    assert_eq!((r["private"].clone(), r["visibility"].clone()), (json!(true), json!("private")));
    t.gh.set_private("me", "r", false);
    let (_, r) = t.get("/repos/me/r").await;
    assert_eq!((r["private"].clone(), r["visibility"].clone()), (json!(false), json!("public")));
    t.gh.set_private("me", "r", true);
    let (_, r) = t.get("/repos/me/r").await;
    assert_eq!((r["private"].clone(), r["visibility"].clone()), (json!(true), json!("private")));

    t.gh.clear_requests();
    assert_eq!(t.gh.traffic(), (0, 0, 0));
    let body = json!({"content": "hello"});
    let sent = serde_json::to_vec(&body).unwrap().len() as u64;
    let (s, _, _) = t.call(reqwest::Method::POST, "/repos/me/r/git/blobs", Some(body)).await;
    assert_eq!(s, 201);
    t.get("/repos/me/r").await;
    let received: u64 = t.gh.requests().iter().map(|r| r.response_body.len() as u64).sum();
    assert!(received > 0);
    assert_eq!(t.gh.traffic(), (2, sent, received));
    t.gh.clear_requests();
    assert_eq!(t.gh.traffic(), (0, 0, 0));
    t.gh.stop().await;
}

#[tokio::test]
async fn put_contents_counts_toward_the_secondary_limit() {
    let t = T::new(FakeOptions { secondary_per_minute: 1, ..Default::default() }).await;
    t.gh.add_repo("me", "r", true, true);
    assert_eq!(t.put("/repos/me/r/contents/a", json!({"message": "m", "content": "YQ=="})).await.0, 201);
    let (s, e) = t.put("/repos/me/r/contents/b", json!({"message": "m", "content": "Yg=="})).await;
    assert_eq!(s, 403, "{e}");
    assert!(e["message"].as_str().unwrap().contains("secondary rate limit"));
    t.gh.stop().await;
}

/// Symbolic links and submodules, as GitHub shows them: trees list a link as a blob of mode
/// 120000 (holding the target) and a submodule as type "commit", mode 160000; compare lists both
/// like files (sha = the link's blob, the submodule's commit); the tarball holds a symlink entry
/// and an empty folder; the submodule's commit is no blob of this repository.
#[tokio::test]
async fn symlink_and_submodule_entries_in_trees_compares_and_tarballs() {
    let t = setup().await;
    let (_, base) = t.get("/repos/me/r/git/ref/heads/main").await;
    let base = base["object"]["sha"].as_str().unwrap().to_string();
    let gitlink = "0123456789abcdef0123456789abcdef01234567";
    let head = t
        .gh
        .commit_entries_as_other_machine(
            "me",
            "r",
            "main",
            &[("a/link.md", "120000", b"../../.ssh/id_rsa"), ("a/sub", "160000", gitlink.as_bytes()), ("a/plain.md", "100644", b"x\n")],
        )
        .unwrap();
    assert!(t.gh.commit_entries_as_other_machine("me", "r", "main", &[("y", "160000", b"not-a-sha")]).is_err());
    let (s, tree) = t.get("/repos/me/r/git/trees/main?recursive=1").await;
    assert_eq!(s, 200);
    let entry = |p: &str| tree["tree"].as_array().unwrap().iter().find(|e| e["path"] == p).cloned().unwrap();
    assert_eq!((entry("a/link.md")["mode"].as_str(), entry("a/link.md")["type"].as_str()), (Some("120000"), Some("blob")));
    assert_eq!((entry("a/sub")["mode"].as_str(), entry("a/sub")["type"].as_str()), (Some("160000"), Some("commit")));
    assert_eq!(entry("a/sub")["sha"], gitlink);
    assert!(entry("a/sub").get("size").is_none());
    let link_sha = entry("a/link.md")["sha"].as_str().unwrap().to_string();
    let (s, blob) = t.get(&format!("/repos/me/r/git/blobs/{link_sha}")).await;
    assert_eq!(s, 200);
    assert_eq!(blob["content"].as_str().unwrap().trim(), "Li4vLi4vLnNzaC9pZF9yc2E=");
    assert_eq!(t.get(&format!("/repos/me/r/git/blobs/{gitlink}")).await.0, 404);

    let (s, cmp) = t.get(&format!("/repos/me/r/compare/{base}...{head}")).await;
    assert_eq!(s, 200);
    let files = cmp["files"].as_array().unwrap();
    let f = |p: &str| files.iter().find(|e| e["filename"] == p).cloned().unwrap();
    assert_eq!((f("a/link.md")["status"].as_str(), f("a/link.md")["sha"].as_str()), (Some("added"), Some(link_sha.as_str())));
    assert_eq!((f("a/sub")["status"].as_str(), f("a/sub")["sha"].as_str()), (Some("added"), Some(gitlink)));
    assert!(files.iter().all(|e| e.get("mode").is_none()), "compare carries no modes");

    let resp = t.req(reqwest::Method::GET, &format!("/repos/me/r/tarball/{head}")).send().await.unwrap();
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    let data = reqwest::get(&loc).await.unwrap().bytes().await.unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&data[..]));
    let mut kinds = std::collections::BTreeMap::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().to_string();
        let name = name.split_once('/').map(|(_, r)| r.trim_end_matches('/').to_string()).unwrap_or_default();
        let link = e.link_name().ok().flatten().map(|l| l.to_string_lossy().to_string());
        kinds.insert(name, (e.header().entry_type(), link));
    }
    assert_eq!(kinds["a/link.md"], (tar::EntryType::Symlink, Some("../../.ssh/id_rsa".to_string())));
    assert_eq!(kinds["a/sub"].0, tar::EntryType::Directory);
    assert_eq!(kinds["a/plain.md"].0, tar::EntryType::Regular);
    t.gh.stop().await;
}
