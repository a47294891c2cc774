//! `oc-sync opensync ...` through the real binary against the fake OpenSync API, with an OpenCode
//! database made from OpenCode 1.18.33's schema.

use std::path::Path;

use crate::common::Machine;
use crate::common::lib::insert_fake_session;
use fake_opensync::{FakeOpenSync, FakeOptions};
use serde_json::Value;

/// A machine with OpenCode's database (no sessions yet).
fn home() -> Machine {
    let h = Machine::new("h").env("OC_SYNC_OPENSYNC_RETRY_MS", "5");
    h.create_db();
    h
}

fn file_mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn login_sync_status_and_logout() {
    let os = FakeOpenSync::start(FakeOptions::default()).await.unwrap();
    let h = home();
    insert_fake_session(&h.db(), "proj1", "ses_a", 6, 3, 200).unwrap();
    insert_fake_session(&h.db(), "proj1", "ses_b", 4, 3, 200).unwrap();

    // A wrong key is refused and nothing is stored.
    let o = h.run_async(&["opensync", "login", "--url", &os.url, "--key", "osk_wrongwrongwrongwrongwrongwrong"]).await;
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.err.contains("wrong or was revoked"), "{}", o.all());
    assert!(!o.all().contains("osk_wrongwrongwrongwrongwrongwrong"));
    assert!(!h.home.join(".local/share/oc-sync/opensync.json").exists());

    let o = h.run_async(&["opensync", "login", "--url", &os.url, "--key", os.key()]).await;
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(!o.all().contains(os.key()), "{}", o.all());
    assert_eq!(file_mode(&h.home.join(".local/share/oc-sync/opensync.json")), 0o600);

    let (code, v) = h.run_json_async(&["opensync", "sync", "--json"]).await;
    assert_eq!(code, 0, "{v}");
    assert_eq!((v["sessionsStored"].as_u64(), v["messagesStored"].as_u64()), (Some(2), Some(10)), "{v}");
    let s = os.session("ses_a").expect("session stored");
    assert_eq!(s["source"], "opencode");
    assert!(s["cost"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(os.messages_of("ses_a").len(), 6);
    assert!(os.messages().iter().all(|m| !m["parts"].as_array().unwrap().is_empty()), "every message has its parts");
    // Original times: the session's and every message's createdAt are OpenCode's.
    let created: i64 = h.db().query_row("SELECT time_created FROM session WHERE id = 'ses_a'", [], |r| r.get(0)).unwrap();
    assert_eq!(s["createdAt"].as_i64(), Some(created), "{s}");
    let times: Vec<(String, i64)> = h.db().prepare("SELECT id, time_created FROM message").unwrap().query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    for (id, t) in &times {
        assert_eq!(os.message(id).unwrap()["createdAt"].as_i64(), Some(*t), "createdAt of {id}");
    }
    // Endpoint by endpoint: sessions and messages one by one (with createdAt), no batch.
    let reqs = os.requests();
    assert_eq!(reqs.iter().filter(|r| r.path == "/sync/session").count(), 2);
    assert_eq!(reqs.iter().filter(|r| r.path == "/sync/message").count(), 10);
    assert!(reqs.iter().filter(|r| r.method == "POST").all(|r| r.status == 200), "every request was accepted");

    // Nothing changed: nothing sent.
    os.clear_requests();
    let (_, v) = h.run_json_async(&["opensync", "sync", "--json"]).await;
    assert_eq!((v["sessionsStored"].as_u64(), v["messagesStored"].as_u64()), (Some(0), Some(0)), "{v}");
    assert!(os.requests().iter().all(|r| !r.path.starts_with("/sync/batch")), "no batch when nothing changed");
    // --force sends everything again (idempotent on the server: parts replaced, times kept).
    let (_, v) = h.run_json_async(&["opensync", "sync", "--force", "--json"]).await;
    assert_eq!(v["messagesStored"].as_u64(), Some(10), "{v}");
    assert_eq!(os.sessions().len(), 2);
    assert_eq!(os.messages().len(), 10);
    assert!(os.messages().iter().all(|m| !m["parts"].as_array().unwrap().is_empty()), "parts survive a re-send");
    assert_eq!(os.session("ses_a").unwrap()["createdAt"].as_i64(), Some(created));

    // A server error is retried; a lasting one fails and leaves the session pending.
    insert_fake_session(&h.db(), "proj1", "ses_c", 2, 3, 200).unwrap();
    os.fail_next("/sync/*", 2, 502);
    let (code, v) = h.run_json_async(&["opensync", "sync", "--json"]).await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["sessionsStored"].as_u64(), Some(1), "{v}");
    insert_fake_session(&h.db(), "proj1", "ses_d", 2, 3, 200).unwrap();
    os.fail_next("/sync/session", 10, 503);
    let o = h.run_async(&["opensync", "sync"]).await;
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.err.contains("server error"), "{}", o.all());
    let (code, st) = h.run_json_async(&["opensync", "status", "--json"]).await;
    assert_eq!(code, 0, "{st}");
    assert_eq!(st["pendingSessions"].as_u64(), Some(1), "{st}");
    assert!(st["lastError"].as_str().is_some_and(|e| e.contains("server error")), "{st}");
    assert!(!st.to_string().contains(os.key()));
    os.clear_faults();
    let (code, v) = h.run_json_async(&["opensync", "sync", "--json"]).await;
    assert_eq!((code, v["sessionsStored"].as_u64()), (0, Some(1)), "{v}");

    // The general status names the export too (offline, key masked).
    let o = h.run_async(&["status"]).await;
    assert!(o.out.contains("opensync") && o.out.contains("sessions"), "{}", o.all());
    assert!(!o.all().contains(os.key()));

    let o = h.run_async(&["opensync", "logout"]).await;
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(!h.home.join(".local/share/oc-sync/opensync.json").exists());
    let o = h.run_async(&["opensync", "sync"]).await;
    assert!(o.err.contains("opensync login"), "{}", o.all());
    os.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_plugins_credentials_are_used() {
    let os = FakeOpenSync::start(FakeOptions::default()).await.unwrap();
    let h = home();
    insert_fake_session(&h.db(), "proj1", "ses_a", 2, 2, 100).unwrap();
    let legacy = h.home.join(".opensync/credentials.json");
    std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    std::fs::write(&legacy, serde_json::json!({"convexUrl": os.url, "apiKey": os.key()}).to_string()).unwrap();
    let (code, v) = h.run_json_async(&["opensync", "sync", "--json"]).await;
    assert_eq!((code, v["sessionsStored"].as_u64()), (0, Some(1)), "{v}");
    os.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_items_stay_pending_and_are_retried() {
    let os = FakeOpenSync::start(FakeOptions::default()).await.unwrap();
    let h = home();
    insert_fake_session(&h.db(), "proj1", "ses_a", 4, 2, 100).unwrap();
    let o = h.run_async(&["opensync", "login", "--url", &os.url, "--key", os.key()]).await;
    assert_eq!(o.code, 0, "{}", o.all());
    let victim: String = h.db().query_row("SELECT id FROM message ORDER BY id LIMIT 1 OFFSET 2", [], |r| r.get(0)).unwrap();
    os.refuse_message(&victim);
    let (code, v) = h.run_json_async(&["opensync", "sync", "--json"]).await;
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["messagesStored"].as_u64(), Some(3), "{v}");
    assert_eq!(v["refused"][0]["id"], victim.as_str(), "{v}");
    assert!(v["refused"][0]["reason"].as_str().unwrap().contains("refused by the fake"), "{v}");
    let o = h.run_async(&["opensync", "sync"]).await;
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.out.contains("refused by OpenSync: message") && o.out.contains("refused by the fake"), "{}", o.all());
    let (_, st) = h.run_json_async(&["opensync", "status", "--json"]).await;
    assert_eq!(st["pendingSessions"].as_u64(), Some(1), "{st}");
    assert_eq!(st["messagesSynced"].as_u64(), Some(3), "status claims only what the server stored: {st}");
    assert_eq!(st["refused"][0]["session"], "ses_a", "{st}");
    // The backoff is persisted (a restart does not hammer); the refusal is the plugin's problem.
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(h.home.join(".local/state/oc-sync/opensync-stored.json")).unwrap()).unwrap();
    assert!(state["sessions"]["ses_a"]["retry"]["nextMs"].as_u64().unwrap() > 0, "{state}");
    assert_eq!(state["problem"]["kind"], "refused", "{state}");
    os.accept_all();
    os.clear_requests();
    let (code, v) = h.run_json_async(&["opensync", "sync", "--json"]).await;
    assert_eq!((code, v["messagesStored"].as_u64(), v["sessionsStored"].as_u64()), (0, Some(1), Some(0)), "{v}");
    assert!(os.message(&victim).is_some());
    assert_eq!(os.requests().iter().filter(|r| r.method == "POST").count(), 1, "only the refused message was sent again");
    let (_, st) = h.run_json_async(&["opensync", "status", "--json"]).await;
    assert_eq!(st["pendingSessions"].as_u64(), Some(0), "{st}");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(h.home.join(".local/state/oc-sync/opensync-stored.json")).unwrap()).unwrap();
    assert!(state.get("problem").is_none(), "{state}");
    os.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_refuses_sessions_gets_no_messages_and_status_tells_the_truth() {
    let os = FakeOpenSync::start(FakeOptions::default()).await.unwrap();
    let h = home();
    insert_fake_session(&h.db(), "proj1", "ses_a", 2, 2, 100).unwrap();
    insert_fake_session(&h.db(), "proj1", "ses_b", 2, 2, 100).unwrap();
    let o = h.run_async(&["opensync", "login", "--url", &os.url, "--key", os.key()]).await;
    assert_eq!(o.code, 0, "{}", o.all());
    os.refuse_kind("sessions", "ArgumentValidationError: Object contains extra field `x`");
    let (code, v) = h.run_json_async(&["opensync", "sync", "--json"]).await;
    assert_eq!(code, 1, "{v}");
    assert_eq!((v["sessionsStored"].as_u64(), v["messagesStored"].as_u64()), (Some(0), Some(0)), "{v}");
    assert_eq!(v["refused"].as_array().unwrap().len(), 2, "{v}");
    assert!(os.sessions().is_empty() && os.messages().is_empty(), "no message went without its session (it would create a bare one)");
    os.accept_all();
    let (code, v) = h.run_json_async(&["opensync", "sync", "--json"]).await;
    assert_eq!((code, v["sessionsStored"].as_u64(), v["messagesStored"].as_u64()), (0, Some(2), Some(4)), "{v}");
    // The server loses a session: status stops counting it and the next sync sends it again.
    os.reset();
    let (_, st) = h.run_json_async(&["opensync", "status", "--json"]).await;
    assert_eq!((st["sessionsSynced"].as_u64(), st["storedButNotOnServer"].as_u64()), (Some(0), Some(2)), "{st}");
    let (code, v) = h.run_json_async(&["opensync", "sync", "--json"]).await;
    assert_eq!((code, v["sessionsStored"].as_u64(), v["messagesStored"].as_u64()), (0, Some(2), Some(4)), "{v}");
    os.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_metadata_change_goes_through_batch_without_created_at() {
    let os = FakeOpenSync::start(FakeOptions::default()).await.unwrap();
    let h = home();
    insert_fake_session(&h.db(), "proj1", "ses_a", 2, 2, 100).unwrap();
    let o = h.run_async(&["opensync", "login", "--url", &os.url, "--key", os.key()]).await;
    assert_eq!(o.code, 0, "{}", o.all());
    let (code, _) = h.run_json_async(&["opensync", "sync", "--json"]).await;
    assert_eq!(code, 0);
    let created = os.session("ses_a").unwrap()["createdAt"].clone();
    let parts_before: Vec<Value> = os.messages().iter().map(|m| m["parts"].clone()).collect();
    assert!(parts_before.iter().any(|p| !p.as_array().unwrap().is_empty()));
    h.db().execute("UPDATE session SET title = 'renamed', time_updated = time_updated + 1 WHERE id = 'ses_a'", []).unwrap();
    os.clear_requests();
    let (code, v) = h.run_json_async(&["opensync", "sync", "--json"]).await;
    assert_eq!((code, v["sessionsStored"].as_u64(), v["messagesStored"].as_u64()), (0, Some(1), Some(0)), "{v}");
    let posts: Vec<_> = os.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].path, "/sync/batch");
    assert!(posts[0].body["sessions"][0].get("createdAt").is_none(), "{:?}", posts[0].body);
    assert!(posts[0].body.get("messages").is_none());
    let s = os.session("ses_a").unwrap();
    assert_eq!((&s["title"], &s["createdAt"]), (&serde_json::json!("renamed"), &created), "an update keeps the original time");
    let parts_after: Vec<Value> = os.messages().iter().map(|m| m["parts"].clone()).collect();
    assert_eq!(parts_after, parts_before, "the messages and their parts are untouched");
    os.stop().await;
}
