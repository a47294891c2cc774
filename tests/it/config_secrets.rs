//! Secrets inside OpenCode's config files, end to end: three machines (A and B with the passphrase,
//! C without) sync configs full of secrets of every kind through the folder remote and through
//! the fake GitHub, driving the real `oc-sync` binary with one HOME per machine. Afterwards no
//! secret byte is in any remote object, log line or CLI output, and every machine holds the values
//! it should: A and B every value, C its own values (never overwritten by markers).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Machine, Out};
use fake_github::{FakeGithub, FakeOptions};
use serde_json::Value;

const PASS: &str = "correct horse battery staple";
const REPO: &str = ".opencode-sync";

const ANT_A: &str = "sk-ant-api03-AAAAaaaa1111bbbbCCCC2222dddd";
const ANT_B2: &str = "sk-ant-api03-BBBBrotated3333eeee4444ffff";
const ANT_C: &str = "sk-ant-api03-CCCCmachineC5555gggg6666hhhh";
const MISTRAL_C: &str = "mistral-key-of-machine-c-only";
const ORG: &str = "org-configured-secret-path";
const BEARER: &str = "sk-proj-OpenAiBearer0123456789abcdef";
const XAPI: &str = "x-api-key-value-in-a-header";
const AIZA: &str = "AIzaSyA-1234567890abcdefghijklmnopqrstu";
const AKIA: &str = "AKIAIOSFODNN7EXAMPLE";
const PASSWORD: &str = "hunter2-password";
const ENTROPY: &str = "Zq8rT2vLx9QmWc4NbY7kHs3JdF6gPa1E";
const GHP: &str = "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
const GHP_B2: &str = "ghp_RotatedByB0123456789AbCdEfGhIjKlMnOp";
const MCP_ENV: &str = "acme-org-name";
const XOXB: &str = "xoxb-1234567890-abcdefghijkl";
const PAT: &str = "github_pat_11ABCDEFG0123456789_abcdefghijkl";
const MCP_HEADER: &str = "team-secret-header";
const CLIENT_SECRET: &str = "oauth-client-secret-value";
const FM_KEY: &str = "sk-proj-FrontMatterKey0123456789abcd";
const FM_TOKEN: &str = "fm-token-value-123";
const FM_TOKEN_A2: &str = "fm-token-changed-by-a";
const CMD_KEY: &str = "command-front-matter-api-key";

const ALL: &[&str] = &[
    ANT_A, ANT_B2, ANT_C, MISTRAL_C, ORG, BEARER, XAPI, AIZA, AKIA, PASSWORD, ENTROPY, GHP, GHP_B2, MCP_ENV, XOXB, PAT, MCP_HEADER, CLIENT_SECRET,
    FM_KEY, FM_TOKEN, FM_TOKEN_A2, CMD_KEY,
];

fn opencode_jsonc() -> String {
    format!(
        r#"{{
  // Providers, keys written inline: oc-sync must never upload them in clear.
  "$schema": "https://opencode.ai/config.json",
  "model": "anthropic/claude-sonnet-4-5",
  "provider": {{
    "anthropic": {{ "options": {{ "apiKey": "{ANT_A}" }} }},
    "openai": {{
      "options": {{
        "apiKey": "{{env:OPENAI_API_KEY}}", // a reference: syncs as it is
        "organization": "{ORG}",
        "headers": {{ "Authorization": "Bearer {BEARER}", "X-Api-Key": "{XAPI}" }}
      }}
    }},
    "google": {{ "options": {{ "apiKey": "{AIZA}" }} }},
    "bedrock": {{ "options": {{ "accessKeyId": "{AKIA}", "region": "eu-west-1" }} }},
    "local": {{ "options": {{ "apiKey": "ollama-dummy-key-not-secret", "baseURL": "http://localhost:11434/v1" }} }},
    "custom": {{ "options": {{ "password": "{PASSWORD}", "seed": "{ENTROPY}", "tokenFile": "{{file:~/.custom-token}}" }} }}
  }},
  /* MCP servers */
  "mcp": {{
    "github": {{
      "type": "local",
      "command": ["npx", "-y", "@modelcontextprotocol/server-github"],
      "environment": {{ "GITHUB_PERSONAL_ACCESS_TOKEN": "{GHP}", "GITHUB_ORG": "{MCP_ENV}" }}
    }},
    "slack": {{ "type": "local", "command": ["slack-mcp", "--token", "{XOXB}"] }},
    "remote": {{ "type": "remote", "url": "https://mcp.example.com/mcp", "headers": {{ "Authorization": "Bearer {PAT}", "X-Team": "{MCP_HEADER}" }}, "oauth": {{ "clientId": "oc-client", "clientSecret": "{CLIENT_SECRET}" }} }}
  }}
}}
"#
    )
}

fn review_md() -> String {
    format!("---\ndescription: Reviews code with a private endpoint\nmodel: custom/reviewer\noptions:\n  apiKey: \"{FM_KEY}\"\n  token: {FM_TOKEN}\n---\n\nReview the change carefully.\n")
}

fn deploy_md() -> String {
    format!("---\ndescription: Deploys\napi_key: '{CMD_KEY}'\n---\nDeploy $ARGUMENTS.\n")
}

enum Remote {
    Folder(PathBuf),
    Github { url: String, token: String },
}

fn machine(root: &Path, name: &str, remote: &Remote, pass: bool) -> Machine {
    let mut m = Machine::under(root, name).env("OC_SYNC_KDF_ITERATIONS", "1000");
    m = match remote {
        Remote::Folder(p) => m.folder_remote(p),
        Remote::Github { url, token } => m.github(url, token),
    };
    if pass {
        m = m.env("OC_SYNC_PASSPHRASE", PASS);
    }
    m.settings(serde_json::json!({
        "logLevel": "debug",
        "secretPaths": ["provider.*.options.organization"],
        "notSecretPaths": ["provider.local.options.apiKey"],
    }))
}

/// Runs `oc-sync args` on `m`, keeping what it printed in `log`.
async fn run(m: &Machine, args: &[&str], log: &mut Vec<String>) -> Out {
    let out = m.run_async(args).await;
    log.push(out.all());
    out
}

/// `oc-sync sync --json` on `m`, asserted successful.
async fn sync(m: &Machine, log: &mut Vec<String>) -> Value {
    let r = run(m, &["sync", "--json"], log).await;
    assert_eq!(r.code, 0, "sync failed on {}:\n{}", m.home.display(), r.all());
    serde_json::from_str(&r.out).unwrap_or_else(|e| panic!("{e}: {}", r.out))
}

fn at<'v>(v: &'v Value, dotted: &str) -> &'v Value {
    dotted.split('.').fold(v, |v, k| match (v, k.parse::<usize>()) {
        (Value::Array(a), Ok(i)) => &a[i],
        _ => &v[k],
    })
}

fn is_sealed(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.starts_with("oc-sync:sealed:"))
}

/// Every way a secret could appear: as is, and base64 at any alignment.
fn forms(s: &str) -> Vec<String> {
    use base64::Engine;
    let mut out = vec![s.to_string()];
    for e in [base64::engine::general_purpose::STANDARD, base64::engine::general_purpose::URL_SAFE] {
        for pad in 0..3 {
            let enc = e.encode(format!("{}{s}", "x".repeat(pad)).as_bytes());
            let skip = (pad * 4).div_ceil(3);
            out.push(enc[skip..enc.len().saturating_sub(4)].trim_end_matches('=').to_string());
        }
    }
    out
}

fn assert_no_secret(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for s in ALL {
        for f in forms(s) {
            assert!(f.len() < 8 || !text.contains(&f), "{what} holds the secret {s:?} (as {f:?})");
        }
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Every object of the remote: the folder's files, or every object of the fake GitHub's bare repo.
fn assert_remote_clean(remote: &Remote, gh: Option<&FakeGithub>) {
    match (remote, gh) {
        (Remote::Folder(dir), _) => {
            // Plain files (the format-1 pointer and stub), then every git object uncompressed.
            let mut files = Vec::new();
            files_under(dir, &mut files);
            assert!(files.len() > 3, "the folder remote is empty");
            for f in files.iter().filter(|f| !f.starts_with(dir.join("repo.git/objects"))) {
                assert_no_secret(&f.display().to_string(), &std::fs::read(f).unwrap());
            }
            let o = Command::new("git")
                .arg("-C")
                .arg(dir.join("repo.git"))
                .args(["cat-file", "--batch-all-objects", "--batch"])
                .output()
                .unwrap();
            assert!(o.status.success() && o.stdout.len() > 1000, "git cat-file: {}", String::from_utf8_lossy(&o.stderr));
            assert_no_secret("the folder remote's git objects", &o.stdout);
        }
        (Remote::Github { .. }, Some(gh)) => {
            let o = Command::new("git")
                .arg("-C")
                .arg(gh.repo_git_dir(gh.login(), REPO))
                .args(["cat-file", "--batch-all-objects", "--batch"])
                .output()
                .unwrap();
            assert!(o.status.success() && o.stdout.len() > 1000, "git cat-file: {}", String::from_utf8_lossy(&o.stderr));
            assert_no_secret("the GitHub repository's objects", &o.stdout);
        }
        _ => unreachable!(),
    }
}

/// oc-sync's log files of a machine (never its base copies or OpenCode's own files).
fn assert_logs_clean(m: &Machine) {
    let mut files = Vec::new();
    files_under(&m.home.join(".local/state/oc-sync/log"), &mut files);
    assert!(!files.is_empty(), "no oc-sync log file on {}", m.home.display());
    for f in files {
        assert_no_secret(&f.display().to_string(), &std::fs::read(&f).unwrap());
    }
}

async fn three_machines(remote: Remote, gh: Option<&FakeGithub>, root: &Path) {
    let mut log = Vec::new();
    let a = machine(root, "a", &remote, true);
    let b = machine(root, "b", &remote, true);
    let c = machine(root, "c", &remote, false);
    a.write_cfg("opencode.jsonc", &opencode_jsonc());
    a.write_cfg("agent/review.md", &review_md());
    a.write_cfg("command/deploy.md", &deploy_md());

    // A pushes; B (passphrase) gets every file byte for byte; C (none) gets placeholders.
    sync(&a, &mut log).await;
    sync(&b, &mut log).await;
    for f in ["opencode.jsonc", "agent/review.md", "command/deploy.md"] {
        assert_eq!(b.cfg_text(f), a.cfg_text(f), "{f} on B");
    }
    sync(&c, &mut log).await;
    let cj = c.jsonc("opencode.jsonc");
    for p in [
        "provider.anthropic.options.apiKey",
        "provider.openai.options.organization",
        "provider.openai.options.headers.Authorization",
        "provider.openai.options.headers.X-Api-Key",
        "provider.google.options.apiKey",
        "provider.bedrock.options.accessKeyId",
        "provider.custom.options.password",
        "provider.custom.options.seed",
        "mcp.github.environment.GITHUB_PERSONAL_ACCESS_TOKEN",
        "mcp.github.environment.GITHUB_ORG",
        "mcp.slack.command.2",
        "mcp.remote.headers.Authorization",
        "mcp.remote.headers.X-Team",
        "mcp.remote.oauth.clientSecret",
    ] {
        assert!(is_sealed(at(&cj, p)), "{p} on C: {}", at(&cj, p));
    }
    assert_eq!(at(&cj, "provider.openai.options.apiKey"), "{env:OPENAI_API_KEY}");
    assert_eq!(at(&cj, "provider.custom.options.tokenFile"), "{file:~/.custom-token}");
    assert_eq!(at(&cj, "provider.local.options.apiKey"), "ollama-dummy-key-not-secret");
    assert_eq!(at(&cj, "provider.bedrock.options.region"), "eu-west-1");
    assert_eq!(at(&cj, "mcp.remote.oauth.clientId"), "oc-client");
    let c_text = c.cfg_text("opencode.jsonc");
    assert!(c_text.contains("// Providers, keys written inline") && c_text.contains("/* MCP servers */"), "{c_text}");
    assert!(c.cfg_text("agent/review.md").contains("  token: oc-sync:sealed:"));
    assert!(c.cfg_text("command/deploy.md").starts_with("---\ndescription: Deploys\napi_key: 'oc-sync:sealed:"));

    // C sets its own Anthropic key, adds a provider of its own and changes the model.
    let mine = c_text
        .replace(at(&cj, "provider.anthropic.options.apiKey").as_str().unwrap(), ANT_C)
        .replace("\"model\": \"anthropic/claude-sonnet-4-5\"", "\"model\": \"mistral/large\"")
        .replace("\"google\":", &format!("\"mistral\": {{ \"options\": {{ \"apiKey\": \"{MISTRAL_C}\" }} }},\n    \"google\":"));
    c.write_cfg("opencode.jsonc", &mine);
    let st = run(&c, &["status"], &mut log).await;
    assert!(st.out.contains("held back: not uploaded") && st.out.contains("provider.mistral.options.apiKey"), "{}", st.out);
    assert!(st.out.contains("OC_SYNC_PASSPHRASE"), "{}", st.out);
    sync(&c, &mut log).await;
    assert_eq!(c.cfg_text("opencode.jsonc"), mine, "C's own values stay");

    // A gets C's model and provider; C's keys never arrive: A keeps its own, the new one is a marker.
    sync(&a, &mut log).await;
    let aj = a.jsonc("opencode.jsonc");
    assert_eq!(aj["model"], "mistral/large");
    assert_eq!(at(&aj, "provider.anthropic.options.apiKey"), ANT_A);
    assert_eq!(at(&aj, "provider.mistral.options.apiKey"), "oc-sync:held-back");
    assert!(a.cfg_text("opencode.jsonc").contains("// a reference: syncs as it is"));
    let st = run(&a, &["status", "--json"], &mut log).await;
    let sj: Value = serde_json::from_str(&st.out).unwrap();
    assert_eq!(sj["configSecrets"]["sealed"], true);
    assert!(st.out.contains("provider.mistral.options.apiKey"), "{}", st.out);

    // Concurrent edits: B rotates two secrets, A edits a non-secret and a front-matter secret.
    sync(&b, &mut log).await;
    b.write_cfg("opencode.jsonc", &b.cfg_text("opencode.jsonc").replace(ANT_A, ANT_B2).replace(GHP, GHP_B2));
    a.write_cfg("opencode.jsonc", &a.cfg_text("opencode.jsonc").replace("\"mistral/large\"", "\"anthropic/claude-opus\""));
    a.write_cfg("agent/review.md", &a.cfg_text("agent/review.md").replace(FM_TOKEN, FM_TOKEN_A2));
    sync(&a, &mut log).await;
    let merged = sync(&b, &mut log).await;
    assert!(merged["merged"].as_array().unwrap().iter().any(|k| k == "config/opencode.jsonc"), "{merged}");
    sync(&a, &mut log).await;
    sync(&c, &mut log).await;

    for f in ["opencode.jsonc", "agent/review.md", "command/deploy.md"] {
        assert_eq!(b.cfg_text(f), a.cfg_text(f), "{f} differs between A and B");
    }
    let aj = a.jsonc("opencode.jsonc");
    assert_eq!(aj["model"], "anthropic/claude-opus");
    assert_eq!(at(&aj, "provider.anthropic.options.apiKey"), ANT_B2);
    assert_eq!(at(&aj, "mcp.github.environment.GITHUB_PERSONAL_ACCESS_TOKEN"), GHP_B2);
    assert_eq!(at(&aj, "provider.openai.options.headers.Authorization").as_str(), Some(format!("Bearer {BEARER}").as_str()));
    assert_eq!(at(&aj, "mcp.slack.command.2"), XOXB);
    assert!(a.cfg_text("agent/review.md").contains(&format!("  token: {FM_TOKEN_A2}\n")));
    assert!(a.cfg_text("agent/review.md").contains(&format!("  apiKey: \"{FM_KEY}\"\n")));
    assert_eq!(a.cfg_text("command/deploy.md"), deploy_md());
    let cj = c.jsonc("opencode.jsonc");
    assert_eq!(cj["model"], "anthropic/claude-opus");
    assert_eq!(at(&cj, "provider.anthropic.options.apiKey"), ANT_C, "C keeps its own key");
    assert_eq!(at(&cj, "provider.mistral.options.apiKey"), MISTRAL_C, "C keeps its own key");
    assert!(is_sealed(at(&cj, "mcp.github.environment.GITHUB_PERSONAL_ACCESS_TOKEN")));
    assert!(c.cfg_text("opencode.jsonc").contains("// Providers, keys written inline"));

    // Settled: nothing more to push or pull anywhere.
    for m in [&a, &b, &c, &a] {
        let r = sync(m, &mut log).await;
        for list in ["pushed", "pulled", "merged"] {
            assert_eq!(r[list], serde_json::json!([]), "{list} on {}: {r}", m.home.display());
        }
    }
    assert_remote_clean(&remote, gh);
    for m in [&a, &b, &c] {
        assert_logs_clean(m);
    }
    assert_no_secret("the CLI output", log.join("\n").as_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn config_secrets_across_three_machines_on_the_folder_remote() {
    let t = tempfile::tempdir().unwrap();
    three_machines(Remote::Folder(t.path().join("remote")), None, t.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn config_secrets_across_three_machines_on_github() {
    let gh = FakeGithub::start(FakeOptions::default()).await.expect("start the fake GitHub");
    let t = tempfile::tempdir().unwrap();
    let remote = Remote::Github { url: gh.url.clone(), token: gh.token().to_string() };
    three_machines(remote, Some(&gh), t.path()).await;
}

/// A push after an edit of one ordinary value changes only that line of the remote file: every
/// sealed value keeps its ciphertext.
#[tokio::test(flavor = "multi_thread")]
async fn unchanged_secrets_keep_their_ciphertext_on_github() {
    let gh = FakeGithub::start(FakeOptions::default()).await.expect("start the fake GitHub");
    let t = tempfile::tempdir().unwrap();
    let remote = Remote::Github { url: gh.url.clone(), token: gh.token().to_string() };
    let mut log = Vec::new();
    let a = machine(t.path(), "a", &remote, true);
    a.write_cfg("opencode.jsonc", &opencode_jsonc());
    sync(&a, &mut log).await;
    let show = || {
        let o = Command::new("git")
            .arg("-C")
            .arg(gh.repo_git_dir(gh.login(), REPO))
            .args(["show", "main:config/opencode.jsonc"])
            .output()
            .unwrap();
        assert!(o.status.success());
        // Format 2: the item's bytes follow its header line.
        let file = String::from_utf8(o.stdout).unwrap();
        assert!(file.starts_with("oc-sync-item 2 "), "{file}");
        file.split_once('\n').unwrap().1.to_owned()
    };
    let before = show();
    assert!(before.contains("oc-sync:sealed:") && before.contains("// a reference: syncs as it is"), "{before}");
    a.write_cfg("opencode.jsonc", &a.cfg_text("opencode.jsonc").replace("anthropic/claude-sonnet-4-5", "anthropic/claude-haiku"));
    let r = sync(&a, &mut log).await;
    assert_eq!(r["pushed"], serde_json::json!(["config/opencode.jsonc"]));
    let after = show();
    let changed: Vec<(&str, &str)> = before.lines().zip(after.lines()).filter(|(x, y)| x != y).collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].1.contains("claude-haiku"));
    assert_no_secret("the CLI output", log.join("\n").as_bytes());
}

/// After a passphrase change, `oc-sync rekey` seals the config secrets again with the new
/// passphrase: a machine that knows only the new one reads them.
#[tokio::test(flavor = "multi_thread")]
async fn rekey_reseals_config_secrets_with_the_new_passphrase() {
    const NEW: &str = "a completely different passphrase";
    let t = tempfile::tempdir().unwrap();
    let remote = Remote::Folder(t.path().join("remote"));
    let mut log = Vec::new();
    let a = machine(t.path(), "a", &remote, true);
    a.write_cfg("opencode.jsonc", &opencode_jsonc());
    sync(&a, &mut log).await;
    let cfg = serde_json::json!({ "machineId": "a", "retryDelayMs": 0, "encryptionKey": NEW, "oldEncryptionKey": PASS, "secretPaths": ["provider.*.options.organization"] });
    a.write_cfg("opencode-sync.json", &cfg.to_string());
    let a = a.without_env("OC_SYNC_PASSPHRASE");
    a.write_cfg("tui.json", "{ \"theme\": \"opencode\" }");
    sync(&a, &mut log).await;
    let r = run(&a, &["rekey", "--json"], &mut log).await;
    assert_eq!(r.code, 0, "{}", r.all());
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["pushed"], serde_json::json!(["config/opencode.jsonc"]), "only files with secrets are sent again: {v}");
    let b = machine(t.path(), "b", &remote, false).env("OC_SYNC_PASSPHRASE", NEW);
    sync(&b, &mut log).await;
    assert_eq!(b.cfg_text("opencode.jsonc"), opencode_jsonc());
    assert_remote_clean(&remote, None);
    assert_no_secret("the CLI output", log.join("\n").as_bytes());
}

/// Two passphrase machines change the same secret at once: the conflict is settled and kept, and
/// neither `sync` nor `conflicts` prints either value.
#[tokio::test(flavor = "multi_thread")]
async fn a_conflict_on_a_secret_never_prints_it() {
    let t = tempfile::tempdir().unwrap();
    let remote = Remote::Folder(t.path().join("remote"));
    let mut log = Vec::new();
    let a = machine(t.path(), "a", &remote, true);
    let b = machine(t.path(), "b", &remote, true);
    a.write_cfg("opencode.jsonc", &opencode_jsonc());
    sync(&a, &mut log).await;
    sync(&b, &mut log).await;
    a.write_cfg("opencode.jsonc", &opencode_jsonc().replace(ANT_A, ANT_B2));
    b.write_cfg("opencode.jsonc", &opencode_jsonc().replace(ANT_A, ANT_C));
    sync(&a, &mut log).await;
    let r = sync(&b, &mut log).await;
    let conflicts = r["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{r}");
    assert!(conflicts[0]["details"][0].as_str().unwrap().contains("(secret, not shown)"), "{r}");
    for args in [&["conflicts"][..], &["conflicts", "--json"], &["status"]] {
        let out = run(&b, args, &mut log).await;
        assert_eq!(out.code, 0, "{}", out.all());
    }
    sync(&a, &mut log).await;
    assert_eq!(a.cfg_text("opencode.jsonc"), b.cfg_text("opencode.jsonc"));
    assert_remote_clean(&remote, None);
    assert_no_secret("the CLI output", log.join("\n").as_bytes());
}
