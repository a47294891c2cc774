use super::*;
use serde_json::json;

struct Fixture {
    _tmp: tempfile::TempDir,
    paths: Paths,
    env: EnvSnapshot,
}

fn fixture(file: Option<&str>, vars: &[(&str, &str)]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let mut all: Vec<(String, String)> =
        vec![("XDG_CONFIG_HOME".into(), tmp.path().join("cfg").to_string_lossy().into_owned())];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let env = EnvSnapshot::new(tmp.path(), all);
    let paths = Paths::resolve(&env).unwrap();
    if let Some(text) = file {
        std::fs::create_dir_all(paths.config_file.parent().unwrap()).unwrap();
        std::fs::write(&paths.config_file, text).unwrap();
    }
    Fixture { _tmp: tmp, paths, env }
}

fn load_text(text: &str) -> Result<Loaded, ConfigError> {
    let f = fixture(Some(text), &[]);
    load(&f.paths, &f.env, None)
}

fn single_issue(text: &str) -> Issue {
    let err = load_text(text).unwrap_err();
    assert_eq!(err.issues.len(), 1, "{err}");
    err.issues[0].clone()
}

#[test]
fn no_file_means_defaults() {
    let f = fixture(None, &[]);
    let l = load(&f.paths, &f.env, None).unwrap();
    assert!(l.file.is_none());
    assert!(l.warnings.is_empty());
    let c = l.config;
    assert_eq!(c.repo_name, ".opencode-sync");
    assert_eq!(c.sync_interval_minutes, 5.0);
    assert_eq!(c.file_watcher_debounce_ms, 5000);
    assert_eq!(c.max_debounce_ms, 30000);
    assert_eq!(c.conflict_strategy, ConflictStrategy::AutoMerge);
    assert_eq!(c.remote, RemoteSetting::Auto);
    assert!(c.sync.config && c.sync.sessions && c.sync.credentials);
}

#[test]
fn typescript_oc_sync_config_is_read_as_is() {
    let l = load_text(
        r#"{
          // the TypeScript oc-sync's keys
          "token": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
          "repoOwner": "alice", "repoName": "my-sync", "branch": "main",
          "machineId": "work-laptop",
          "encryptionKey": "correct horse battery staple",
          "oldEncryptionKey": "an older passphrase here",
          "autoSyncOnStartup": false, "continuousSync": true,
          "syncIntervalMinutes": 10, "fileWatcherDebounceMs": 2000, "maxDebounceMs": 20000,
          "sync": { "config": true, "state": false, "credentials": true, "sessions": true,
                    "messages": false, "projects": true, "todos": false },
          "conflictStrategy": "newest-wins",
          "maxRetryAttempts": 3, "retryDelayMs": 500, "tombstoneGraceDays": 7,
        }"#,
    )
    .unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let c = l.config;
    assert_eq!(c.token.as_ref().unwrap().expose(), "ghp_abcdefghijklmnopqrstuvwxyz0123456789");
    assert_eq!(c.token.as_ref().unwrap().masked(), "ghp_…6789");
    assert_eq!(format!("{:?}", c.token), "Some(Secret(****))");
    assert_eq!(c.repo_owner.as_deref(), Some("alice"));
    assert_eq!(c.repo_name, "my-sync");
    assert_eq!(c.machine_id.as_deref(), Some("work-laptop"));
    assert!(!c.auto_sync_on_startup);
    assert_eq!(c.sync_interval_minutes, 10.0);
    assert!(!c.sync.state && !c.sync.messages && !c.sync.todos && c.sync.projects);
    assert_eq!(c.conflict_strategy, ConflictStrategy::NewestWins);
    assert_eq!((c.max_retry_attempts, c.retry_delay_ms, c.tombstone_grace_days), (3, 500, 7));
}

#[test]
fn invalid_json_names_file_line_and_column() {
    let i = single_issue("{\n  \"repoName\": \"x\"\n  \"branch\": \"main\"\n}");
    assert!(i.source.ends_with("opencode-sync.json"), "{i}");
    assert!(i.message.contains("line 3"), "{i}");
    assert!(i.fix.contains("comments and trailing commas are allowed"));
}

#[test]
fn top_level_must_be_an_object() {
    let i = single_issue("[1, 2]");
    assert!(i.message.contains("must hold a JSON object"), "{i}");
    assert!(i.message.contains("a list"), "{i}");
}

#[test]
fn empty_file_is_an_empty_config() {
    assert!(load_text("  // nothing yet\n").is_ok());
}

#[test]
fn non_utf8_file_is_refused() {
    let f = fixture(None, &[]);
    std::fs::create_dir_all(f.paths.config_file.parent().unwrap()).unwrap();
    std::fs::write(&f.paths.config_file, [0x7b, 0xff, 0xfe, 0x7d]).unwrap();
    let err = load(&f.paths, &f.env, None).unwrap_err();
    assert!(err.to_string().contains("not valid UTF-8"), "{err}");
}

#[test]
fn unreadable_file_is_a_clear_error() {
    let f = fixture(None, &[]);
    std::fs::create_dir_all(&f.paths.config_file).unwrap(); // a directory where the file should be
    let err = load(&f.paths, &f.env, None).unwrap_err();
    assert!(err.to_string().contains("cannot read the file"), "{err}");
}

#[test]
fn wrong_type_names_key_expected_type_and_default() {
    let i = single_issue(r#"{ "autoSyncOnStartup": "yes" }"#);
    assert_eq!(i.key, "autoSyncOnStartup");
    assert!(i.message.contains("expected true or false, found a string \"yes\""), "{i}");
    assert!(i.fix.contains("remove the key to use the default (true)"), "{i}");
}

#[test]
fn bad_enum_value_lists_accepted_values() {
    let i = single_issue(r#"{ "conflictStrategy": "loca-wins" }"#);
    assert_eq!(i.key, "conflictStrategy");
    assert!(i.message.contains("\"loca-wins\" is not one of: auto-merge, local-wins, remote-wins, newest-wins, ask"), "{i}");
}

#[test]
fn numbers_out_of_range_or_fractional_are_refused() {
    assert_eq!(single_issue(r#"{ "maxRetryAttempts": -1 }"#).key, "maxRetryAttempts");
    assert_eq!(single_issue(r#"{ "retryDelayMs": 1.5 }"#).key, "retryDelayMs");
    assert_eq!(single_issue(r#"{ "syncIntervalMinutes": 0 }"#).key, "syncIntervalMinutes");
    let ok = load_text(r#"{ "syncIntervalMinutes": 0.5 }"#).unwrap();
    assert_eq!(ok.config.sync_interval_minutes, 0.5);
}

#[test]
fn nested_keys_are_checked_with_their_path() {
    let i = single_issue(r#"{ "sync": { "sessions": 1 } }"#);
    assert_eq!(i.key, "sync.sessions");
    let i = single_issue(r#"{ "sync": true }"#);
    assert_eq!(i.key, "sync");
    assert!(i.message.contains("an object with the keys config, state"), "{i}");
}

#[test]
fn list_items_must_be_strings_and_relative() {
    assert!(single_issue(r#"{ "exclude": ["a", 3] }"#).message.contains("item 1 is a number"));
    assert!(single_issue(r#"{ "include": ["../secrets/*"] }"#).message.contains("relative glob"));
    assert!(single_issue(r#"{ "include": ["/etc/*"] }"#).message.contains("relative glob"));
}

#[test]
fn unknown_keys_warn_with_a_suggestion() {
    let l = load_text(r#"{ "conflictStrategey": "ask", "sync": { "sesions": false }, "zzz": 1 }"#).unwrap();
    assert_eq!(l.warnings.len(), 3, "{:?}", l.warnings);
    let w: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    assert!(w[0].contains("\"conflictStrategey\"") && w[0].contains("did you mean \"conflictStrategy\""), "{}", w[0]);
    assert!(w[1].contains("sync.sesions") && w[1].contains("did you mean \"sessions\""), "{}", w[1]);
    assert!(w[2].contains("\"zzz\"") && w[2].contains("known keys here are"), "{}", w[2]);
    // The typo'd value was not silently applied either way: the default stays.
    assert_eq!(l.config.conflict_strategy, ConflictStrategy::AutoMerge);
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = load_text(r#"{ "autoSyncOnStartup": 1, "conflictStrategy": "x", "repoName": 5 }"#).unwrap_err();
    assert_eq!(err.issues.len(), 3);
    assert!(err.to_string().starts_with("invalid oc-sync config (3 problems):"));
}

#[test]
fn secrets_never_appear_in_errors() {
    let err = load_text(r#"{ "encryptionKey": "short-secret" }"#).unwrap_err();
    let s = err.to_string();
    assert!(s.contains("shorter than 16 characters"), "{s}");
    assert!(!s.contains("short-secret"), "{s}");
    let err = load_text(r#"{ "token": 12345678901234 }"#).unwrap_err();
    assert!(!err.to_string().contains("12345678901234"), "{err}");
}

#[test]
fn debounce_bounds_must_be_consistent() {
    let i = single_issue(r#"{ "fileWatcherDebounceMs": 9000, "maxDebounceMs": 3000 }"#);
    assert_eq!(i.key, "maxDebounceMs");
    assert!(i.message.contains("smaller than fileWatcherDebounceMs"));
}

#[test]
fn machine_id_and_repo_name_are_checked() {
    assert_eq!(single_issue(r#"{ "machineId": "my laptop!" }"#).key, "machineId");
    assert_eq!(single_issue(r#"{ "repoName": "alice/sync" }"#).key, "repoName");
}

#[test]
fn remote_forms() {
    let r = |v: &str| load_text(&format!("{{ \"remote\": {} }}", json!(v))).map(|l| l.config.remote);
    assert_eq!(r("github").unwrap(), RemoteSetting::Github);
    assert_eq!(r("/mnt/share/sync").unwrap(), RemoteSetting::Local("/mnt/share/sync".into()));
    assert_eq!(r("file:///mnt/my%20share").unwrap(), RemoteSetting::Local("/mnt/my share".into()));
    assert_eq!(r("file:///mnt/%é%2").unwrap(), RemoteSetting::Local("/mnt/%é%2".into()), "no panic on odd escapes");
    assert!(r("relative/dir").unwrap_err().to_string().contains("relative path"));
    assert!(r("ftp://example.com/x").unwrap_err().to_string().contains("git URL"));
    // Git remotes: URLs by a real parser, scp-like by rule, an existing bare repository by content.
    assert_eq!(r("https://example.com/x.git").unwrap(), RemoteSetting::Git("https://example.com/x.git".into()));
    assert_eq!(r("git@gitlab.com:me/sync.git").unwrap(), RemoteSetting::Git("git@gitlab.com:me/sync.git".into()));
    assert_eq!(r("ssh://git@host:2222/me/sync.git").unwrap(), RemoteSetting::Git("ssh://git@host:2222/me/sync.git".into()));
    let e = r("https://me:pw-123@example.com/x.git").unwrap_err().to_string();
    assert!(e.contains("credential helper") && !e.contains("pw-123"), "{e}");
    assert!(r("http://example.com/x.git").unwrap_err().to_string().contains("plain http"));
    let dir = tempfile::tempdir().unwrap();
    for d in ["objects", "refs"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    std::fs::write(dir.path().join("HEAD"), "ref: refs/heads/main\n").unwrap();
    let p = dir.path().to_str().unwrap().to_string();
    assert_eq!(r(&p).unwrap(), RemoteSetting::Git(p.clone()));
}

#[test]
fn github_api_url_rules() {
    let u = |v: &str| load_text(&format!("{{ \"githubApiUrl\": {} }}", json!(v))).map(|l| l.config.github_api_url);
    assert_eq!(u("https://ghe.corp/api/v3/").unwrap(), "https://ghe.corp/api/v3");
    assert_eq!(u("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
    assert!(u("http://ghe.corp/api/v3").unwrap_err().to_string().contains("plain http"));
    assert!(u("ftp://x").is_err());
    assert!(u("http://127.0.0.1:80@other.example").is_err(), "user info: the client would connect to other.example");
    assert!(u("http://127.0.0.1.evil.com").is_err());
    assert_eq!(u("http://0177.0.0.1:9/").unwrap(), "http://127.0.0.1:9");
}

#[test]
fn plugin_options_override_the_file_key_by_key() {
    let f = fixture(Some(r#"{ "conflictStrategy": "ask", "sync": { "sessions": false, "todos": false } }"#), &[]);
    let opts = json!({ "conflictStrategy": "remote-wins", "sync": { "todos": true } });
    let c = load(&f.paths, &f.env, Some(&opts)).unwrap().config;
    assert_eq!(c.conflict_strategy, ConflictStrategy::RemoteWins);
    assert!(!c.sync.sessions, "file value kept where options are silent");
    assert!(c.sync.todos, "option wins");
}

#[test]
fn plugin_option_errors_name_the_plugin_options() {
    let f = fixture(None, &[]);
    let err = load(&f.paths, &f.env, Some(&json!({ "continuousSync": "no" }))).unwrap_err();
    assert!(err.to_string().contains("opencode.json"), "{err}");
    let err = load(&f.paths, &f.env, Some(&json!(["x"]))).unwrap_err();
    assert!(err.to_string().contains("must be an object"), "{err}");
    assert!(load(&f.paths, &f.env, Some(&Value::Null)).is_ok());
}

#[test]
fn environment_overrides() {
    let f = fixture(
        Some(r#"{ "remote": "github" }"#),
        &[("OC_SYNC_REMOTE", "/srv/shared"), ("GITHUB_API_URL", "http://127.0.0.1:9"), ("OC_SYNC_LOG", "debug")],
    );
    let c = load(&f.paths, &f.env, None).unwrap().config;
    assert_eq!(c.remote, RemoteSetting::Local("/srv/shared".into()));
    assert_eq!(c.github_api_url, "http://127.0.0.1:9");
    assert_eq!(c.log_level, "debug");
    let f = fixture(None, &[("OC_SYNC_REMOTE", "not/absolute")]);
    let err = load(&f.paths, &f.env, None).unwrap_err();
    assert!(err.to_string().contains("environment variable OC_SYNC_REMOTE"), "{err}");
    let f = fixture(None, &[("OC_SYNC_LOG", "loud")]);
    assert!(load(&f.paths, &f.env, None).unwrap_err().to_string().contains("OC_SYNC_LOG"));
}

#[test]
fn starter_config_is_valid_and_documents_defaults() {
    let l = load_text(&schema::starter_config()).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(l.config.repo_name, ".opencode-sync");
}

#[test]
fn readme_documents_every_key() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for key in schema::all_key_paths() {
        assert!(readme.contains(&format!("`{key}`")), "README does not document config key `{key}`");
    }
}
