use fake_opensync::{FakeOpenSync, FakeOptions};
use serde_json::{Value, json};

struct T {
    fake: FakeOpenSync,
    c: reqwest::Client,
}

impl T {
    async fn new() -> T {
        let fake = FakeOpenSync::start(FakeOptions::default()).await.unwrap();
        T { fake, c: reqwest::Client::new() }
    }
    async fn send(&self, r: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.c.get(format!("{}{path}", self.fake.url)).bearer_auth(self.fake.key());
        self.send(r).await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.c.post(format!("{}{path}", self.fake.url)).bearer_auth(self.fake.key()).json(&body);
        self.send(r).await
    }
}

#[tokio::test]
async fn health_and_auth() {
    let t = T::new().await;
    let key = t.fake.key().to_string();
    assert!(key.starts_with("osk_") && key.len() == 36, "{key}");
    assert!(key[4..].chars().all(|c| c.is_ascii_alphanumeric()));

    // /health needs no auth.
    let (s, v) = t.send(t.c.get(format!("{}/health", t.fake.url))).await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "ok");
    assert!(v["timestamp"].as_u64().unwrap() > 1_600_000_000_000);

    let (s, v) = t.send(t.c.get(format!("{}/sync/sessions/list", t.fake.url))).await;
    assert_eq!((s, v), (401, json!({"error": "Missing Authorization header"})));
    let (s, v) = t.send(t.c.post(format!("{}/sync/session", t.fake.url)).json(&json!({"externalId": "a"}))).await;
    assert_eq!((s, v), (401, json!({"error": "Missing Authorization header"})));
    let (s, v) = t.send(t.c.get(format!("{}/sync/sessions/list", t.fake.url)).bearer_auth("osk_wrongwrongwrongwrongwrongwrong12")).await;
    assert_eq!((s, v), (401, json!({"error": "Invalid API key"})));
    let (s, v) = t.send(t.c.get(format!("{}/sync/sessions/list", t.fake.url)).header("authorization", key.clone())).await;
    assert_eq!((s, v), (401, json!({"error": "Invalid API key"})));
    assert!(t.fake.sessions().is_empty());

    // A fixed key.
    let f2 = FakeOpenSync::start(FakeOptions { port: 0, key: Some("osk_fixedfixedfixedfixedfixedfixed".into()) }).await.unwrap();
    assert_eq!(f2.key(), "osk_fixedfixedfixedfixedfixedfixed");
    let (s, _) = t.send(t.c.get(format!("{}/sync/sessions/list", f2.url)).bearer_auth(f2.key())).await;
    assert_eq!(s, 200);
    f2.stop().await;

    // Unknown route.
    let (s, v) = t.get("/sync/nope").await;
    assert_eq!(s, 404);
    assert!(v["error"].is_string());
    t.fake.stop().await;
}

#[tokio::test]
async fn session_upsert_and_list() {
    let t = T::new().await;
    let body = json!({
        "externalId": "ses_1", "title": "First", "projectPath": "/p", "projectName": "p",
        "model": "m1", "provider": "anthropic", "source": "opencode",
        "promptTokens": 100, "completionTokens": 50, "cost": 0.0123, "durationMs": 999, "createdAt": 1700000000000u64
    });
    let (s, v) = t.post("/sync/session", body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true);
    let id = v["sessionId"].as_str().unwrap().to_string();
    assert!(!id.is_empty());
    let stored = t.fake.session("ses_1").unwrap();
    assert_eq!(stored["_id"], id.as_str());
    assert_eq!(stored["title"], "First");
    assert_eq!(stored["cost"], 0.0123);
    assert_eq!(stored["createdAt"], 1700000000000u64);
    assert_eq!(stored["promptTokens"], 100);

    // Upsert: same id; fields replaced; tokens of 0 don't overwrite non-zero.
    let (s, v) = t
        .post("/sync/session", json!({"externalId": "ses_1", "title": "Renamed", "promptTokens": 0, "completionTokens": 70, "cost": 0}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["sessionId"], id.as_str());
    let stored = t.fake.session("ses_1").unwrap();
    assert_eq!(stored["title"], "Renamed");
    assert_eq!(stored["promptTokens"], 100);
    assert_eq!(stored["completionTokens"], 70);
    assert_eq!(stored["cost"], 0, "cost is stored as sent");
    assert_eq!(stored["model"], "m1", "fields not sent are kept");
    assert_eq!(t.fake.sessions().len(), 1);

    // sessionId alias; a session without createdAt.
    let (s, _) = t.post("/sync/session", json!({"sessionId": "ses_2"})).await;
    assert_eq!(s, 200);
    assert!(t.fake.session("ses_2").unwrap()["createdAt"].is_number());

    // Missing externalId → 400; type errors → 500.
    assert_eq!(t.post("/sync/session", json!({"title": "x"})).await, (400, json!({"error": "Missing externalId"})));
    assert_eq!(t.post("/sync/session", json!({"externalId": ""})).await.0, 400);
    for bad in [
        json!({"externalId": "ses_3", "promptTokens": "12"}),
        json!({"externalId": "ses_3", "cost": "0.1"}),
        json!({"externalId": "ses_3", "title": 5}),
        json!({"externalId": 17}),
    ] {
        let (s, v) = t.post("/sync/session", bad.clone()).await;
        assert_eq!(s, 500, "{bad}");
        assert!(v["error"].as_str().unwrap().starts_with("ArgumentValidationError: "), "{v}");
    }
    let (_, v) = t.post("/sync/session", json!({"externalId": "ses_3", "promptTokens": "12"})).await;
    assert!(v["error"].as_str().unwrap().contains("promptTokens"));
    assert!(t.fake.session("ses_3").is_none());

    let (s, v) = t.get("/sync/sessions/list").await;
    assert_eq!((s, v), (200, json!({"sessionIds": ["ses_1", "ses_2"]})));
    t.fake.stop().await;
}

#[tokio::test]
async fn message_upsert_parts_and_bare_session() {
    let t = T::new().await;
    let msg = json!({
        "sessionExternalId": "ses_x", "externalId": "msg_1", "role": "assistant",
        "textContent": "hello", "model": "m", "promptTokens": 3, "completionTokens": 4, "durationMs": 5,
        "source": "opencode", "createdAt": 1700000000001u64,
        "parts": [{"type": "text", "content": "hello"}, {"type": "tool-call", "content": {"name": "bash"}}]
    });
    let (s, v) = t.post("/sync/message", msg.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true);
    let mid = v["messageId"].as_str().unwrap().to_string();

    // Unknown session → a bare session with only its externalId.
    let bare = t.fake.session("ses_x").unwrap();
    assert_eq!(bare["externalId"], "ses_x");
    assert!(bare.get("title").is_none() && bare.get("createdAt").is_none());
    let m = t.fake.message("msg_1").unwrap();
    assert_eq!(m["_id"], mid.as_str());
    assert_eq!(m["sessionId"], bare["_id"]);
    assert_eq!(m["parts"].as_array().unwrap().len(), 2);
    assert_eq!(m["parts"][1], json!({"type": "tool-call", "content": {"name": "bash"}}));
    assert_eq!(t.fake.messages_of("ses_x").len(), 1);

    // The session can be filled in later.
    t.post("/sync/session", json!({"externalId": "ses_x", "title": "T"})).await;
    assert_eq!(t.fake.session("ses_x").unwrap()["_id"], bare["_id"]);
    assert_eq!(t.fake.sessions().len(), 1);

    // Resend without parts: same id, parts deleted.
    let mut again = msg.clone();
    again.as_object_mut().unwrap().remove("parts");
    again["textContent"] = json!("hello, edited");
    let (s, v) = t.post("/sync/message", again).await;
    assert_eq!(s, 200);
    assert_eq!(v["messageId"], mid.as_str());
    let m = t.fake.message("msg_1").unwrap();
    assert_eq!(m["textContent"], "hello, edited");
    assert_eq!(m["parts"], json!([]));
    // Parts come back when given.
    t.post("/sync/message", msg.clone()).await;
    assert_eq!(t.fake.message("msg_1").unwrap()["parts"].as_array().unwrap().len(), 2);
    assert_eq!(t.fake.messages().len(), 1);

    // Every role in the list is accepted.
    for (i, role) in ["user", "assistant", "system", "tool", "unknown"].iter().enumerate() {
        let (s, _) = t.post("/sync/message", json!({"sessionExternalId": "ses_x", "externalId": format!("r{i}"), "role": role})).await;
        assert_eq!(s, 200, "{role}");
    }

    // Missing required → 400.
    for missing in ["sessionExternalId", "externalId", "role"] {
        let mut b = msg.clone();
        b.as_object_mut().unwrap().remove(missing);
        let (s, v) = t.post("/sync/message", b).await;
        assert_eq!(s, 400, "{missing}");
        assert!(v["error"].is_string());
    }
    // Bad role / types → 500 ArgumentValidationError.
    let (s, v) = t.post("/sync/message", json!({"sessionExternalId": "ses_x", "externalId": "bad", "role": "robot"})).await;
    assert_eq!(s, 500);
    let e = v["error"].as_str().unwrap();
    assert!(e.starts_with("ArgumentValidationError: ") && e.contains("role"), "{e}");
    for bad in [
        json!({"sessionExternalId": "s", "externalId": "bad", "role": "user", "parts": "nope"}),
        json!({"sessionExternalId": "s", "externalId": "bad", "role": "user", "parts": [{"content": "no type"}]}),
        json!({"sessionExternalId": "s", "externalId": "bad", "role": "user", "promptTokens": "1"}),
        json!({"sessionExternalId": "s", "externalId": "bad", "role": "user", "textContent": 1}),
    ] {
        let (s, v) = t.post("/sync/message", bad.clone()).await;
        assert_eq!(s, 500, "{bad}");
        assert!(v["error"].as_str().unwrap().starts_with("ArgumentValidationError: "), "{v}");
    }
    assert!(t.fake.message("bad").is_none());
    assert!(t.fake.session("s").is_none());
    t.fake.stop().await;
}

#[tokio::test]
async fn batch_counts_and_errors() {
    let t = T::new().await;
    t.post("/sync/session", json!({"externalId": "old", "promptTokens": 9})).await;
    let (s, v) = t
        .post(
            "/sync/batch",
            json!({
                "sessions": [
                    {"externalId": "b1", "title": "one"},
                    {"title": "no id"},
                    {"externalId": "b2", "promptTokens": "x"},
                    {"externalId": "old", "promptTokens": 0, "title": "upd"},
                ],
                "messages": [
                    {"sessionExternalId": "b1", "externalId": "m1", "role": "user", "textContent": "hi", "parts": [{"type": "text", "content": "hi"}]},
                    {"sessionExternalId": "b1", "externalId": "m2", "role": "wizard"},
                    {"sessionExternalId": "b1", "role": "user"},
                    {"sessionExternalId": "new-session", "externalId": "m3", "role": "assistant"},
                ]
            }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["sessions"], 2);
    assert_eq!(v["messages"], 2);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 4, "{v}");
    assert_eq!(errors[0]["type"], "session");
    assert_eq!(errors[0]["externalId"], Value::Null);
    assert_eq!(errors[0]["error"], "Missing externalId");
    assert_eq!(errors[1]["type"], "session");
    assert_eq!(errors[1]["externalId"], "b2");
    assert!(errors[1]["error"].as_str().unwrap().starts_with("ArgumentValidationError"));
    assert_eq!((&errors[2]["type"], &errors[2]["externalId"]), (&json!("message"), &json!("m2")));
    assert!(errors[2]["error"].as_str().unwrap().contains("role"));
    assert_eq!(errors[3]["type"], "message");

    assert!(t.fake.session("b1").is_some());
    assert!(t.fake.session("b2").is_none());
    let old = t.fake.session("old").unwrap();
    assert_eq!((old["title"].clone(), old["promptTokens"].clone()), (json!("upd"), json!(9)));
    assert_eq!(t.fake.message("m1").unwrap()["parts"][0]["content"], "hi");
    assert!(t.fake.message("m2").is_none());
    assert_eq!(t.fake.session("new-session").unwrap().as_object().unwrap().len(), 2, "bare: _id + externalId");

    // Empty batch.
    assert_eq!(t.post("/sync/batch", json!({})).await, (200, json!({"ok": true, "sessions": 0, "messages": 0, "errors": []})));

    let (_, list) = t.get("/sync/sessions/list").await;
    assert_eq!(list["sessionIds"], json!(["old", "b1", "new-session"]));
    t.fake.stop().await;
}

#[tokio::test]
async fn recorded_requests_and_faults() {
    let t = T::new().await;
    t.post("/sync/session", json!({"externalId": "a"})).await;
    let reqs = t.fake.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!((reqs[0].method.as_str(), reqs[0].path.as_str(), reqs[0].status), ("POST", "/sync/session", 200));
    assert_eq!(reqs[0].body, json!({"externalId": "a"}));
    assert_eq!(reqs[0].response["ok"], true);
    t.fake.clear_requests();
    assert!(t.fake.requests().is_empty());

    t.fake.fail_next("/sync/*", 2, 503);
    assert_eq!(t.post("/sync/batch", json!({})).await, (503, json!({"error": "injected"})));
    assert_eq!(t.post("/sync/session", json!({"externalId": "b"})).await.0, 503);
    assert!(t.fake.session("b").is_none(), "a failed request stores nothing");
    assert_eq!(t.post("/sync/session", json!({"externalId": "b"})).await.0, 200);
    assert_eq!(t.fake.pending_faults(), 0);

    t.fake.fail_next("/health", 1, 500);
    assert_eq!(t.get("/health").await.0, 500);
    assert_eq!(t.get("/health").await.0, 200);

    t.fake.drop_next("/sync/message", 1);
    let r = t
        .c
        .post(format!("{}/sync/message", t.fake.url))
        .bearer_auth(t.fake.key())
        .json(&json!({"sessionExternalId": "b", "externalId": "m", "role": "user"}))
        .send()
        .await;
    assert!(r.is_err());
    assert!(t.fake.message("m").is_none());
    let dropped: Vec<_> = t.fake.requests().into_iter().filter(|r| r.status == 0).collect();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].path, "/sync/message");
    let (s, _) = t.post("/sync/message", json!({"sessionExternalId": "b", "externalId": "m", "role": "user"})).await;
    assert_eq!(s, 200);

    t.fake.fail_next("/never", 3, 500);
    assert_eq!(t.fake.pending_faults(), 3);
    t.fake.clear_faults();
    assert_eq!(t.fake.pending_faults(), 0);
    t.fake.stop().await;
}

#[tokio::test]
async fn binary_prints_url_and_key_and_serves() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-opensync"))
        .args(["--port", "0", "--key", "osk_0123456789abcdefghijABCDEFGHIJ01"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines.next_line().await.unwrap().unwrap();
    let key = lines.next_line().await.unwrap().unwrap();
    let url = url.strip_prefix("url=").unwrap().to_string();
    assert_eq!(key, "key=osk_0123456789abcdefghijABCDEFGHIJ01");
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{url}/sync/session"))
        .bearer_auth("osk_0123456789abcdefghijABCDEFGHIJ01")
        .json(&json!({"externalId": "bin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Helper routes for out-of-process tests.
    let state: Value = c.get(format!("{url}/_fake/state")).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["sessions"][0]["externalId"], "bin");
    assert_eq!(state["requests"][0]["path"], "/sync/session");
    let r = c.post(format!("{url}/_fake/fault")).json(&json!({"path": "/sync/*", "times": 1, "status": 429})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = c.get(format!("{url}/sync/sessions/list")).bearer_auth("osk_0123456789abcdefghijABCDEFGHIJ01").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    c.post(format!("{url}/_fake/reset")).send().await.unwrap();
    let state: Value = c.get(format!("{url}/_fake/state")).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["sessions"], json!([]));

    #[cfg(unix)]
    {
        let pid = child.id().unwrap();
        let ok = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success();
        assert!(ok);
        let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "{status:?}");
    }
}
