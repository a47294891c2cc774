use super::*;
use crate::paths::EnvSnapshot;

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn run_in(home: &std::path::Path, vars: &[(&str, String)], args: &[&str]) -> Run {
    let env = EnvSnapshot::new(home, vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = {
        let mut io = Io { out: &mut out, err: &mut err, env, err_terminal: false };
        run(std::iter::once("oc-sync").chain(args.iter().copied()), &mut io)
    };
    Run { code, out: String::from_utf8(out).unwrap(), err: String::from_utf8(err).unwrap() }
}

fn home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn usage_errors_exit_2() {
    let h = home();
    let r = run_in(h.path(), &[], &[]);
    assert_eq!(r.code, EXIT_USAGE);
    assert!(r.err.contains("Usage"), "{}", r.err);
    let r = run_in(h.path(), &[], &["frobnicate"]);
    assert_eq!(r.code, EXIT_USAGE);
    assert!(r.err.contains("unrecognized subcommand"), "{}", r.err);
    assert_eq!(run_in(h.path(), &[], &["status", "--jsn"]).code, EXIT_USAGE);
}

#[test]
fn help_and_version_exit_0_on_stdout() {
    let h = home();
    let r = run_in(h.path(), &[], &["--help"]);
    assert_eq!(r.code, EXIT_OK);
    for cmd in ["status", "paths", "init", "install", "login", "logout"] {
        assert!(r.out.contains(cmd), "help lists {cmd}: {}", r.out);
        let sub = run_in(h.path(), &[], &[cmd, "--help"]);
        assert_eq!(sub.code, EXIT_OK, "{cmd} --help");
        assert!(sub.out.contains("Usage: oc-sync"), "{}", sub.out);
    }
    let r = run_in(h.path(), &[], &["--version"]);
    assert_eq!((r.code, r.out.trim()), (EXIT_OK, format!("oc-sync {}", crate::VERSION).as_str()));
}

#[test]
fn status_on_a_fresh_machine_explains_setup() {
    let h = home();
    let r = run_in(h.path(), &[], &["status"]);
    assert_eq!(r.code, EXIT_OK, "{}{}", r.out, r.err);
    assert!(r.out.contains("not found: using defaults"), "{}", r.out);
    assert!(r.out.contains("remote     local"), "{}", r.out);
    assert!(r.out.contains("Next steps"), "{}", r.out);
    assert!(r.out.contains("oc-sync init"), "{}", r.out);
    assert!(r.out.contains("plugin     not registered"), "{}", r.out);
    assert!(!h.path().join(".local/state/oc-sync/machine-id").exists(), "status writes nothing");
}

#[test]
fn status_json_is_machine_readable_and_masks_tokens() {
    let h = home();
    let token = "ghp_SECRETSECRETSECRET1234";
    let r = run_in(h.path(), &[("GITHUB_TOKEN", token.into())], &["status", "--json"]);
    assert_eq!(r.code, EXIT_OK);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["remote"]["kind"], "github");
    assert!(v["remote"]["detail"].as_str().unwrap().contains("ghp_…1234"));
    assert!(!r.out.contains(token), "token must be masked");
    assert_eq!(v["config"]["found"], false);
}

#[test]
fn broken_config_makes_status_fail_with_the_key_named() {
    let h = home();
    let cfg = h.path().join(".config/opencode");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("opencode-sync.json"), r#"{ "conflictStrategy": "mine" }"#).unwrap();
    let r = run_in(h.path(), &[], &["status"]);
    assert_eq!(r.code, EXIT_FAILURE);
    assert!(r.out.contains("INVALID"), "{}", r.out);
    assert!(r.out.contains("conflictStrategy") && r.out.contains("local-wins"), "{}", r.out);
}

#[test]
fn paths_text_and_json() {
    let h = home();
    let x = h.path().join("x");
    let r = run_in(h.path(), &[("XDG_DATA_HOME", x.to_string_lossy().into_owned())], &["paths"]);
    assert_eq!(r.code, EXIT_OK);
    assert!(r.out.contains(&format!("opencode database      {}", x.join("opencode/opencode.db").display())), "{}", r.out);
    let r = run_in(h.path(), &[], &["paths", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert!(v["opencodeConfig"].as_str().unwrap().ends_with(".config/opencode"));
}

#[test]
fn init_writes_private_starter_config_once() {
    let h = home();
    let r = run_in(h.path(), &[], &["init"]);
    assert_eq!(r.code, EXIT_OK, "{}", r.err);
    let file = h.path().join(".config/opencode/opencode-sync.json");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("conflictStrategy"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let again = run_in(h.path(), &[], &["init"]);
    assert_eq!(again.code, EXIT_FAILURE);
    assert!(again.err.contains("already exists"));
    std::fs::write(&file, "{ \"repoName\": \"mine\" }").unwrap();
    let forced = run_in(h.path(), &[], &["init", "--force"]);
    assert_eq!(forced.code, EXIT_OK);
    assert_eq!(std::fs::read_to_string(file.with_extension("json.bak")).unwrap(), "{ \"repoName\": \"mine\" }");
    assert_eq!(run_in(h.path(), &[], &["status"]).code, EXIT_OK);
}

#[cfg(unix)]
#[test]
fn install_links_cache_and_registers_bare_name() {
    let h = home();
    let pkg = h.path().join(".config/opencode/node_modules/oc-sync");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("package.json"), "{\"name\":\"oc-sync\"}").unwrap();
    let pkg_arg = pkg.to_string_lossy().into_owned();
    let dry = run_in(h.path(), &[], &["install", "--dry-run", "--package-dir", &pkg_arg]);
    assert_eq!(dry.code, EXIT_OK, "{}", dry.err);
    assert!(dry.out.contains("would add \"oc-sync\""), "{}", dry.out);
    assert!(!h.path().join(".config/opencode/opencode.json").exists());

    let r = run_in(h.path(), &[], &["install", "--package-dir", &pkg_arg]);
    assert_eq!(r.code, EXIT_OK, "{}", r.err);
    let link = h.path().join(".cache/opencode/packages/oc-sync@latest/node_modules/oc-sync");
    assert_eq!(std::fs::read_link(&link).unwrap(), pkg.canonicalize().unwrap());
    let st = run_in(h.path(), &[], &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&st.out).unwrap();
    assert_eq!(v["plugin"]["entry"], "oc-sync");
    assert_eq!(v["plugin"]["installedForBareName"], true);
    let again = run_in(h.path(), &[], &["install", "--package-dir", &pkg_arg]);
    assert!(again.out.contains("already lists \"oc-sync\""), "{}", again.out);
    assert!(again.out.contains("already points at"), "{}", again.out);
}

#[test]
fn install_without_package_dir_says_what_to_do() {
    let h = home();
    let r = run_in(h.path(), &[], &["install"]);
    assert_eq!(r.code, EXIT_FAILURE);
    assert!(r.err.contains("npx oc-sync install"), "{}", r.err);
}

fn paths_of(home: &std::path::Path) -> Paths {
    Paths::resolve(&EnvSnapshot::new(home, Vec::<(String, String)>::new())).unwrap()
}

fn write_config(home: &std::path::Path, text: &str) -> std::path::PathBuf {
    let dir = home.join(".config/opencode");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("opencode-sync.json");
    std::fs::write(&file, text).unwrap();
    file
}

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn login_and_logout_arguments_parse() {
    let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("oc-sync").chain(args.iter().copied()));
    assert!(matches!(parse(&["login"]).unwrap().command, Command::Login { with_token: false, json: false }));
    assert!(matches!(parse(&["login", "--with-token", "--json"]).unwrap().command, Command::Login { with_token: true, json: true }));
    assert!(matches!(parse(&["logout"]).unwrap().command, Command::Logout { json: false }));
    assert!(matches!(parse(&["logout", "--json"]).unwrap().command, Command::Logout { json: true }));
    let h = home();
    // A token is never an argument (it would land in the shell history).
    assert_eq!(run_in(h.path(), &[], &["login", "ghp_abcdefghijklmnop"]).code, EXIT_USAGE);
    assert_eq!(run_in(h.path(), &[], &["login", "--token", "x"]).code, EXIT_USAGE);
    assert_eq!(run_in(h.path(), &[], &["logout", "--with-token"]).code, EXIT_USAGE);
    let help = run_in(h.path(), &[], &["login", "--help"]);
    assert_eq!(help.code, EXIT_OK);
    for needle in ["--with-token", "Contents: Read and write", "Administration: Read and write", "\"repo\" scope", "GITHUB_TOKEN"] {
        assert!(help.out.contains(needle), "login --help mentions {needle}: {}", help.out);
    }
}

#[test]
fn login_hosts_are_named_as_people_know_them() {
    assert_eq!(login_cmd::host_of("https://api.github.com"), "github.com");
    assert_eq!(login_cmd::host_of("https://api.github.com/"), "github.com");
    assert_eq!(login_cmd::host_of("https://ghe.example.com/api/v3"), "ghe.example.com");
    assert_eq!(login_cmd::host_of("http://127.0.0.1:8080"), "127.0.0.1:8080");
}

#[test]
fn login_with_a_broken_config_fails_before_asking_for_a_token() {
    let h = home();
    write_config(h.path(), r#"{ "conflictStrategy": "mine" }"#);
    let r = run_in(h.path(), &[], &["login", "--with-token"]);
    assert_eq!(r.code, EXIT_FAILURE, "{}{}", r.out, r.err);
    assert!(r.err.contains("conflictStrategy"), "{}", r.err);
    assert!(!crate::token_store::path(&paths_of(h.path())).exists());
    let r = run_in(h.path(), &[], &["login", "--with-token", "--json"]);
    assert_eq!(r.code, EXIT_FAILURE);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("conflictStrategy"));
}

#[test]
fn logout_without_a_stored_token_says_so() {
    let h = home();
    let r = run_in(h.path(), &[], &["logout"]);
    assert_eq!(r.code, EXIT_OK, "{}", r.err);
    assert!(r.out.contains("No stored GitHub token"), "{}", r.out);
    assert!(r.out.contains("github-token.json"), "{}", r.out);
    let r = run_in(h.path(), &[], &["logout", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!((v["ok"].as_bool(), v["removed"].as_bool()), (Some(true), Some(false)));
    assert_eq!(v["remaining"], serde_json::json!([]));
}

#[test]
fn logout_removes_the_stored_token_and_names_the_ones_that_remain() {
    let h = home();
    let paths = paths_of(h.path());
    let stored = crate::config::Secret::new("ghp_STOREDSTOREDSTORED9999");
    let file = crate::token_store::save(&paths, &stored, Some("octo-user"), Some("https://api.github.com")).unwrap();
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600, "the stored token is readable only by its owner");
    assert_eq!(crate::token_store::load(&paths).unwrap().expose(), stored.expose());
    let cfg = write_config(h.path(), r#"{ "token": "ghp_CONFIGCONFIGCONFIG7777" }"#);
    let env_token = "ghp_ENVENVENVENVENV5555";

    let r = run_in(h.path(), &[("GITHUB_TOKEN", env_token.into())], &["logout"]);
    assert_eq!(r.code, EXIT_OK, "{}", r.err);
    assert!(r.out.contains("Removed the stored GitHub token"), "{}", r.out);
    assert!(r.out.contains(&file.display().to_string()), "{}", r.out);
    assert!(r.out.contains("unset GITHUB_TOKEN"), "{}", r.out);
    assert!(r.out.contains(&format!("remove `token` from {}", cfg.display())), "{}", r.out);
    for full in [stored.expose(), env_token, "ghp_CONFIGCONFIGCONFIG7777"] {
        assert!(!r.out.contains(full) && !r.err.contains(full), "token {full} printed in full");
    }
    assert!(r.out.contains("ghp_…5555"), "{}", r.out);
    assert!(!file.exists());
    assert!(crate::token_store::load(&paths).is_none());

    let again = run_in(h.path(), &[("GH_TOKEN", env_token.into())], &["logout", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&again.out).unwrap();
    assert_eq!(v["removed"], false);
    let sources: Vec<&str> = v["remaining"].as_array().unwrap().iter().map(|r| r["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["config", "GH_TOKEN"]);
    assert_eq!(v["remaining"][1]["toRemove"], "unset GH_TOKEN");
}

#[test]
fn logout_works_with_a_broken_config() {
    let h = home();
    let paths = paths_of(h.path());
    crate::token_store::save(&paths, &crate::config::Secret::new("ghp_STOREDSTOREDSTORED9999"), None, None).unwrap();
    write_config(h.path(), "{ broken");
    let r = run_in(h.path(), &[], &["logout"]);
    assert_eq!(r.code, EXIT_OK, "{}", r.err);
    assert!(r.err.contains("warning"), "{}", r.err);
    assert!(!crate::token_store::path(&paths).exists());
}

/// Writes the GitHub remote's cache file as a sync would have left it.
fn write_github_facts(home: &std::path::Path, token: &str) {
    use crate::remote::github::cache::{self, CacheKey, Facts, Persisted};
    use crate::remote::github::http::RateInfo;
    let paths = paths_of(home);
    let facts = Facts {
        api_url: "https://api.github.com".into(),
        login: Some("octo-user".into()),
        owner: "octo-user".into(),
        repo: "opencode-sync".into(),
        branch: "main".into(),
        visibility: "private".into(),
        checked_s: 1_763_720_000,
        last_push_sha: Some("1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b".into()),
        // 2025-11-21T10:20:00Z
        last_push_s: Some(1_763_720_400),
        rate: RateInfo { limit: Some(5000), remaining: Some(4987), reset: Some(1_763_722_800) },
        rate_s: Some(1_763_720_400),
    };
    let key = CacheKey { token_id: cache::token_id(token), ..Default::default() };
    cache::save(&paths.github_cache_file(), &Persisted { format: 1, key, facts, ..Default::default() });
}

#[test]
fn status_shows_the_github_remote_offline() {
    let h = home();
    let token = "ghp_SECRETSECRETSECRET1234";
    write_config(h.path(), r#"{ "remote": "github" }"#);
    write_github_facts(h.path(), token);
    // An unreachable API: status must not need it.
    let vars = [("GITHUB_TOKEN", token.to_string()), ("GITHUB_API_URL", "http://127.0.0.1:9".to_string())];
    let r = run_in(h.path(), &vars, &["status"]);
    assert!(r.out.contains("github     octo-user/opencode-sync (private), branch main, account octo-user"), "{}", r.out);
    assert!(r.out.contains("last push  1a2b3c4 at 2025-11-21T10:20:00Z"), "{}", r.out);
    assert!(r.out.contains("rate limit 4987/5000, resets 11:00 UTC (as of 2025-11-21T10:20:00Z)"), "{}", r.out);
    assert!(r.out.contains("token      ghp_…1234 from GITHUB_TOKEN"), "{}", r.out);
    assert!(!r.out.contains("another token"), "{}", r.out);
    assert!(!r.out.contains(token) && !r.err.contains(token));

    let r = run_in(h.path(), &vars, &["status", "--json"]);
    assert!(!r.out.contains(token));
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    let g = &v["github"];
    assert_eq!(g["account"], "octo-user");
    assert_eq!((g["owner"].as_str(), g["repo"].as_str(), g["branch"].as_str()), (Some("octo-user"), Some("opencode-sync"), Some("main")));
    assert_eq!(g["visibility"], "private");
    assert_eq!(g["lastPush"]["sha"], "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b");
    assert_eq!(g["lastPush"]["at"], "2025-11-21T10:20:00Z");
    assert_eq!(g["rateLimit"], serde_json::json!({ "remaining": 4987, "limit": 5000, "resetAt": "2025-11-21T11:00:00Z", "asOf": "2025-11-21T10:20:00Z" }));
    assert_eq!((g["token"].as_str(), g["tokenSource"].as_str()), (Some("ghp_…1234"), Some("GITHUB_TOKEN")));
    assert_eq!(g["recordedWithOtherToken"], false);

    // Another token than the one the facts were recorded with is pointed out.
    let other = [("GH_TOKEN", "ghp_OTHEROTHEROTHER0000".to_string())];
    let r = run_in(h.path(), &other, &["status"]);
    assert!(r.out.contains("[seen with another token]"), "{}", r.out);
    assert!(r.out.contains("token      ghp_…0000 from GH_TOKEN"), "{}", r.out);
}

#[test]
fn status_github_part_before_the_first_sync_and_without_github() {
    let h = home();
    let r = run_in(h.path(), &[], &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert!(v["github"].is_null(), "{}", r.out);
    assert!(!run_in(h.path(), &[], &["status"]).out.contains("github "));

    let paths = paths_of(h.path());
    crate::token_store::save(&paths, &crate::config::Secret::new("ghp_STOREDSTOREDSTORED9999"), Some("octo-user"), None).unwrap();
    let r = run_in(h.path(), &[], &["status"]);
    assert!(r.out.contains("remote     github"), "{}", r.out);
    assert!(r.out.contains("github     not contacted yet"), "{}", r.out);
    assert!(r.out.contains("token      ghp_…9999 from oc-sync login"), "{}", r.out);
    let v: serde_json::Value = serde_json::from_str(&run_in(h.path(), &[], &["status", "--json"]).out).unwrap();
    assert_eq!(v["github"]["tokenSource"], "oc-sync login");
    assert!(v["github"]["owner"].is_null() && v["github"]["lastPush"].is_null() && v["github"]["rateLimit"].is_null());

    // A local remote with GitHub facts left from earlier still shows them.
    let h2 = home();
    let folder = h2.path().join("share");
    write_config(h2.path(), &format!(r#"{{ "remote": {:?} }}"#, folder.display().to_string()));
    write_github_facts(h2.path(), "ghp_whatever_token_0000");
    let r = run_in(h2.path(), &[], &["status"]);
    assert!(r.out.contains("remote     local"), "{}", r.out);
    assert!(r.out.contains("github     octo-user/opencode-sync"), "{}", r.out);
    assert!(r.out.contains("token      none"), "{}", r.out);
}

#[test]
fn an_api_url_with_user_info_is_refused_before_any_request() {
    let h = home();
    let token = "ghp_SECRETSECRETSECRET1234";
    write_config(h.path(), r#"{ "remote": "github" }"#);
    for url in ["http://127.0.0.1:80@other.example", "http://127.0.0.1.evil.com/api/v3", "https://user:pw@ghe.example.com/api/v3"] {
        let vars = [("GITHUB_TOKEN", token.to_string()), ("GITHUB_API_URL", url.to_string())];
        let r = run_in(h.path(), &vars, &["sync"]);
        let all = format!("{}\n{}", r.out, r.err);
        assert_ne!(r.code, 0, "{url}: {all}");
        assert!(all.contains("GITHUB_API_URL"), "{url}: {all}");
        assert!(!all.contains(token), "{all}");
    }
}

#[test]
fn status_sees_the_plugin_in_every_form_and_config_file() {
    let h = home();
    let dir = h.path().join(".config/opencode");
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text, entry) in [
        ("opencode.json", r#"{"plugin": [["oc-sync@0.1.0", {"conflictStrategy": "ask"}]]}"#, "oc-sync@0.1.0"),
        ("opencode.json", r#"{"plugin": ["file:///opt/x/node_modules/oc-sync/server.mjs"]}"#, "file:///opt/x/node_modules/oc-sync/server.mjs"),
        ("config.json", r#"{"plugin": ["oc-sync"]}"#, "oc-sync"),
    ] {
        for f in ["opencode.json", "config.json"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        std::fs::write(dir.join(file), text).unwrap();
        let r = run_in(h.path(), &[], &["status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
        assert_eq!(v["plugin"]["registered"], true, "{text}: {}", r.out);
        assert_eq!(v["plugin"]["entry"], entry, "{text}");
        assert!(v["plugin"]["opencodeConfigFile"].as_str().unwrap().ends_with(file), "{}", r.out);
    }
}
