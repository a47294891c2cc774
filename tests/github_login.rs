//! `oc-sync login` / `logout` / `status` with the real binary against the in-process fake GitHub.
//! The fake runs on the test's multi-thread runtime; the binary runs inside `spawn_blocking`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fake_github::{FakeGithub, FakeOptions};

mod common;
use common::Out;

/// Runs `oc-sync args` with its own HOME, only PATH and GITHUB_API_URL set, `stdin` fed in (None:
/// stdin is /dev/null, which is not a terminal).
async fn oc_sync(home: &Path, api_url: &str, args: &[&str], stdin: Option<String>, extra_env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oc-sync"));
    cmd.args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GITHUB_API_URL", api_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    if stdin.is_none() {
        cmd.stdin(Stdio::null());
    }
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("run oc-sync");
        if let Some(text) = stdin {
            let mut s = child.stdin.take().unwrap();
            s.write_all(text.as_bytes()).unwrap();
        }
        Out::from_output(child.wait_with_output().unwrap())
    })
    .await
    .unwrap()
}

fn token_file(home: &Path) -> PathBuf {
    home.join(".local/share/oc-sync/github-token.json")
}

#[tokio::test(flavor = "multi_thread")]
async fn login_checks_stores_privately_and_logout_removes() {
    let gh = FakeGithub::start(FakeOptions::default()).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let token = gh.token().to_string();

    let r = oc_sync(h, &gh.url, &["login", "--with-token"], Some(format!("{token}\n")), &[]).await;
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.out, r.err);
    assert!(r.out.contains(&format!("as {}", gh.login())), "{}", r.out);
    assert!(r.out.contains("Next: oc-sync sync"), "{}", r.out);
    assert!(!r.out.contains(&token) && !r.err.contains(&token), "the full token is never printed");
    let file = token_file(h);
    assert!(r.out.contains(&file.display().to_string()), "{}", r.out);
    let stored: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(stored["token"], token.as_str());
    assert_eq!(stored["login"], gh.login());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(gh.requests().iter().any(|q| q.method == "GET" && q.path.ends_with("/user")), "the token was checked");

    // status names the stored token as the one in use, without contacting GitHub.
    let before = gh.requests().len();
    let st = oc_sync(h, &gh.url, &["status", "--json"], None, &[]).await;
    let v: serde_json::Value = serde_json::from_str(&st.out).unwrap_or_else(|e| panic!("{e}: {}", st.out));
    assert_eq!(v["github"]["tokenSource"], "oc-sync login");
    assert!(!st.out.contains(&token));
    assert_eq!(gh.requests().len(), before, "status sends no request");

    // An environment token takes precedence: login still works but says so.
    let r = oc_sync(h, &gh.url, &["login", "--with-token"], Some(token.clone()), &[("GITHUB_TOKEN", "ghp_fromtheenvironment42")]).await;
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(r.out.contains("GITHUB_TOKEN") && r.out.contains("takes precedence"), "{}", r.out);
    assert!(!r.out.contains("ghp_fromtheenvironment42"), "{}", r.out);

    let r = oc_sync(h, &gh.url, &["logout"], None, &[]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.contains("Removed the stored GitHub token"), "{}", r.out);
    assert!(!file.exists());
    let r = oc_sync(h, &gh.url, &["logout", "--json"], None, &[]).await;
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["removed"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_refused_and_not_stored() {
    let gh = FakeGithub::start(FakeOptions::default()).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let wrong = "ghp_wrongwrongwrongwrongwrong1234";

    let r = oc_sync(h, &gh.url, &["login", "--with-token"], Some(format!("{wrong}\n")), &[]).await;
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.out, r.err);
    assert!(r.err.contains("wrong, expired or revoked"), "{}", r.err);
    assert!(r.err.contains("nothing was stored"), "{}", r.err);
    assert!(!r.out.contains(wrong) && !r.err.contains(wrong), "the full token is never printed");
    assert!(!token_file(h).exists());

    let r = oc_sync(h, &gh.url, &["login", "--with-token", "--json"], Some(wrong.into()), &[]).await;
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["ok"], false);
    assert!(!r.out.contains(wrong));

    // No token on stdin, and no terminal to ask on.
    let r = oc_sync(h, &gh.url, &["login", "--with-token"], Some(String::new()), &[]).await;
    assert_eq!(r.code, 1, "{}", r.err);
    assert!(r.err.contains("no token given"), "{}", r.err);
    let r = oc_sync(h, &gh.url, &["login"], None, &[]).await;
    assert_eq!(r.code, 2, "{}", r.err);
    assert!(r.err.contains("--with-token") && r.err.contains("GITHUB_TOKEN"), "{}", r.err);
    assert!(!token_file(h).exists());
}
