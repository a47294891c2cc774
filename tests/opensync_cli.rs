//! `oc-sync opensync ...` through the real binary against the fake OpenSync API, with an OpenCode
//! database made from OpenCode 1.18.33's schema.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Out;
use fake_opensync::{FakeOpenSync, FakeOptions};
use oc_sync::source::opencode_db::{create_test_db, insert_fake_session};

struct Home {
    _dir: tempfile::TempDir,
    home: PathBuf,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_path_buf();
        let db = home.join(".local/share/opencode/opencode.db");
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        create_test_db(&db).unwrap();
        Home { _dir: dir, home }
    }
    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.home.join(".local/share/opencode/opencode.db")).unwrap()
    }
    async fn run(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oc-sync"));
        cmd.args(args)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OC_SYNC_OPENSYNC_RETRY_MS", "5");
        tokio::task::spawn_blocking(move || Out::from_output(cmd.output().unwrap())).await.unwrap()
    }
    async fn json(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let o = self.run(args).await;
        (o.code, serde_json::from_str(&o.out).unwrap_or_else(|e| panic!("{e}: {}", o.all())))
    }
}

fn file_mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn login_sync_status_and_logout() {
    let os = FakeOpenSync::start(FakeOptions::default()).await.unwrap();
    let h = Home::new();
    insert_fake_session(&h.db(), "proj1", "ses_a", 6, 3, 200).unwrap();
    insert_fake_session(&h.db(), "proj1", "ses_b", 4, 3, 200).unwrap();

    // A wrong key is refused and nothing is stored.
    let o = h.run(&["opensync", "login", "--url", &os.url, "--key", "osk_wrongwrongwrongwrongwrongwrong"]).await;
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.err.contains("wrong or was revoked"), "{}", o.all());
    assert!(!o.all().contains("osk_wrongwrongwrongwrongwrongwrong"));
    assert!(!h.home.join(".local/share/oc-sync/opensync.json").exists());

    let o = h.run(&["opensync", "login", "--url", &os.url, "--key", os.key()]).await;
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(!o.all().contains(os.key()), "{}", o.all());
    assert_eq!(file_mode(&h.home.join(".local/share/oc-sync/opensync.json")), 0o600);

    let (code, v) = h.json(&["opensync", "sync", "--json"]).await;
    assert_eq!(code, 0, "{v}");
    assert_eq!((v["sessionsSent"].as_u64(), v["messagesSent"].as_u64()), (Some(2), Some(10)), "{v}");
    let s = os.session("ses_a").expect("session stored");
    assert_eq!(s["source"], "opencode");
    assert!(s["cost"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(os.messages_of("ses_a").len(), 6);
    assert!(os.messages().iter().all(|m| m["parts"].is_array()), "every message has its parts");

    // Nothing changed: nothing sent.
    os.clear_requests();
    let (_, v) = h.json(&["opensync", "sync", "--json"]).await;
    assert_eq!((v["sessionsSent"].as_u64(), v["messagesSent"].as_u64()), (Some(0), Some(0)), "{v}");
    assert!(os.requests().iter().all(|r| !r.path.starts_with("/sync/batch")), "no batch when nothing changed");
    // --force sends everything again (idempotent on the server).
    let (_, v) = h.json(&["opensync", "sync", "--force", "--json"]).await;
    assert_eq!(v["messagesSent"].as_u64(), Some(10), "{v}");
    assert_eq!(os.sessions().len(), 2);
    assert_eq!(os.messages().len(), 10);

    // A server error is retried; a lasting one fails and leaves the session pending.
    insert_fake_session(&h.db(), "proj1", "ses_c", 2, 3, 200).unwrap();
    os.fail_next("/sync/batch", 2, 502);
    let (code, v) = h.json(&["opensync", "sync", "--json"]).await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["sessionsSent"].as_u64(), Some(1), "{v}");
    insert_fake_session(&h.db(), "proj1", "ses_d", 2, 3, 200).unwrap();
    os.fail_next("/sync/batch", 10, 500);
    let o = h.run(&["opensync", "sync"]).await;
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.err.contains("server error"), "{}", o.all());
    let (code, st) = h.json(&["opensync", "status", "--json"]).await;
    assert_eq!(code, 0, "{st}");
    assert_eq!(st["pendingSessions"].as_u64(), Some(1), "{st}");
    assert!(st["lastError"].as_str().is_some_and(|e| e.contains("server error")), "{st}");
    assert!(!st.to_string().contains(os.key()));
    os.clear_faults();
    let (code, v) = h.json(&["opensync", "sync", "--json"]).await;
    assert_eq!((code, v["sessionsSent"].as_u64()), (0, Some(1)), "{v}");

    // The general status names the export too (offline, key masked).
    let o = h.run(&["status"]).await;
    assert!(o.out.contains("opensync") && o.out.contains("sessions"), "{}", o.all());
    assert!(!o.all().contains(os.key()));

    let o = h.run(&["opensync", "logout"]).await;
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(!h.home.join(".local/share/oc-sync/opensync.json").exists());
    let o = h.run(&["opensync", "sync"]).await;
    assert!(o.err.contains("opensync login"), "{}", o.all());
    os.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_plugins_credentials_are_used() {
    let os = FakeOpenSync::start(FakeOptions::default()).await.unwrap();
    let h = Home::new();
    insert_fake_session(&h.db(), "proj1", "ses_a", 2, 2, 100).unwrap();
    let legacy = h.home.join(".opensync/credentials.json");
    std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    std::fs::write(&legacy, serde_json::json!({"convexUrl": os.url, "apiKey": os.key()}).to_string()).unwrap();
    let (code, v) = h.json(&["opensync", "sync", "--json"]).await;
    assert_eq!((code, v["sessionsSent"].as_u64()), (0, Some(1)), "{v}");
    os.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn items_refused_in_a_batch_answer_stay_pending() {
    let os = FakeOpenSync::start(FakeOptions::default()).await.unwrap();
    let h = Home::new();
    insert_fake_session(&h.db(), "proj1", "ses_a", 4, 2, 100).unwrap();
    let o = h.run(&["opensync", "login", "--url", &os.url, "--key", os.key()]).await;
    assert_eq!(o.code, 0, "{}", o.all());
    let victim: String = h.db().query_row("SELECT id FROM message ORDER BY id LIMIT 1 OFFSET 2", [], |r| r.get(0)).unwrap();
    os.refuse_message(&victim);
    let (code, v) = h.json(&["opensync", "sync", "--json"]).await;
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["messagesSent"].as_u64(), Some(3), "{v}");
    assert!(v["refused"][0].as_str().is_some_and(|r| r.contains(&victim)), "{v}");
    let (_, st) = h.json(&["opensync", "status", "--json"]).await;
    assert_eq!(st["pendingSessions"].as_u64(), Some(1), "{st}");
    os.accept_all();
    os.clear_requests();
    let (code, v) = h.json(&["opensync", "sync", "--json"]).await;
    assert_eq!((code, v["messagesSent"].as_u64(), v["sessionsSent"].as_u64()), (0, Some(1), Some(0)), "{v}");
    assert!(os.message(&victim).is_some());
    let (_, st) = h.json(&["opensync", "status", "--json"]).await;
    assert_eq!(st["pendingSessions"].as_u64(), Some(0), "{st}");
    os.stop().await;
}
