//! Request handling: auth, rate limits, routing and GitHub-shaped JSON.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::git::{self, TreeChange};
use crate::util::{self, base64_wrapped, iso8601, now_secs};
use crate::{Inner, RepoMeta};

const DOCS: &str = "https://docs.github.com/rest";
const RATE_DOCS: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api";

pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A response before it is turned into HTTP.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn json(status: u16, v: &Value) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json; charset=utf-8".into())],
            body: serde_json::to_vec_pretty(v).unwrap_or_default(),
        }
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Response {
        self.headers.push((k.into(), v.into()));
        self
    }
}

pub fn error(status: u16, message: &str) -> Response {
    let mut v = json!({ "message": message, "documentation_url": DOCS });
    if status != 422 {
        v["status"] = json!(status.to_string());
    }
    Response::json(status, &v)
}

fn not_found() -> Response {
    error(404, "Not Found")
}

fn not_found_msg(message: &str) -> Response {
    error(404, message)
}

fn empty_repo() -> Response {
    error(409, "Git Repository is empty.")
}

fn unprocessable(message: &str) -> Response {
    error(422, message)
}

fn secondary_limit(retry_after: u64) -> Response {
    Response::json(
        403,
        &json!({
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000000:0000000:00000000.",
            "documentation_url": format!("{RATE_DOCS}#about-secondary-rate-limits"),
            "status": "403"
        }),
    )
    .header("retry-after", retry_after.to_string())
}

/// The GitHub-like answer for an injected fault.
pub fn fault_response(inner: &Inner, status: u16) -> Response {
    let retry = inner.opts.fault_retry_after;
    let resp = match status {
        401 => error(401, "Bad credentials"),
        403 => secondary_limit(retry),
        404 => not_found(),
        409 => empty_repo(),
        422 => Response::json(422, &json!({"message": "Validation Failed", "errors": [], "documentation_url": DOCS})),
        429 => {
            let mut r = secondary_limit(retry);
            r.status = 429;
            r
        }
        500 => error(500, "Server Error"),
        502 => error(502, "Server Error"),
        503 => error(503, "Service Unavailable"),
        s => error(s, "Injected fault"),
    };
    with_rate_headers(inner, resp)
}

fn with_rate_headers(inner: &Inner, mut resp: Response) -> Response {
    let st = inner.lock();
    let limit = inner.opts.rate_limit;
    let h = [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", st.rate_remaining.to_string()),
        ("x-ratelimit-used", limit.saturating_sub(st.rate_remaining).to_string()),
        ("x-ratelimit-reset", st.rate_reset.to_string()),
        ("x-ratelimit-resource", "core".to_string()),
        ("x-github-api-version-selected", "2022-11-28".to_string()),
        ("x-github-media-type", "github.v3; format=json".to_string()),
        ("x-github-request-id", format!("FAKE:{:X}", st.requests.len())),
    ];
    drop(st);
    for (k, v) in h {
        resp.headers.push((k.into(), v));
    }
    resp
}

fn is_content_creating(method: &str, segs: &[String]) -> bool {
    match (method, segs.first().map(String::as_str)) {
        ("POST", Some("user")) => segs.get(1).map(String::as_str) == Some("repos"),
        ("POST", Some("repos")) | ("PATCH", Some("repos")) => {
            segs.get(3).map(String::as_str) == Some("git")
                && matches!(segs.get(4).map(String::as_str), Some("blobs" | "trees" | "commits" | "refs"))
        }
        ("PUT", Some("repos")) => segs.get(3).map(String::as_str) == Some("contents"),
        _ => false,
    }
}

pub fn handle(inner: &Inner, req: Request) -> Response {
    let segs: Vec<String> = req.path.split('/').filter(|s| !s.is_empty()).map(util::percent_decode).collect();

    // Tarball downloads (the "codeload" side) are authorised by the one-time URL, not the token.
    if segs.first().map(String::as_str) == Some("_codeload") {
        return codeload(inner, &req, &segs);
    }

    // Authentication.
    let auth = req.header("authorization").map(|a| {
        let a = a.trim();
        a.strip_prefix("token ")
            .or_else(|| a.strip_prefix("Bearer "))
            .or_else(|| a.strip_prefix("bearer "))
            .unwrap_or(a)
            .trim()
            .to_string()
    });
    match auth {
        None => return with_rate_headers(inner, error(401, "Requires authentication")),
        Some(t) if t != inner.token => return with_rate_headers(inner, error(401, "Bad credentials")),
        _ => {}
    }

    // GET /rate_limit does not count against the limit.
    if req.method == "GET" && segs.len() == 1 && segs[0] == "rate_limit" {
        let st = inner.lock();
        let limit = inner.opts.rate_limit;
        let core = json!({"limit": limit, "used": limit.saturating_sub(st.rate_remaining), "remaining": st.rate_remaining, "reset": st.rate_reset, "resource": "core"});
        let other = |name: &str, limit: u32| json!({"limit": limit, "used": 0, "remaining": limit, "reset": st.rate_reset, "resource": name});
        let v = json!({
            "resources": {
                "core": core,
                "search": other("search", 30),
                "graphql": other("graphql", 5000),
                "integration_manifest": other("integration_manifest", 5000),
                "code_scanning_upload": other("code_scanning_upload", 1000),
            },
            "rate": core
        });
        drop(st);
        return with_rate_headers(inner, Response::json(200, &v));
    }

    // Primary rate limit (reset after the hour).
    {
        let mut st = inner.lock();
        if now_secs() as u64 >= st.rate_reset {
            st.rate_remaining = inner.opts.rate_limit;
            st.rate_reset = now_secs() as u64 + 3600;
        }
        if st.rate_remaining == 0 {
            drop(st);
            let login = &inner.opts.login;
            let r = Response::json(
                403,
                &json!({
                    "message": format!("API rate limit exceeded for user ID 1 ({login})."),
                    "documentation_url": format!("{RATE_DOCS}#about-the-primary-rate-limit-for-the-rest-api"),
                    "status": "403"
                }),
            );
            return with_rate_headers(inner, r);
        }
    }

    // Secondary limit on content-creating requests.
    if is_content_creating(&req.method, &segs) {
        let mut st = inner.lock();
        let now = Instant::now();
        while st.secondary.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600)) {
            st.secondary.pop_front();
        }
        let minute: Vec<Instant> =
            st.secondary.iter().copied().filter(|t| now.duration_since(*t) < Duration::from_secs(60)).collect();
        let retry = if minute.len() as u32 >= inner.opts.secondary_per_minute {
            Some(60 - now.duration_since(minute[0]).as_secs().min(59))
        } else if st.secondary.len() as u32 >= inner.opts.secondary_per_hour {
            Some(3600 - now.duration_since(st.secondary[0]).as_secs().min(3599))
        } else {
            st.secondary.push_back(now);
            None
        };
        if let Some(retry) = retry {
            st.rate_remaining = st.rate_remaining.saturating_sub(1);
            drop(st);
            return with_rate_headers(inner, secondary_limit(retry));
        }
    }

    let mut resp = route(inner, &req, &segs);

    // ETag / If-None-Match on successful GETs.
    if req.method == "GET" && resp.status == 200 {
        let etag = format!("W/\"{:016x}{:016x}\"", util::fnv64(&resp.body), util::fnv64(req.path.as_bytes()));
        let matches = req
            .header("if-none-match")
            .is_some_and(|inm| inm.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        if matches {
            resp = Response { status: 304, headers: vec![], body: vec![] };
        }
        resp.headers.push(("etag".into(), etag));
        resp.headers.push(("cache-control".into(), "private, max-age=60, s-maxage=60".into()));
        resp.headers.push(("vary".into(), "Accept, Authorization, Cookie, X-GitHub-OTP".into()));
    }
    if resp.status != 304 {
        let mut st = inner.lock();
        st.rate_remaining = st.rate_remaining.saturating_sub(1);
    }
    with_rate_headers(inner, resp)
}

fn route(inner: &Inner, req: &Request, segs: &[String]) -> Response {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    match (m, s.as_slice()) {
        ("GET", ["user"]) => Response::json(200, &user_json(inner)),
        ("POST", ["user", "repos"]) => create_repo(inner, req),
        ("GET", ["repos", o, r]) => match repo_meta(inner, o, r) {
            Some(meta) => Response::json(200, &repo_json(inner, &meta)),
            None => not_found(),
        },
        (_, ["repos", o, r, rest @ ..]) => {
            let Some(meta) = repo_meta(inner, o, r) else { return not_found() };
            let dir = inner.git_dir(&meta.owner, &meta.name);
            let base = format!("{}/repos/{}/{}", inner.url, meta.owner, meta.name);
            let ctx = Ctx { inner, meta: &meta, dir: &dir, base: &base };
            repo_route(&ctx, req, m, rest)
        }
        _ => not_found(),
    }
}

struct Ctx<'a> {
    inner: &'a Inner,
    meta: &'a RepoMeta,
    dir: &'a Path,
    /// API url of the repo.
    base: &'a str,
}

impl Ctx<'_> {
    fn html(&self) -> String {
        format!("{}/{}/{}", self.inner.url, self.meta.owner, self.meta.name)
    }
}

fn repo_route(ctx: &Ctx, req: &Request, m: &str, rest: &[&str]) -> Response {
    // Right after `POST /user/repos`, GitHub may not serve refs yet.
    if m == "GET" && matches!(rest, ["git", "ref" | "refs", ..]) {
        let mut st = ctx.inner.lock();
        if let Some(n) = st.ref_unreadable.get_mut(&(ctx.meta.owner.clone(), ctx.meta.name.clone()))
            && *n > 0
        {
            *n -= 1;
            return empty_repo();
        }
    }
    // Only the Git Data API (and what is built on it) refuses empty repos; the contents API
    // is how an empty repo gets its first commit.
    let git_data = matches!(rest.first(), Some(&"git" | &"tarball" | &"compare"));
    if git_data && git::is_empty_repo(ctx.dir) {
        return empty_repo();
    }
    let body = || serde_json::from_slice::<Value>(&req.body).map_err(|_| error(400, "Problems parsing JSON"));
    match (m, rest) {
        ("GET", ["git", "ref", r @ ..]) | ("GET", ["git", "refs", r @ ..]) if !r.is_empty() => get_ref(ctx, &r.join("/")),
        ("PATCH", ["git", "refs", r @ ..]) if !r.is_empty() => match body() {
            Ok(b) => update_ref(ctx, &r.join("/"), &b),
            Err(e) => e,
        },
        ("DELETE", ["git", "refs", r @ ..]) if !r.is_empty() => delete_ref(ctx, &r.join("/")),
        ("POST", ["git", "refs"]) => match body() {
            Ok(b) => create_ref(ctx, &b),
            Err(e) => e,
        },
        ("POST", ["git", "blobs"]) => match body() {
            Ok(b) => create_blob(ctx, &b),
            Err(e) => e,
        },
        ("GET", ["git", "blobs", sha]) => get_blob(ctx, sha, req.header("accept")),
        ("POST", ["git", "trees"]) => match body() {
            Ok(b) => create_tree(ctx, &b),
            Err(e) => e,
        },
        ("GET", ["git", "trees", r @ ..]) if !r.is_empty() => {
            let recursive = util::query_param(&req.query, "recursive").is_some_and(|v| !v.is_empty() && v != "0" && v != "false");
            get_tree(ctx, &r.join("/"), recursive)
        }
        ("POST", ["git", "commits"]) => match body() {
            Ok(b) => create_commit(ctx, &b),
            Err(e) => e,
        },
        ("GET", ["git", "commits", sha]) => get_commit(ctx, sha),
        ("GET", ["tarball"]) => tarball(ctx, ""),
        ("GET", ["tarball", r @ ..]) => tarball(ctx, &r.join("/")),
        ("GET", ["compare", r @ ..]) if !r.is_empty() => compare(ctx, &r.join("/")),
        ("PUT", ["contents", p @ ..]) if !p.is_empty() => match body() {
            Ok(b) => put_contents(ctx, &p.join("/"), &b),
            Err(e) => e,
        },
        _ => not_found(),
    }
}

fn repo_meta(inner: &Inner, owner: &str, name: &str) -> Option<RepoMeta> {
    let st = inner.lock();
    st.repos
        .values()
        .find(|m| m.owner.eq_ignore_ascii_case(owner) && m.name.eq_ignore_ascii_case(name))
        .cloned()
}

fn owner_json(inner: &Inner, login: &str, id: u64) -> Value {
    let u = &inner.url;
    json!({
        "login": login,
        "id": id,
        "node_id": util::base64_plain(format!("04:User{id}").as_bytes()),
        "avatar_url": format!("{u}/avatars/u/{id}?v=4"),
        "gravatar_id": "",
        "url": format!("{u}/users/{login}"),
        "html_url": format!("{u}/{login}"),
        "followers_url": format!("{u}/users/{login}/followers"),
        "following_url": format!("{u}/users/{login}/following{{/other_user}}"),
        "gists_url": format!("{u}/users/{login}/gists{{/gist_id}}"),
        "starred_url": format!("{u}/users/{login}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{u}/users/{login}/subscriptions"),
        "organizations_url": format!("{u}/users/{login}/orgs"),
        "repos_url": format!("{u}/users/{login}/repos"),
        "events_url": format!("{u}/users/{login}/events{{/privacy}}"),
        "received_events_url": format!("{u}/users/{login}/received_events"),
        "type": "User",
        "user_view_type": "public",
        "site_admin": false
    })
}

fn user_json(inner: &Inner) -> Value {
    let mut v = owner_json(inner, &inner.opts.login, 1);
    let created = iso8601(1_600_000_000);
    let extra = json!({
        "name": "Octo User",
        "company": null,
        "blog": "",
        "location": null,
        "email": null,
        "hireable": null,
        "bio": null,
        "twitter_username": null,
        "notification_email": null,
        "public_repos": 0,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "created_at": created,
        "updated_at": created,
        "private_gists": 0,
        "total_private_repos": 0,
        "owned_private_repos": 0,
        "disk_usage": 0,
        "collaborators": 0,
        "two_factor_authentication": true,
        "plan": {"name": "free", "space": 976562499, "collaborators": 0, "private_repos": 10000}
    });
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, e) in extra {
            obj.insert(k.clone(), e.clone());
        }
    }
    v
}

fn repo_json(inner: &Inner, meta: &RepoMeta) -> Value {
    let u = &inner.url;
    let full = format!("{}/{}", meta.owner, meta.name);
    let api = format!("{u}/repos/{full}");
    let owner_id = if meta.owner == inner.opts.login { 1 } else { 2 + util::fnv64(meta.owner.as_bytes()) % 1_000_000 };
    let created = iso8601(meta.created_at);
    let dir = inner.git_dir(&meta.owner, &meta.name);
    let pushed = git::resolve_ref(&dir, "refs/heads/main")
        .and_then(|h| git::read_commit(&dir, &h).ok())
        .map(|c| iso8601(c.committer.2))
        .unwrap_or_else(|| created.clone());
    json!({
        "id": meta.id,
        "node_id": util::base64_plain(format!("010:Repository{}", meta.id).as_bytes()),
        "name": meta.name,
        "full_name": full,
        "private": meta.private,
        "owner": owner_json(inner, &meta.owner, owner_id),
        "html_url": format!("{u}/{full}"),
        "description": meta.description,
        "fork": false,
        "url": api,
        "forks_url": format!("{api}/forks"),
        "keys_url": format!("{api}/keys{{/key_id}}"),
        "collaborators_url": format!("{api}/collaborators{{/collaborator}}"),
        "teams_url": format!("{api}/teams"),
        "hooks_url": format!("{api}/hooks"),
        "issue_events_url": format!("{api}/issues/events{{/number}}"),
        "events_url": format!("{api}/events"),
        "assignees_url": format!("{api}/assignees{{/user}}"),
        "branches_url": format!("{api}/branches{{/branch}}"),
        "tags_url": format!("{api}/tags"),
        "blobs_url": format!("{api}/git/blobs{{/sha}}"),
        "git_tags_url": format!("{api}/git/tags{{/sha}}"),
        "git_refs_url": format!("{api}/git/refs{{/sha}}"),
        "trees_url": format!("{api}/git/trees{{/sha}}"),
        "statuses_url": format!("{api}/statuses/{{sha}}"),
        "languages_url": format!("{api}/languages"),
        "stargazers_url": format!("{api}/stargazers"),
        "contributors_url": format!("{api}/contributors"),
        "subscribers_url": format!("{api}/subscribers"),
        "subscription_url": format!("{api}/subscription"),
        "commits_url": format!("{api}/commits{{/sha}}"),
        "git_commits_url": format!("{api}/git/commits{{/sha}}"),
        "comments_url": format!("{api}/comments{{/number}}"),
        "issue_comment_url": format!("{api}/issues/comments{{/number}}"),
        "contents_url": format!("{api}/contents/{{+path}}"),
        "compare_url": format!("{api}/compare/{{base}}...{{head}}"),
        "merges_url": format!("{api}/merges"),
        "archive_url": format!("{api}/{{archive_format}}{{/ref}}"),
        "downloads_url": format!("{api}/downloads"),
        "issues_url": format!("{api}/issues{{/number}}"),
        "pulls_url": format!("{api}/pulls{{/number}}"),
        "milestones_url": format!("{api}/milestones{{/number}}"),
        "notifications_url": format!("{api}/notifications{{?since,all,participating}}"),
        "labels_url": format!("{api}/labels{{/name}}"),
        "releases_url": format!("{api}/releases{{/id}}"),
        "deployments_url": format!("{api}/deployments"),
        "created_at": created,
        "updated_at": created,
        "pushed_at": pushed,
        "git_url": format!("git://127.0.0.1/{full}.git"),
        "ssh_url": format!("git@127.0.0.1:{full}.git"),
        "clone_url": format!("{u}/{full}.git"),
        "svn_url": format!("{u}/{full}"),
        "homepage": null,
        "size": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "language": null,
        "has_issues": true,
        "has_projects": true,
        "has_downloads": true,
        "has_wiki": true,
        "has_pages": false,
        "has_discussions": false,
        "forks_count": 0,
        "mirror_url": null,
        "archived": false,
        "disabled": false,
        "open_issues_count": 0,
        "license": null,
        "allow_forking": true,
        "is_template": false,
        "web_commit_signoff_required": false,
        "topics": [],
        "visibility": if meta.private { "private" } else { "public" },
        "forks": 0,
        "open_issues": 0,
        "watchers": 0,
        "default_branch": "main",
        "permissions": {"admin": true, "maintain": true, "push": true, "triage": true, "pull": true},
        "network_count": 0,
        "subscribers_count": 1
    })
}

fn create_repo(inner: &Inner, req: &Request) -> Response {
    let Ok(b) = serde_json::from_slice::<Value>(&req.body) else { return error(400, "Problems parsing JSON") };
    let Some(name) = b["name"].as_str().filter(|n| {
        !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    }) else {
        return Response::json(
            422,
            &json!({"message": "Repository creation failed.", "errors": [{"resource": "Repository", "code": "missing_field", "field": "name"}], "documentation_url": format!("{DOCS}/repos/repos#create-a-repository-for-the-authenticated-user")}),
        );
    };
    let private = b["private"].as_bool().unwrap_or(false);
    let auto_init = b["auto_init"].as_bool().unwrap_or(false);
    let login = inner.opts.login.clone();
    if repo_meta(inner, &login, name).is_some()
        || !inner.create_repo(&login, name, private, auto_init, b["description"].as_str().map(String::from))
    {
        return Response::json(
            422,
            &json!({"message": "Repository creation failed.", "errors": [{"resource": "Repository", "code": "custom", "field": "name", "message": "name already exists on this account"}], "documentation_url": format!("{DOCS}/repos/repos#create-a-repository-for-the-authenticated-user")}),
        );
    }
    let meta = repo_meta(inner, &login, name).expect("just created");
    if inner.opts.ref_unreadable_after_create > 0 {
        inner.lock().ref_unreadable.insert((meta.owner.clone(), meta.name.clone()), inner.opts.ref_unreadable_after_create);
    }
    Response::json(201, &repo_json(inner, &meta)).header("location", format!("{}/repos/{login}/{name}", inner.url))
}

// ---------- refs ----------

fn ref_json(ctx: &Ctx, full_ref: &str, sha: &str) -> Value {
    json!({
        "ref": full_ref,
        "node_id": util::base64_plain(format!("04:Ref{}:{full_ref}", ctx.meta.id).as_bytes()),
        "url": format!("{}/git/{full_ref}", ctx.base),
        "object": {"sha": sha, "type": "commit", "url": format!("{}/git/commits/{sha}", ctx.base)}
    })
}

fn full_ref_name(r: &str) -> String {
    if r.starts_with("refs/") { r.to_string() } else { format!("refs/{r}") }
}

fn valid_ref_name(full: &str) -> bool {
    full.matches('/').count() >= 2
        && !full.contains("..")
        && !full.ends_with('/')
        && !full.ends_with(".lock")
        && !full.chars().any(|c| c.is_control() || " ~^:?*[\\".contains(c))
}

fn get_ref(ctx: &Ctx, r: &str) -> Response {
    let full = full_ref_name(r);
    if !valid_ref_name(&full) {
        return not_found();
    }
    match git::resolve_ref(ctx.dir, &full) {
        Some(sha) => Response::json(200, &ref_json(ctx, &full, &sha)),
        None => not_found(),
    }
}

fn update_ref(ctx: &Ctx, r: &str, b: &Value) -> Response {
    let full = full_ref_name(r);
    let Some(sha) = b["sha"].as_str() else {
        return unprocessable("Invalid request.\n\n\"sha\" wasn't supplied.");
    };
    let force = b["force"].as_bool().unwrap_or(false);
    if !valid_ref_name(&full) {
        return unprocessable("Reference does not exist");
    }
    // Race mode: another machine moves the branch first.
    if let Some(branch) = full.strip_prefix("refs/heads/") {
        let race = {
            let mut st = ctx.inner.lock();
            let pos = st.races.iter().position(|rr| match &rr.target {
                None => true,
                Some((o, n, br)) => o.eq_ignore_ascii_case(&ctx.meta.owner) && n.eq_ignore_ascii_case(&ctx.meta.name) && br == branch,
            });
            pos.map(|p| st.races.remove(p))
        };
        if race.is_some() {
            let n = now_secs();
            // At the repository's root: a person's file, which oc-sync's format 2 ignores.
            let path = format!("other-machine-{n}-{}.txt", util::random_alnum(6));
            if let Ok(c) = ctx.inner.commit_as_other_machine(&ctx.meta.owner, &ctx.meta.name, branch, &[(&path, b"changed elsewhere\n")]) {
                ctx.inner.lock().race_commits.push(c);
            }
        }
    }
    let Some(old) = git::resolve_ref(ctx.dir, &full) else { return unprocessable("Reference does not exist") };
    if git::object_type(ctx.dir, sha).as_deref() != Some("commit") {
        return unprocessable("Object does not exist");
    }
    if !force && !git::is_ancestor(ctx.dir, &old, sha) {
        return unprocessable("Update is not a fast forward");
    }
    if git::update_ref(ctx.dir, &full, sha, Some(&old)).is_err() {
        // The ref moved between our read and the update.
        return unprocessable(if force { "Reference cannot be updated" } else { "Update is not a fast forward" });
    }
    Response::json(200, &ref_json(ctx, &full, sha))
}

fn delete_ref(ctx: &Ctx, r: &str) -> Response {
    let full = full_ref_name(r);
    let Some(old) = valid_ref_name(&full).then(|| git::resolve_ref(ctx.dir, &full)).flatten() else {
        return unprocessable("Reference does not exist");
    };
    match git::run(ctx.dir, &["update-ref", "-d", &full, &old], None, &[]) {
        Ok(_) => Response { status: 204, headers: vec![], body: vec![] },
        Err(_) => unprocessable("Reference cannot be deleted"),
    }
}

fn create_ref(ctx: &Ctx, b: &Value) -> Response {
    let (Some(r), Some(sha)) = (b["ref"].as_str(), b["sha"].as_str()) else {
        return unprocessable("Invalid request.\n\n\"ref\", \"sha\" weren't supplied.");
    };
    if !r.starts_with("refs/") || !valid_ref_name(r) {
        return unprocessable("Reference name must start with 'refs/' and have at least two slashes.");
    }
    if git::object_type(ctx.dir, sha).is_none() {
        return unprocessable("Object does not exist");
    }
    if git::update_ref(ctx.dir, r, sha, Some(git::ZERO_SHA)).is_err() {
        return unprocessable("Reference already exists");
    }
    Response::json(201, &ref_json(ctx, r, sha)).header("location", format!("{}/git/{r}", ctx.base))
}

// ---------- blobs ----------

fn decode_content(content: &str, encoding: &str) -> Result<Vec<u8>, Response> {
    match encoding {
        "utf-8" | "utf8" => Ok(content.as_bytes().to_vec()),
        "base64" => util::base64_decode_lenient(content).ok_or_else(|| unprocessable("Invalid base64 content")),
        other => Err(unprocessable(&format!(
            "Invalid request.\n\nencoding \"{other}\" is not a member of [\"utf-8\", \"base64\"]."
        ))),
    }
}

fn too_large(ctx: &Ctx, len: usize) -> Option<Response> {
    (len as u64 > ctx.inner.opts.max_file_size).then(|| {
        Response::json(
            422,
            &json!({
                "message": "Validation Failed",
                "errors": [{"resource": "Blob", "code": "too_large", "field": "content",
                    "message": format!("File exceeds GitHub's file size limit of {} MB", ctx.inner.opts.max_file_size / (1024 * 1024))}],
                "documentation_url": format!("{DOCS}/git/blobs#create-a-blob")
            }),
        )
    })
}

fn create_blob(ctx: &Ctx, b: &Value) -> Response {
    let Some(content) = b["content"].as_str() else {
        return unprocessable("Invalid request.\n\n\"content\" wasn't supplied.");
    };
    let data = match decode_content(content, b["encoding"].as_str().unwrap_or("utf-8")) {
        Ok(d) => d,
        Err(e) => return e,
    };
    if let Some(e) = too_large(ctx, data.len()) {
        return e;
    }
    match git::hash_blob(ctx.dir, &data) {
        Ok(sha) => {
            let url = format!("{}/git/blobs/{sha}", ctx.base);
            Response::json(201, &json!({"sha": sha, "url": url})).header("location", url)
        }
        Err(e) => error(500, &e.0),
    }
}

/// How a blob is answered, from the `Accept` header: GitHub documents
/// `application/vnd.github.raw+json` (and `application/vnd.github.raw`, `.v3.raw`) for the raw
/// bytes, and the JSON object with base64 content otherwise.
fn wants_raw(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|t| {
            let t = t.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            matches!(t.as_str(), "application/vnd.github.raw" | "application/vnd.github.raw+json" | "application/vnd.github.v3.raw")
        })
    })
}

fn get_blob(ctx: &Ctx, sha: &str, accept: Option<&str>) -> Response {
    if git::object_type(ctx.dir, sha).as_deref() != Some("blob") {
        return not_found();
    }
    match git::cat_blob(ctx.dir, sha) {
        Ok(data) if wants_raw(accept) => Response {
            status: 200,
            headers: vec![("content-type".into(), "application/vnd.github.raw; charset=utf-8".into())],
            body: data,
        },
        Ok(data) => Response::json(
            200,
            &json!({
                "sha": sha,
                "node_id": util::base64_plain(format!("04:Blob{}:{sha}", ctx.meta.id).as_bytes()),
                "size": data.len(),
                "url": format!("{}/git/blobs/{sha}", ctx.base),
                "content": base64_wrapped(&data),
                "encoding": "base64"
            }),
        ),
        Err(e) => error(500, &e.0),
    }
}

// ---------- trees ----------

fn entry_json(ctx: &Ctx, e: &git::TreeEntry) -> Value {
    let mut v = json!({
        "path": e.path,
        "mode": e.mode,
        "type": e.kind,
        "sha": e.sha,
    });
    match e.kind.as_str() {
        "blob" => {
            v["size"] = json!(e.size.unwrap_or(0));
            v["url"] = json!(format!("{}/git/blobs/{}", ctx.base, e.sha));
        }
        "tree" => v["url"] = json!(format!("{}/git/trees/{}", ctx.base, e.sha)),
        _ => {}
    }
    v
}

fn valid_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.ends_with('/')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != ".." && c != ".git")
        && !p.contains('\0')
}

fn create_tree(ctx: &Ctx, b: &Value) -> Response {
    let base = match b.get("base_tree") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let t = git::object_type(ctx.dir, s);
            match t.as_deref() {
                Some("tree") => Some(s.clone()),
                Some("commit") => Some(format!("{s}^{{tree}}")),
                _ => return unprocessable("Invalid tree info"),
            }
        }
        Some(_) => return unprocessable("Invalid request.\n\nFor 'properties/base_tree', is not a string."),
    };
    let Some(entries) = b["tree"].as_array() else {
        return unprocessable("Invalid request.\n\n\"tree\" wasn't supplied.");
    };
    let mut changes = Vec::with_capacity(entries.len());
    for e in entries {
        let Some(path) = e["path"].as_str().filter(|p| valid_path(p)) else {
            return unprocessable("Invalid tree info: path is missing or invalid");
        };
        let mode = e["mode"].as_str().unwrap_or("");
        if !matches!(mode, "100644" | "100755" | "040000" | "160000" | "120000") {
            return unprocessable(&format!(
                "Invalid request.\n\n\"{mode}\" is not a member of [\"100644\", \"100755\", \"040000\", \"160000\", \"120000\"]."
            ));
        }
        let kind = e["type"].as_str().unwrap_or(match mode {
            "040000" => "tree",
            "160000" => "commit",
            _ => "blob",
        });
        let expected = match mode {
            "040000" => "tree",
            "160000" => "commit",
            _ => "blob",
        };
        if kind != expected {
            return unprocessable(&format!("Invalid tree info: type {kind} does not match mode {mode}"));
        }
        let has_sha = e.get("sha").is_some();
        let has_content = e.get("content").is_some();
        if has_sha && has_content {
            return unprocessable("Invalid tree info: only one of sha and content may be given");
        }
        if let Some(content) = e["content"].as_str() {
            if kind != "blob" {
                return unprocessable("Invalid tree info: content is only allowed for blobs");
            }
            if let Some(r) = too_large(ctx, content.len()) {
                return r;
            }
            let sha = match git::hash_blob(ctx.dir, content.as_bytes()) {
                Ok(s) => s,
                Err(err) => return error(500, &err.0),
            };
            changes.push(TreeChange::Put { path: path.into(), mode: mode.into(), sha });
            continue;
        }
        match e.get("sha") {
            Some(Value::Null) => changes.push(TreeChange::Delete { path: path.into() }),
            Some(Value::String(sha)) => {
                let t = git::object_type(ctx.dir, sha);
                if kind == "commit" {
                    // Submodule links need not exist locally.
                    if !git::is_valid_sha(sha) {
                        return unprocessable("Invalid tree info");
                    }
                } else if t.as_deref() != Some(kind) {
                    return unprocessable(&format!("Invalid tree info: {sha} is not a valid {kind} object"));
                }
                if kind == "blob" {
                    let size = git::run_str(ctx.dir, &["cat-file", "-s", sha]).ok().and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
                    if let Some(r) = too_large(ctx, size) {
                        return r;
                    }
                }
                if kind == "tree" {
                    changes.push(TreeChange::PutTree { path: path.into(), sha: sha.clone() });
                } else {
                    changes.push(TreeChange::Put { path: path.into(), mode: mode.into(), sha: sha.clone() });
                }
            }
            _ => return unprocessable("Invalid tree info: either sha or content must be given"),
        }
    }
    let sha = match git::build_tree(ctx.dir, base.as_deref(), &changes) {
        Ok(s) => s,
        Err(e) => return unprocessable(&format!("GitRPC::BadObjectState: {e}")),
    };
    let entries = git::ls_tree(ctx.dir, &sha, false).unwrap_or_default();
    let url = format!("{}/git/trees/{sha}", ctx.base);
    Response::json(
        201,
        &json!({
            "sha": sha,
            "url": url,
            "tree": entries.iter().map(|e| entry_json(ctx, e)).collect::<Vec<_>>(),
            "truncated": false
        }),
    )
    .header("location", url)
}

fn get_tree(ctx: &Ctx, r: &str, recursive: bool) -> Response {
    let sha = match git::object_type(ctx.dir, r).as_deref() {
        Some("tree") => r.to_string(),
        Some("commit") => git::read_commit(ctx.dir, r).map(|c| c.tree).unwrap_or_default(),
        _ => match git::resolve_commitish(ctx.dir, r) {
            Some(c) => git::read_commit(ctx.dir, &c).map(|c| c.tree).unwrap_or_default(),
            None => return not_found(),
        },
    };
    let Ok(mut entries) = git::ls_tree(ctx.dir, &sha, recursive) else { return not_found() };
    let limit = ctx.inner.opts.tree_truncate_entries;
    let truncated = recursive && entries.len() > limit;
    if truncated {
        entries.truncate(limit);
    }
    Response::json(
        200,
        &json!({
            "sha": sha,
            "url": format!("{}/git/trees/{sha}", ctx.base),
            "tree": entries.iter().map(|e| entry_json(ctx, e)).collect::<Vec<_>>(),
            "truncated": truncated
        }),
    )
}

// ---------- commits ----------

fn parse_ident(v: &Value, fallback: &git::Ident) -> Result<git::Ident, Response> {
    if v.is_null() {
        return Ok(git::Ident { name: fallback.name.clone(), email: fallback.email.clone(), date: fallback.date.clone() });
    }
    let (Some(name), Some(email)) = (v["name"].as_str(), v["email"].as_str()) else {
        return Err(unprocessable("Invalid request.\n\n\"name\", \"email\" weren't supplied."));
    };
    Ok(git::Ident { name: name.into(), email: email.into(), date: v["date"].as_str().map(String::from) })
}

fn create_commit(ctx: &Ctx, b: &Value) -> Response {
    let Some(message) = b["message"].as_str() else {
        return unprocessable("Invalid request.\n\n\"message\" wasn't supplied.");
    };
    let Some(tree) = b["tree"].as_str() else {
        return unprocessable("Invalid request.\n\n\"tree\" wasn't supplied.");
    };
    if git::object_type(ctx.dir, tree).as_deref() != Some("tree") {
        return unprocessable("Tree SHA does not exist");
    }
    let mut parents = Vec::new();
    match &b["parents"] {
        Value::Null => {}
        Value::Array(ps) => {
            for p in ps {
                let Some(p) = p.as_str() else { return unprocessable("Invalid request.\n\nparents must be strings") };
                if git::object_type(ctx.dir, p).as_deref() != Some("commit") {
                    return unprocessable("Parent SHA does not exist or is not a commit object");
                }
                parents.push(p.to_string());
            }
        }
        _ => return unprocessable("Invalid request.\n\nparents must be an array"),
    }
    let login = &ctx.inner.opts.login;
    let default = git::Ident { name: login.clone(), email: format!("{login}@users.noreply.github.com"), date: None };
    let author = match parse_ident(&b["author"], &default) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let committer = match parse_ident(&b["committer"], &author) {
        Ok(c) => c,
        Err(e) => return e,
    };
    match git::commit_tree(ctx.dir, tree, &parents, message, &author, &committer) {
        Ok(sha) => {
            let mut r = commit_response(ctx, &sha, 201);
            r = r.header("location", format!("{}/git/commits/{sha}", ctx.base));
            r
        }
        Err(e) => unprocessable(&e.0),
    }
}

fn git_commit_json(ctx: &Ctx, sha: &str) -> Option<Value> {
    let c = git::read_commit(ctx.dir, sha).ok()?;
    let ident = |i: &(String, String, i64, String)| json!({"name": i.0, "email": i.1, "date": iso8601(i.2)});
    Some(json!({
        "sha": sha,
        "node_id": util::base64_plain(format!("04:Commit{}:{sha}", ctx.meta.id).as_bytes()),
        "url": format!("{}/git/commits/{sha}", ctx.base),
        "html_url": format!("{}/commit/{sha}", ctx.html()),
        "author": ident(&c.author),
        "committer": ident(&c.committer),
        "tree": {"sha": c.tree, "url": format!("{}/git/trees/{}", ctx.base, c.tree)},
        "message": c.message,
        "parents": c.parents.iter().map(|p| json!({
            "sha": p,
            "url": format!("{}/git/commits/{p}", ctx.base),
            "html_url": format!("{}/commit/{p}", ctx.html()),
        })).collect::<Vec<_>>(),
        "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null}
    }))
}

fn commit_response(ctx: &Ctx, sha: &str, status: u16) -> Response {
    match git_commit_json(ctx, sha) {
        Some(v) => Response::json(status, &v),
        None => not_found(),
    }
}

fn get_commit(ctx: &Ctx, sha: &str) -> Response {
    if git::object_type(ctx.dir, sha).as_deref() != Some("commit") {
        return not_found();
    }
    commit_response(ctx, sha, 200)
}

// ---------- contents ----------

fn put_contents(ctx: &Ctx, path: &str, b: &Value) -> Response {
    let (Some(message), Some(content)) = (b["message"].as_str(), b["content"].as_str()) else {
        return unprocessable("Invalid request.\n\n\"message\", \"content\" weren't supplied.");
    };
    if !valid_path(path) {
        return unprocessable("path is invalid");
    }
    let Some(data) = util::base64_decode_lenient(content) else {
        return unprocessable("content is not valid Base64");
    };
    if let Some(r) = too_large(ctx, data.len()) {
        return r;
    }
    let branch = match &b["branch"] {
        Value::Null => "main".to_string(),
        Value::String(s) => s.clone(),
        _ => return unprocessable("Invalid request.\n\nFor 'properties/branch', is not a string."),
    };
    let full = format!("refs/heads/{branch}");
    if !valid_ref_name(&full) {
        return not_found_msg(&format!("Branch {branch} not found"));
    }
    let head = git::resolve_ref(ctx.dir, &full);
    if head.is_none() && !git::is_empty_repo(ctx.dir) {
        return not_found_msg(&format!("Branch {branch} not found"));
    }
    // The file currently at `path` on the branch: (mode, blob sha).
    let existing = head.as_ref().and_then(|h| {
        let tree = git::read_commit(ctx.dir, h).ok()?.tree;
        let out = git::run(ctx.dir, &["ls-tree", "-z", &tree, "--", path], None, &[]).ok()?;
        let rec = out.split(|c| *c == 0).find(|r| !r.is_empty())?;
        let rec = String::from_utf8_lossy(rec).to_string();
        let (meta, p) = rec.split_once('\t')?;
        let parts: Vec<&str> = meta.split_whitespace().collect();
        (p == path && parts.len() == 3).then(|| (parts[0].to_string(), parts[1].to_string(), parts[2].to_string()))
    });
    let mode = match &existing {
        Some((_, kind, _)) if kind != "blob" => return unprocessable(&format!("{path} is a directory")),
        Some((mode, _, blob)) => match b["sha"].as_str() {
            None => return unprocessable("Invalid request.\n\n\"sha\" wasn't supplied."),
            Some(sha) if sha != blob => return error(409, &format!("{path} does not match {sha}")),
            Some(_) => mode.clone(),
        },
        None => "100644".into(),
    };
    let blob = match git::hash_blob(ctx.dir, &data) {
        Ok(s) => s,
        Err(e) => return error(500, &e.0),
    };
    let base_tree = head.as_ref().map(|h| format!("{h}^{{tree}}"));
    let tree = match git::build_tree(ctx.dir, base_tree.as_deref(), &[TreeChange::Put { path: path.into(), mode, sha: blob.clone() }]) {
        Ok(t) => t,
        Err(e) => return error(500, &e.0),
    };
    let login = &ctx.inner.opts.login;
    let default = git::Ident { name: login.clone(), email: format!("{login}@users.noreply.github.com"), date: None };
    let committer = match parse_ident(&b["committer"], &default) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let author = match parse_ident(&b["author"], &committer) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let parents: Vec<String> = head.iter().cloned().collect();
    let commit = match git::commit_tree(ctx.dir, &tree, &parents, message, &author, &committer) {
        Ok(c) => c,
        Err(e) => return error(500, &e.0),
    };
    if git::update_ref(ctx.dir, &full, &commit, Some(head.as_deref().unwrap_or(git::ZERO_SHA))).is_err() {
        // The branch moved while we were committing.
        return error(409, &format!("{branch} is at a different commit than expected"));
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    let url = format!("{}/contents/{path}?ref={branch}", ctx.base);
    let html_url = format!("{}/blob/{branch}/{path}", ctx.html());
    let git_url = format!("{}/git/blobs/{blob}", ctx.base);
    let content = json!({
        "name": name,
        "path": path,
        "sha": blob,
        "size": data.len(),
        "url": url,
        "html_url": html_url,
        "git_url": git_url,
        "download_url": format!("{}/_raw/{}/{}/{branch}/{path}", ctx.inner.url, ctx.meta.owner, ctx.meta.name),
        "type": "file",
        "_links": {"self": url, "git": git_url, "html": html_url}
    });
    let mut commit_json = git_commit_json(ctx, &commit).unwrap_or(Value::Null);
    if let Some(v) = commit_json.get_mut("verification").and_then(Value::as_object_mut) {
        v.remove("verified_at");
    }
    Response::json(if existing.is_some() { 200 } else { 201 }, &json!({"content": content, "commit": commit_json}))
}

// ---------- tarball ----------

fn tarball(ctx: &Ctx, r: &str) -> Response {
    let name = if r.is_empty() { "main" } else { r };
    let Some(sha) = git::resolve_commitish(ctx.dir, name) else { return not_found() };
    let token = util::random_alnum(20);
    ctx.inner.lock().download_tokens.push(token.clone());
    let location = format!(
        "{}/_codeload/{}/{}/legacy.tar.gz/{sha}?token={token}",
        ctx.inner.url, ctx.meta.owner, ctx.meta.name
    );
    Response { status: 302, headers: vec![("location".into(), location)], body: vec![] }
}

fn codeload(inner: &Inner, req: &Request, segs: &[String]) -> Response {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let ["_codeload", owner, name, "legacy.tar.gz", sha] = s.as_slice() else { return not_found() };
    let token = util::query_param(&req.query, "token").unwrap_or("");
    if req.method != "GET" || !inner.lock().download_tokens.iter().any(|t| t == token) {
        return not_found();
    }
    let Some(meta) = repo_meta(inner, owner, name) else { return not_found() };
    let dir = inner.git_dir(&meta.owner, &meta.name);
    if git::object_type(&dir, sha).as_deref() != Some("commit") {
        return not_found();
    }
    let prefix = format!("--prefix={}-{}-{}/", meta.owner, meta.name, &sha[..7]);
    match git::run(&dir, &["archive", "--format=tar.gz", &prefix, sha], None, &[]) {
        Ok(data) => Response {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/x-gzip".into()),
                (
                    "content-disposition".into(),
                    format!("attachment; filename={}-{}-{}.tar.gz", meta.owner, meta.name, &sha[..7]),
                ),
            ],
            body: data,
        },
        Err(e) => error(500, &e.0),
    }
}

// ---------- compare ----------

fn compare(ctx: &Ctx, spec: &str) -> Response {
    let Some((base_name, head_name)) = spec.split_once("...") else { return not_found() };
    let (Some(base), Some(head)) = (git::resolve_commitish(ctx.dir, base_name), git::resolve_commitish(ctx.dir, head_name))
    else {
        return not_found();
    };
    let merge_base = match git::run_str(ctx.dir, &["merge-base", &base, &head]) {
        Ok(mb) if git::is_valid_sha(&mb) => mb,
        _ => return not_found(),
    };
    let count = |range: String| {
        git::run_str(ctx.dir, &["rev-list", "--count", &range]).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
    };
    let ahead = count(format!("{base}..{head}"));
    let behind = count(format!("{head}..{base}"));
    let status = match (ahead, behind) {
        (0, 0) => "identical",
        (_, 0) => "ahead",
        (0, _) => "behind",
        _ => "diverged",
    };
    let commit_list: Vec<String> = git::run_str(ctx.dir, &["rev-list", "--reverse", "--max-count=250", &format!("{base}..{head}")])
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    // Files changed between the merge base and head.
    let raw = git::run(ctx.dir, &["diff-tree", "-r", "-z", "--no-renames", "--raw", &merge_base, &head], None, &[]).unwrap_or_default();
    let numstat = git::run(ctx.dir, &["diff-tree", "-r", "-z", "--no-renames", "--numstat", &merge_base, &head], None, &[]).unwrap_or_default();
    let mut stats = std::collections::HashMap::new();
    for rec in numstat.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let rec = String::from_utf8_lossy(rec);
        let mut p = rec.splitn(3, '\t');
        let (a, d, path) = (p.next().unwrap_or("0"), p.next().unwrap_or("0"), p.next().unwrap_or(""));
        stats.insert(path.to_string(), (a.parse::<u64>().unwrap_or(0), d.parse::<u64>().unwrap_or(0)));
    }
    let mut files = Vec::new();
    let mut it = raw.split(|b| *b == 0).filter(|r| !r.is_empty());
    while let (Some(meta), Some(path)) = (it.next(), it.next()) {
        let meta = String::from_utf8_lossy(meta);
        let path = String::from_utf8_lossy(path).to_string();
        let parts: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
        if parts.len() < 5 {
            continue;
        }
        let (old_sha, new_sha, code) = (parts[2], parts[3], parts[4]);
        let status = match code {
            "A" => "added",
            "D" => "removed",
            "M" => "modified",
            _ => "changed",
        };
        let sha = if code == "D" { old_sha } else { new_sha };
        let (add, del) = stats.get(&path).copied().unwrap_or((0, 0));
        files.push(json!({
            "sha": sha,
            "filename": path,
            "status": status,
            "additions": add,
            "deletions": del,
            "changes": add + del,
            "blob_url": format!("{}/blob/{head}/{path}", ctx.html()),
            "raw_url": format!("{}/raw/{head}/{path}", ctx.html()),
            "contents_url": format!("{}/contents/{path}?ref={head}", ctx.base),
        }));
    }
    files.truncate(ctx.inner.opts.compare_max_files);
    let commit_item = |sha: &str| -> Value {
        let g = git_commit_json(ctx, sha).unwrap_or(Value::Null);
        json!({
            "sha": sha,
            "node_id": g["node_id"],
            "commit": {
                "author": g["author"], "committer": g["committer"], "message": g["message"],
                "tree": g["tree"], "url": g["url"], "comment_count": 0, "verification": g["verification"]
            },
            "url": format!("{}/commits/{sha}", ctx.base),
            "html_url": format!("{}/commit/{sha}", ctx.html()),
            "comments_url": format!("{}/commits/{sha}/comments", ctx.base),
            "author": null,
            "committer": null,
            "parents": g["parents"].as_array().cloned().unwrap_or_default().iter().map(|p| json!({
                "sha": p["sha"], "url": format!("{}/commits/{}", ctx.base, p["sha"].as_str().unwrap_or("")), "html_url": p["html_url"]
            })).collect::<Vec<_>>()
        })
    };
    let html = ctx.html();
    Response::json(
        200,
        &json!({
            "url": format!("{}/compare/{base_name}...{head_name}", ctx.base),
            "html_url": format!("{html}/compare/{base_name}...{head_name}"),
            "permalink_url": format!("{html}/compare/{}:{}...{}:{}", ctx.meta.owner, &base[..7], ctx.meta.owner, &head[..7]),
            "diff_url": format!("{html}/compare/{base_name}...{head_name}.diff"),
            "patch_url": format!("{html}/compare/{base_name}...{head_name}.patch"),
            "base_commit": commit_item(&base),
            "merge_base_commit": commit_item(&merge_base),
            "status": status,
            "ahead_by": ahead,
            "behind_by": behind,
            "total_commits": ahead,
            "commits": commit_list.iter().map(|c| commit_item(c)).collect::<Vec<_>>(),
            "files": files
        }),
    )
}
