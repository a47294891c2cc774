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
        let mut io = Io { out: &mut out, err: &mut err, env };
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
    for cmd in ["status", "paths", "init", "install"] {
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
