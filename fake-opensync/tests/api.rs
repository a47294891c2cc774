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

    // /sync/sessions/list takes API keys only (validateApiKey); the others authenticate().
    let (s, v) = t.send(t.c.get(format!("{}/sync/sessions/list", t.fake.url))).await;
    assert_eq!((s, v), (401, json!({"error": "Invalid API key format"})));
    let (s, v) = t.send(t.c.post(format!("{}/sync/session", t.fake.url)).json(&json!({"externalId": "a"}))).await;
    assert_eq!((s, v), (401, json!({"error": "Missing Authorization header"})));
    let (s, v) = t.send(t.c.get(format!("{}/sync/sessions/list", t.fake.url)).bearer_auth("osk_wrongwrongwrongwrongwrongwrong12")).await;
    assert_eq!((s, v), (401, json!({"error": "Invalid API key"})));
    let (s, v) = t.send(t.c.get(format!("{}/sync/sessions/list", t.fake.url)).header("authorization", key.clone())).await;
    assert_eq!((s, v), (401, json!({"error": "Invalid API key format"})));
    let (s, v) = t.send(t.c.post(format!("{}/sync/session", t.fake.url)).bearer_auth("eyJ.jwt").json(&json!({"externalId": "a"}))).await;
    assert_eq!((s, v), (401, json!({"error": "Invalid or expired token"})));
    assert!(t.fake.sessions().is_empty());

    // A fixed key.
    let f2 = FakeOpenSync::start(FakeOptions { key: Some("osk_fixedfixedfixedfixedfixedfixed".into()), ..Default::default() }).await.unwrap();
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
async fn single_session_endpoint_validates_like_convex_and_keeps_created_at() {
    let t = T::new().await;
    let body = json!({"externalId": "ses_1", "title": "T", "projectPath": "/p", "projectName": "p", "model": "m", "provider": "x",
        "source": "opencode", "promptTokens": 100, "completionTokens": 50, "cost": 0.0123, "durationMs": 999, "createdAt": 1700000000000u64,
        "unknownField": "dropped by http.ts"});
    let (s, v) = t.post("/sync/session", body).await;
    assert_eq!((s, v["ok"].clone()), (200, json!(true)), "{v}");
    let stored = t.fake.session("ses_1").unwrap();
    assert_eq!(stored["createdAt"], 1700000000000u64, "the source's time is kept");
    assert!(stored["updatedAt"].as_u64().unwrap() > 1700000000000u64);
    assert_eq!((stored["totalTokens"].as_f64(), stored["messageCount"].as_f64()), (Some(150.0), Some(0.0)));
    assert!(stored.get("unknownField").is_none());
    // sessionId alias; no createdAt → the server's clock.
    assert_eq!(t.post("/sync/session", json!({"sessionId": "ses_2"})).await.0, 200);
    assert!(t.fake.session("ses_2").unwrap()["createdAt"].as_u64().unwrap() > 1700000000000u64);
    // No id → 400; null is not absent, wrong types → 500 with Convex's text; nothing stored.
    assert_eq!(t.post("/sync/session", json!({"title": "x"})).await, (400, json!({"error": "Missing externalId or sessionId"})));
    let (s, v) = t.post("/sync/session", json!({"externalId": "ses_3", "title": null})).await;
    assert_eq!(s, 500);
    assert!(v["error"].as_str().unwrap().contains("ArgumentValidationError") && v["error"].as_str().unwrap().contains(".title"), "{v}");
    let (s, v) = t.post("/sync/session", json!({"externalId": "ses_3", "cost": "1"})).await;
    assert!(s == 500 && v["error"].as_str().unwrap().contains("v.float64()"), "{v}");
    assert!(t.fake.session("ses_3").is_none());
    // Dedup (SESSION_DEDUP_MS 10 s): a cost-only change right away is skipped, later applied;
    // tokens of 0 never overwrite.
    t.post("/sync/session", json!({"externalId": "ses_1", "title": "T", "projectPath": "/p", "model": "m", "cost": 9.0})).await;
    assert_eq!(t.fake.session("ses_1").unwrap()["cost"], 0.0123);
    t.fake.advance_clock(10_001);
    t.post("/sync/session", json!({"externalId": "ses_1", "title": "T", "projectPath": "/p", "model": "m", "cost": 9.0, "promptTokens": 0, "createdAt": 1})).await;
    let s1 = t.fake.session("ses_1").unwrap();
    assert_eq!((s1["cost"].as_f64(), s1["promptTokens"].as_f64(), s1["createdAt"].as_u64()), (Some(9.0), Some(100.0), Some(1700000000000)));
    let (_, list) = t.get("/sync/sessions/list").await;
    assert_eq!(list["sessionIds"], json!(["ses_1", "ses_2"]));
    t.fake.stop().await;
}

#[tokio::test]
async fn single_message_endpoint_keeps_created_at_and_replaces_parts() {
    let t = T::new().await;
    let m = json!({"sessionExternalId": "ses_1", "externalId": "m1", "role": "assistant", "textContent": "hi", "model": "m",
        "promptTokens": 5, "completionTokens": 7, "durationMs": 10, "source": "opencode", "createdAt": 1700000000001u64,
        "parts": [{"type": "text", "content": "hi"}, {"type": "tool-call", "content": {"name": "read", "args": {"a": [1, {"b": null}]}}}]});
    assert_eq!(t.post("/sync/message", m.clone()).await.0, 200);
    let stored = t.fake.message("m1").unwrap();
    assert_eq!(stored["createdAt"], 1700000000001u64);
    assert_eq!(stored["parts"].as_array().unwrap().len(), 2);
    // The unknown session was created bare, with the server's time.
    let bare = t.fake.session("ses_1").unwrap();
    assert!(bare.get("title").is_none() && bare["createdAt"].as_u64().unwrap() > 1700000000001u64);
    assert_eq!(bare["messageCount"].as_f64(), Some(1.0));
    // Re-sent with other parts: replaced (createdAt is old, so no dedup), count unchanged.
    let mut m2 = m.clone();
    m2["parts"] = json!([{"type": "text", "content": "bye"}]);
    assert_eq!(t.post("/sync/message", m2).await.0, 200);
    assert_eq!(t.fake.message("m1").unwrap()["parts"], json!([{"type": "text", "content": "bye"}]));
    assert_eq!(t.fake.session("ses_1").unwrap()["messageCount"].as_f64(), Some(1.0));
    // Dedup (MESSAGE_DEDUP_MS 5 s on createdAt): a message stamped now is not updated right away.
    let now = t.fake.session("ses_1").unwrap()["updatedAt"].as_u64().unwrap();
    t.post("/sync/message", json!({"sessionExternalId": "ses_1", "externalId": "m2", "role": "user", "createdAt": now, "textContent": "a"})).await;
    t.post("/sync/message", json!({"sessionExternalId": "ses_1", "externalId": "m2", "role": "user", "createdAt": now, "textContent": "b"})).await;
    assert_eq!(t.fake.message("m2").unwrap()["textContent"], "a");
    // Validation: a part with an extra field, null, an unknown role, missing fields → 500.
    for bad in [
        json!({"sessionExternalId": "s", "externalId": "x", "role": "user", "parts": [{"type": "text", "content": "a", "extra": 1}]}),
        json!({"sessionExternalId": "s", "externalId": "x", "role": "user", "textContent": null}),
        json!({"sessionExternalId": "s", "externalId": "x", "role": "robot"}),
        json!({"externalId": "x", "role": "user"}),
    ] {
        let (s, v) = t.post("/sync/message", bad.clone()).await;
        assert!(s == 500 && v["error"].as_str().unwrap().contains("ArgumentValidationError"), "{bad} → {s} {v}");
    }
    assert!(t.fake.message("x").is_none() && t.fake.session("s").is_none());
    t.fake.stop().await;
}

#[tokio::test]
async fn batch_fails_per_kind_stamps_now_and_drops_parts_of_updates() {
    let t = T::new().await;
    // createdAt in a batch item: the whole sessions kind fails; the messages still go in.
    let (s, v) = t.post("/sync/batch", json!({
        "sessions": [{"externalId": "a"}, {"externalId": "b", "createdAt": 1}],
        "messages": [{"sessionExternalId": "a", "externalId": "m1", "role": "user", "parts": [{"type": "text", "content": "x"}]}]
    })).await;
    assert_eq!((s, &v["sessions"], &v["messages"]), (200, &json!(0), &json!(1)), "{v}");
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert!(errors[0].as_str().unwrap().starts_with("Sessions batch error: Error: ArgumentValidationError: Object contains extra field `createdAt`"), "{v}");
    assert_eq!(t.fake.sessions().len(), 1, "only the bare session of the message: {:?}", t.fake.sessions());
    assert!(t.fake.session("b").is_none());
    // New items are stamped with the server's clock.
    let (_, v) = t.post("/sync/batch", json!({"sessions": [{"externalId": "c", "title": "C"}]})).await;
    assert_eq!(v["sessions"], 1);
    assert!(t.fake.session("c").unwrap()["createdAt"].as_u64().unwrap() > 1_600_000_000_000);
    // A null, an extra field in a part: the messages kind fails whole.
    for bad in [json!({"sessionExternalId": "a", "externalId": "m9", "role": "user", "model": null}),
                json!({"sessionExternalId": "a", "externalId": "m9", "role": "user", "createdAt": 5})] {
        let (_, v) = t.post("/sync/batch", json!({"messages": [{"sessionExternalId": "a", "externalId": "m8", "role": "user"}, bad]})).await;
        assert_eq!(v["messages"], 0, "{v}");
        assert!(v["errors"][0].as_str().unwrap().starts_with("Messages batch error: "), "{v}");
        assert!(t.fake.message("m8").is_none());
    }
    // Re-sent through batch within 5 s: skipped, not counted. After the window: updated, and
    // its parts are gone.
    let again = json!({"messages": [{"sessionExternalId": "a", "externalId": "m1", "role": "user", "parts": [{"type": "text", "content": "y"}]}]});
    let (_, v) = t.post("/sync/batch", again.clone()).await;
    assert_eq!((v["messages"].clone(), v["errors"].clone()), (json!(0), json!([])));
    t.fake.advance_clock(5_001);
    let (_, v) = t.post("/sync/batch", again).await;
    assert_eq!(v["messages"], 1);
    assert_eq!(t.fake.message("m1").unwrap()["parts"], json!([]), "batchUpsert deletes the parts of an updated message");
    // A per-item failure names the item; the others are stored.
    t.fake.refuse_message("m3");
    let (_, v) = t.post("/sync/batch", json!({"messages": [
        {"sessionExternalId": "a", "externalId": "m2", "role": "user"}, {"sessionExternalId": "a", "externalId": "m3", "role": "user"}]})).await;
    assert_eq!((v["messages"].clone(), v["errors"].clone()), (json!(1), json!(["m3: Error: refused by the fake"])));
    // A server that refuses one kind.
    t.fake.accept_all();
    t.fake.refuse_kind("messages", "Error: messages are switched off");
    let (_, v) = t.post("/sync/batch", json!({"sessions": [{"externalId": "d"}], "messages": [{"sessionExternalId": "d", "externalId": "m4", "role": "user"}]})).await;
    assert_eq!((v["sessions"].clone(), v["messages"].clone()), (json!(1), json!(0)), "{v}");
    assert_eq!(v["errors"], json!(["Messages batch error: Error: Error: messages are switched off"]));
    let (s, _) = t.post("/sync/message", json!({"sessionExternalId": "d", "externalId": "m4", "role": "user"})).await;
    assert_eq!(s, 500);
    assert_eq!(t.post("/sync/batch", json!({})).await, (200, json!({"ok": true, "sessions": 0, "messages": 0, "errors": []})));
    t.fake.stop().await;
}

#[tokio::test]
async fn convex_limits() {
    let t = T::new().await;
    let msg = |id: &str, parts: Value| json!({"sessionExternalId": "s", "externalId": id, "role": "user", "parts": parts});
    let many: Vec<Value> = (0..8193).map(|_| json!({"type": "text", "content": "x"})).collect();
    let (s, v) = t.post("/sync/message", msg("a", Value::Array(many[..8192].to_vec()))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = t.post("/sync/message", msg("b", Value::Array(many))).await;
    assert!(s == 500 && v["error"].as_str().unwrap().contains("8192"), "{v}");
    let mut deep = json!("x");
    for _ in 0..13 {
        deep = json!({"k": deep});
    }
    // args (1) → parts (2) → part (3) → content: 13 more objects make 16 levels.
    assert_eq!(t.post("/sync/message", msg("c", json!([{"type": "tool-call", "content": deep.clone()}]))).await.0, 200);
    let (s, v) = t.post("/sync/message", msg("d", json!([{"type": "tool-call", "content": {"k": deep}}]))).await;
    assert!(s == 500 && v["error"].as_str().unwrap().contains("nested"), "{v}");
    let (s, v) = t.post("/sync/message", msg("e", json!([{"type": "tool-call", "content": {"$bad": 1}}]))).await;
    assert_eq!(s, 500, "{v}");
    // A document over 1 MiB: the single endpoint fails whole; in a batch the item fails and what
    // it wrote before the part stays (the error is caught inside the mutation).
    let big = json!([{"type": "text", "content": "x".repeat(1 << 20)}]);
    let (s, v) = t.post("/sync/message", msg("f", big.clone())).await;
    assert!(s == 500 && v["error"].as_str().unwrap().contains("too large"), "{v}");
    assert!(t.fake.message("f").is_none());
    let (_, v) = t.post("/sync/batch", json!({"messages": [msg("g", big)]})).await;
    assert_eq!(v["messages"], 0);
    assert!(v["errors"][0].as_str().unwrap().starts_with("g: Error: Value is too large"), "{v}");
    assert_eq!(t.fake.message("g").unwrap()["parts"], json!([]));
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
