//! Every command's `--json` output, from the real binary, checked against the one schema in
//! `schema/cli-json.schema.json` (a renamed or added field fails here).

use std::collections::BTreeMap;

use fake_github::FakeGithub;
use fake_opensync::FakeOpenSync;
use serde_json::{json, Value};

use crate::common::lib::insert_fake_session;
use crate::common::Machine;

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/cli-json.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Outputs collected per command (the schema's property names).
#[derive(Default)]
struct Seen(BTreeMap<&'static str, Vec<(String, Value)>>);

impl Seen {
    async fn run(&mut self, m: &Machine, command: &'static str, args: &[&str], code: i32) -> Value {
        self.run_stdin(m, command, args, None, code).await
    }

    async fn run_stdin(&mut self, m: &Machine, command: &'static str, args: &[&str], stdin: Option<String>, code: i32) -> Value {
        let o = m.run_stdin_async(args, stdin, &[]).await;
        assert_eq!(o.code, code, "oc-sync {args:?}: {}", o.all());
        let v: Value = serde_json::from_str(&o.out).unwrap_or_else(|e| panic!("oc-sync {args:?}: stdout is not JSON ({e}): {}", o.all()));
        self.0.entry(command).or_default().push((args.join(" "), v.clone()));
        v
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_commands_json_matches_the_schema() {
    let shared = tempfile::tempdir().unwrap();
    let remote = shared.path().join("remote");
    let ask = json!({ "conflictStrategy": "ask" });
    let a = Machine::new("a").folder_remote(&remote).settings(ask.clone());
    let b = Machine::new("b").folder_remote(&remote).settings(ask);
    let mut seen = Seen::default();

    // A fresh machine, its first sync, a dry run, an empty conflict list.
    seen.run(&a, "status", &["status", "--json"], 0).await;
    seen.run(&a, "paths", &["paths", "--json"], 0).await;
    a.write_cfg("opencode.json", "{\n  \"a\": \"base\"\n}\n");
    seen.run(&a, "sync", &["sync", "--json"], 0).await;
    seen.run(&a, "sync", &["sync", "--dry-run", "--json"], 0).await;
    seen.run(&a, "conflicts", &["conflicts", "--json"], 0).await;
    seen.run(&a, "rekey", &["rekey", "--json"], 1).await;
    seen.run(&a, "logout", &["logout", "--json"], 0).await;
    seen.run(&a, "opensync status", &["opensync", "status", "--json"], 1).await;
    seen.run(&a, "opensync sync", &["opensync", "sync", "--json"], 1).await;
    seen.run(&a, "opensync login", &["opensync", "login", "--url", "http://127.0.0.1:9", "--key", "nokey", "--json"], 1).await;

    // A conflict that waits for the person (exit 3), listed, resolved, listed with --all.
    b.ok_async(&["sync"]).await;
    a.set_key("a", "A");
    b.set_key("a", "B");
    a.ok_async(&["sync"]).await;
    let v = seen.run(&b, "sync", &["sync", "--json"], 3).await;
    assert_eq!(v["waitingForYou"], true, "{v}");
    let v = seen.run(&b, "conflicts", &["conflicts", "--json"], 0).await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    b.ok_async(&["resolve", "config/opencode.json", "--local"]).await;
    seen.run(&b, "conflicts", &["conflicts", "--all", "--json"], 0).await;
    seen.run(&b, "status", &["status", "--json"], 0).await;

    // Re-encrypting with a passphrase; a failing sync, and status after it.
    let c = Machine::new("c").folder_remote(&remote).env("OC_SYNC_PASSPHRASE", "a passphrase of sixteen+");
    seen.run(&c, "rekey", &["rekey", "--json"], 0).await;
    let not_a_dir = shared.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let broken = Machine::new("d").folder_remote(&not_a_dir);
    broken.write_cfg("opencode.json", "{}\n");
    let v = seen.run(&broken, "sync", &["sync", "--json"], 1).await;
    assert_eq!(v["ok"], false, "{v}");
    let v = seen.run(&broken, "status", &["status", "--json"], 0).await;
    assert!(v["lastFailure"].is_object(), "{v}");
    let invalid = Machine::new("e");
    invalid.write_cfg("opencode-sync.json", "{ nope");
    seen.run(&invalid, "sync", &["sync", "--json"], 1).await;
    seen.run(&invalid, "status", &["status", "--json"], 1).await;

    // GitHub: login (fake GitHub), status of a GitHub remote, logout.
    let gh = FakeGithub::start(fake_github::FakeOptions::default()).await.unwrap();
    let g = Machine::new("g").env("GITHUB_API_URL", &gh.url).settings(json!({ "remote": "github" }));
    seen.run_stdin(&g, "login", &["login", "--with-token", "--json"], Some(format!("{}\n", gh.token())), 0).await;
    seen.run_stdin(&g, "login", &["login", "--with-token", "--json"], Some("ghp_wrongwrongwrongwrong\n".into()), 1).await;
    g.ok_async(&["sync"]).await;
    let v = seen.run(&g, "status", &["status", "--json"], 0).await;
    assert!(v["github"].is_object(), "{v}");
    seen.run(&g, "logout", &["logout", "--json"], 0).await;

    // OpenSync: login, export, status (its own and oc-sync's), logout.
    let os = FakeOpenSync::start(fake_opensync::FakeOptions::default()).await.unwrap();
    let o = Machine::new("o").env("OC_SYNC_OPENSYNC_RETRY_MS", "5");
    o.create_db();
    insert_fake_session(&o.db(), "proj1", "ses_a", 2, 2, 100).unwrap();
    seen.run(&o, "opensync login", &["opensync", "login", "--url", &os.url, "--key", os.key(), "--json"], 0).await;
    seen.run(&o, "opensync sync", &["opensync", "sync", "--json"], 0).await;
    seen.run(&o, "opensync status", &["opensync", "status", "--json"], 0).await;
    let v = seen.run(&o, "status", &["status", "--json"], 0).await;
    assert!(v["opensync"].is_object(), "{v}");
    seen.run(&o, "opensync logout", &["opensync", "logout", "--json"], 0).await;

    let schema = schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    let mut errors = Vec::new();
    for (command, outputs) in &seen.0 {
        for (args, v) in outputs {
            let doc = json!({ *command: v });
            for e in validator.iter_errors(&doc) {
                errors.push(format!("oc-sync {args}: {e} at {}", e.instance_path()));
            }
        }
    }
    assert!(errors.is_empty(), "outputs that do not match the schema:\n{}", errors.join("\n"));
    // Every command the schema describes was run here.
    let described: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    let run: Vec<&str> = seen.0.keys().copied().collect();
    assert_eq!(run, { let mut d = described.clone(); d.sort(); d });
    // The schema is strict: a renamed field fails.
    let (_, status) = &seen.0["status"][0];
    let mut renamed = status.clone();
    let m = renamed.as_object_mut().unwrap();
    let id = m.remove("machineId").unwrap();
    m.insert("machine_id".into(), id);
    assert!(!validator.is_valid(&json!({ "status": renamed })), "a renamed field must not pass");
}
