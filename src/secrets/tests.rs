use std::sync::Arc;

use super::*;
use crate::crypto::{Passphrase, Sealer};

const KEY: &str = "config/opencode.jsonc";
const ANT: &str = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWx";
const GH: &str = "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";

fn sealer(pass: &str) -> Arc<Sealer> {
    Arc::new(Sealer::new(Passphrase::new(pass).unwrap(), None).with_iterations(1000))
}
fn with_pass() -> ConfigSecrets {
    ConfigSecrets::new(Detector::default(), Some(sealer("correct horse battery staple")))
}
fn without() -> ConfigSecrets {
    ConfigSecrets::new(Detector::default(), None)
}

fn config() -> String {
    format!(
        r#"{{
  // my providers
  "$schema": "https://opencode.ai/config.json",
  "model": "anthropic/claude-sonnet-4-5",
  "provider": {{
    "anthropic": {{ "options": {{ "apiKey": "{ANT}" }} }}, // trailing
    "openai": {{ "options": {{ "apiKey": "{{env:OPENAI_API_KEY}}", "headers": {{ "Authorization": "Bearer tok-123456" }} }} }}
  }},
  /* MCP */
  "mcp": {{
    "gh": {{ "type": "local", "command": ["npx", "server", "--token", "{GH}"], "environment": {{ "ORG": "acme" }} }}
  }},
}}
"#
    )
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn sealing_hides_every_secret_keeps_the_rest_and_opens_back_exactly() {
    let c = with_pass();
    let plain = config();
    let sealed = c.seal(KEY, plain.as_bytes(), None).unwrap();
    let s = text(&sealed);
    for secret in [ANT, GH, "tok-123456", "acme"] {
        assert!(!s.contains(secret), "{secret} left in {s}");
    }
    assert_eq!(s.matches(SEALED_PREFIX).count(), 4, "{s}");
    assert!(s.contains("// my providers") && s.contains("/* MCP */") && s.contains("// trailing"), "{s}");
    assert!(s.contains("{env:OPENAI_API_KEY}") && s.contains("anthropic/claude-sonnet-4-5"), "{s}");
    // Another machine with the passphrase, holding nothing yet, gets the exact file back.
    let other = ConfigSecrets::new(Detector::default(), Some(sealer("correct horse battery staple")));
    assert_eq!(text(&other.open(KEY, &sealed, None).unwrap()), plain);
    let found: Vec<String> = c.find(KEY, plain.as_bytes()).unwrap().iter().map(|f| doc::dotted(&f.path)).collect();
    assert_eq!(
        found,
        ["provider.anthropic.options.apiKey", "provider.openai.options.headers.Authorization", "mcp.gh.command.3", "mcp.gh.environment.ORG"]
    );
}

#[test]
fn unchanged_values_keep_their_ciphertext() {
    let c = with_pass();
    let plain = config();
    let first = c.seal(KEY, plain.as_bytes(), None).unwrap();
    let again = c.seal(KEY, plain.as_bytes(), Some(&first)).unwrap();
    assert_eq!(first, again, "re-sealing unchanged values must not change the remote file");
    // One value changes: only its ciphertext changes.
    let edited = plain.replace("acme", "other-org");
    let third = c.seal(KEY, edited.as_bytes(), Some(&first)).unwrap();
    let differing = text(&first).lines().zip(text(&third).lines()).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 1, "{}\n{}", text(&first), text(&third));
    // Another passphrase holder reuses the first machine's ciphertexts too.
    let other = ConfigSecrets::new(Detector::default(), Some(sealer("correct horse battery staple")));
    assert_eq!(other.seal(KEY, plain.as_bytes(), Some(&first)).unwrap(), first);
}

#[test]
fn a_sealed_value_is_bound_to_its_item_and_path() {
    let c = with_pass();
    let sealed = text(&c.seal(KEY, config().as_bytes(), None).unwrap()).to_owned();
    let v: serde_json::Value = crate::jsonc::parse(&sealed).unwrap().unwrap();
    let ant = v["provider"]["anthropic"]["options"]["apiKey"].as_str().unwrap().to_owned();
    let org = v["mcp"]["gh"]["environment"]["ORG"].as_str().unwrap().to_owned();
    let swapped = sealed.replace(&ant, "A").replace(&org, &ant);
    assert!(matches!(c.open(KEY, swapped.as_bytes(), None), Err(SecretsError::Crypto { .. })));
    assert!(matches!(c.open("config/other.json", sealed.as_bytes(), None), Err(SecretsError::Crypto { .. })));
    let wrong = ConfigSecrets::new(Detector::default(), Some(sealer("a completely different passphrase")));
    let e = wrong.open(KEY, sealed.as_bytes(), None).unwrap_err().to_string();
    assert!(e.contains("passphrase") && !e.contains(ANT), "{e}");
}

#[test]
fn without_a_passphrase_values_are_held_back_and_kept_locally() {
    let c = without();
    let plain = config();
    let pushed = c.seal(KEY, plain.as_bytes(), None).unwrap();
    let s = text(&pushed);
    assert_eq!(s.matches(HELD_BACK).count(), 4, "{s}");
    assert!(!s.contains(ANT) && !s.contains("acme"));
    // Pulling the marker back never overwrites the local values.
    assert_eq!(text(&c.open(KEY, &pushed, Some(plain.as_bytes())).unwrap()), plain);
    // With no local value the marker stays (and is not a secret to push).
    let opened = c.open(KEY, &pushed, None).unwrap();
    assert_eq!(opened, pushed);
    assert_eq!(c.seal(KEY, &opened, None).unwrap(), pushed);
}

#[test]
fn a_machine_without_the_passphrase_carries_sealed_values_it_cannot_read() {
    let sealed = with_pass().seal(KEY, config().as_bytes(), None).unwrap();
    let c = without();
    // Its own value for the key: kept locally; the push carries the other machine's ciphertext.
    let mine = config().replace(ANT, "sk-ant-api03-MINEMINEMINEMINEMINEMINE").replace("acme", "mine-org");
    let opened = c.open(KEY, &sealed, Some(mine.as_bytes())).unwrap();
    assert_eq!(text(&opened), mine);
    assert_eq!(c.seal(KEY, &opened, Some(&sealed)).unwrap(), sealed);
    // The passphrase holder still reads its own values from it.
    assert_eq!(text(&with_pass().open(KEY, &sealed, None).unwrap()), config());
}

#[test]
fn a_passphrase_machine_keeps_its_value_over_a_marker() {
    let held = without().seal(KEY, config().as_bytes(), None).unwrap();
    let c = with_pass();
    assert_eq!(text(&c.open(KEY, &held, Some(config().as_bytes())).unwrap()), config());
    // And shares its value, sealed, on its next push.
    let pushed = c.seal(KEY, config().as_bytes(), Some(&held)).unwrap();
    assert_eq!(text(&pushed).matches(SEALED_PREFIX).count(), 4);
}

#[test]
fn front_matter_secrets_are_sealed_in_place() {
    let key = "config/agent/review.md";
    let md = format!("---\ndescription: Reviews code\nmodel: anthropic/claude\noptions:\n  apiKey: \"{ANT}\"\n  token: plain-token-value\n---\n\nUse token: {GH} never.\n");
    let c = with_pass();
    let sealed = c.seal(key, md.as_bytes(), None).unwrap();
    let s = text(&sealed);
    assert!(!s.contains(ANT) && !s.contains("plain-token-value"), "{s}");
    assert!(s.contains("description: Reviews code") && s.contains("  apiKey: \"oc-sync:sealed:"), "{s}");
    assert_eq!(text(&c.open(key, &sealed, None).unwrap()), md);
    let held = without().seal(key, md.as_bytes(), None).unwrap();
    assert!(text(&held).contains("  token: oc-sync:held-back\n"), "{}", text(&held));
}

#[test]
fn unreadable_json_is_refused_only_when_it_looks_secret() {
    let c = with_pass();
    let bad = format!("{{ \"apiKey\": \"{ANT}\" ");
    assert!(matches!(c.seal(KEY, bad.as_bytes(), None), Err(SecretsError::Unreadable { .. })));
    let e = c.seal(KEY, bad.as_bytes(), None).unwrap_err().to_string();
    assert!(!e.contains(ANT), "{e}");
    assert_eq!(c.seal(KEY, b"{ \"model\": ", None).unwrap(), b"{ \"model\": ");
    // Files oc-sync does not look into pass as they are.
    assert_eq!(c.seal("config/tool/x.ts", ANT.as_bytes(), None).unwrap(), ANT.as_bytes());
}

#[test]
fn status_report_lists_paths_never_values() {
    let c = without();
    let local = config().replace("acme", HELD_BACK);
    let r = c.report(KEY, local.as_bytes()).unwrap();
    assert_eq!(r.secrets.len(), 3);
    assert_eq!(r.waiting, ["mcp.gh.environment.ORG"]);
    assert!(!serde_json::to_string(&r).unwrap().contains(ANT));
    assert_eq!(c.report(KEY, b"{\"model\":\"x\"}"), None);
}

#[test]
fn conflicts_on_secrets_are_described_without_values() {
    let c = with_pass();
    let local = config();
    let remote = config().replace(ANT, "sk-ant-api03-OTHEROTHEROTHEROTHER00");
    let mut conflict = crate::merge::Conflict {
        path: "/provider/anthropic/options/apiKey".into(),
        local: Some(format!("\"{ANT}\"")),
        remote: Some("\"sk-ant-api03-OTHEROTHEROTHEROTHER00\"".into()),
        base: None,
    };
    c.redact(KEY, [local.as_bytes(), remote.as_bytes()], &mut conflict);
    assert_eq!(conflict.local.as_deref(), Some("(secret, not shown)"));
    assert_eq!(conflict.remote.as_deref(), Some("(secret, not shown)"));
    let mut other = crate::merge::Conflict { path: "/model".into(), local: Some("\"a\"".into()), remote: Some("\"b\"".into()), base: None };
    c.redact(KEY, [local.as_bytes(), remote.as_bytes()], &mut other);
    assert_eq!(other.local.as_deref(), Some("\"a\""));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// A config with secrets under secret keys, MCP environments and well-known prefixes, next to
    /// references and ordinary values; returns the text and its secret values.
    fn config_strategy() -> impl Strategy<Value = (String, Vec<String>)> {
        let secret = "S3cr[A-Za-z0-9_]{8,16}";
        let provider = ("[a-z]{1,8}", secret, prop::bool::ANY, "[a-z/-]{0,12}");
        let env = ("[A-Z_]{1,10}", secret);
        (prop::collection::vec(provider, 0..4), prop::collection::vec(env, 0..3), "[A-Za-z0-9]{36}").prop_map(|(providers, envs, ghp)| {
            let mut secrets = Vec::new();
            let mut prov = serde_json::Map::new();
            for (name, key, as_ref, model) in providers {
                let key_value = if as_ref { "{env:KEY}".to_string() } else { key.clone() };
                if !as_ref {
                    secrets.push(key);
                }
                prov.insert(name, serde_json::json!({ "options": { "apiKey": key_value, "model": model } }));
            }
            let env: serde_json::Map<String, serde_json::Value> = envs
                .into_iter()
                .map(|(k, v)| {
                    secrets.push(v.clone());
                    (k, v.into())
                })
                .collect();
            secrets.push(format!("ghp_{ghp}"));
            let v = serde_json::json!({
                "provider": prov,
                "mcp": { "s": { "type": "local", "command": ["run", format!("ghp_{ghp}")], "environment": env } },
            });
            (format!("// header comment\n{}\n", serde_json::to_string_pretty(&v).unwrap()), secrets)
        })
    }

    proptest! {
        // No failure persistence: regression files would be written outside src/secrets/.
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        /// Sealed: no secret left, opens back byte for byte, re-sealing reuses every ciphertext.
        /// Held back: no secret left, and the local values survive the way back.
        #[test]
        fn seal_and_open_round_trip((plain, secrets) in config_strategy()) {
            let c = with_pass();
            let sealed = c.seal(KEY, plain.as_bytes(), None).unwrap();
            let held = without().seal(KEY, plain.as_bytes(), None).unwrap();
            for s in &secrets {
                prop_assert!(!text(&sealed).contains(s.as_str()));
                prop_assert!(!text(&held).contains(s.as_str()));
            }
            prop_assert!(text(&sealed).starts_with("// header comment\n"));
            let opened = c.open(KEY, &sealed, None).unwrap();
            prop_assert_eq!(text(&opened), plain.as_str());
            prop_assert_eq!(&c.seal(KEY, plain.as_bytes(), Some(&sealed)).unwrap(), &sealed);
            let kept = without().open(KEY, &held, Some(plain.as_bytes())).unwrap();
            prop_assert_eq!(text(&kept), plain.as_str());
            let carried = without().open(KEY, &sealed, Some(plain.as_bytes())).unwrap();
            prop_assert_eq!(text(&carried), plain.as_str());
        }
    }
}
