//! `oc-sync login` / `logout` / `status` with the real binary against the in-process fake GitHub.
//! The fake runs on the test's multi-thread runtime; the binary runs inside `spawn_blocking`.

use std::path::{Path, PathBuf};

use fake_github::{FakeGithub, FakeOptions};

use crate::common::Machine;

fn token_file(home: &Path) -> PathBuf {
    home.join(".local/share/oc-sync/github-token.json")
}

#[tokio::test(flavor = "multi_thread")]
async fn login_checks_stores_privately_and_logout_removes() {
    let gh = FakeGithub::start(FakeOptions::default()).await.unwrap();
    let m = Machine::new("m").env("GITHUB_API_URL", &gh.url);
    let h = &m.home;
    let token = gh.token().to_string();

    let r = m.run_stdin_async(&["login", "--with-token"], Some(format!("{token}\n")), &[]).await;
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
    let st = m.run_stdin_async(&["status", "--json"], None, &[]).await;
    let v: serde_json::Value = serde_json::from_str(&st.out).unwrap_or_else(|e| panic!("{e}: {}", st.out));
    assert_eq!(v["github"]["tokenSource"], "oc-sync login");
    assert!(!st.out.contains(&token));
    assert_eq!(gh.requests().len(), before, "status sends no request");

    // An environment token takes precedence: login still works but says so.
    let r = m.run_stdin_async(&["login", "--with-token"], Some(token.clone()), &[("GITHUB_TOKEN", "ghp_fromtheenvironment42")]).await;
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(r.out.contains("GITHUB_TOKEN") && r.out.contains("takes precedence"), "{}", r.out);
    assert!(!r.out.contains("ghp_fromtheenvironment42"), "{}", r.out);

    let r = m.run_stdin_async(&["logout"], None, &[]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.contains("Removed the stored GitHub token"), "{}", r.out);
    assert!(!file.exists());
    let r = m.run_stdin_async(&["logout", "--json"], None, &[]).await;
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["removed"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_refused_and_not_stored() {
    let gh = FakeGithub::start(FakeOptions::default()).await.unwrap();
    let m = Machine::new("m").env("GITHUB_API_URL", &gh.url);
    let h = &m.home;
    let wrong = "ghp_wrongwrongwrongwrongwrong1234";

    let r = m.run_stdin_async(&["login", "--with-token"], Some(format!("{wrong}\n")), &[]).await;
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.out, r.err);
    assert!(r.err.contains("wrong, expired or revoked"), "{}", r.err);
    assert!(r.err.contains("nothing was stored"), "{}", r.err);
    assert!(!r.out.contains(wrong) && !r.err.contains(wrong), "the full token is never printed");
    assert!(!token_file(h).exists());

    let r = m.run_stdin_async(&["login", "--with-token", "--json"], Some(wrong.into()), &[]).await;
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["ok"], false);
    assert!(!r.out.contains(wrong));

    // No token on stdin, and no terminal to ask on.
    let r = m.run_stdin_async(&["login", "--with-token"], Some(String::new()), &[]).await;
    assert_eq!(r.code, 1, "{}", r.err);
    assert!(r.err.contains("no token given"), "{}", r.err);
    let r = m.run_stdin_async(&["login"], None, &[]).await;
    assert_eq!(r.code, 2, "{}", r.err);
    assert!(r.err.contains("--with-token") && r.err.contains("GITHUB_TOKEN"), "{}", r.err);
    assert!(!token_file(h).exists());
}
