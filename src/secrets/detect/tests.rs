use super::*;

fn p(s: &str) -> Vec<String> {
    s.split('.').map(str::to_owned).collect()
}

fn check(path: &str, value: &str) -> Option<Rule> {
    Detector::default().check(&p(path), value)
}

const RANDOM: &str = "Zq8rT2vLx9QmWc4NbY7kHs3JdF6gPa1E";

#[test]
fn secret_by_key() {
    for key in [
        "apiKey", "api_key", "API-KEY", "x-api-key", "token", "accessToken", "refresh_token", "secret", "clientSecret", "password",
        "db_passwd", "passphrase", "privateKey", "credentials", "Authorization", "Proxy-Authorization", "Cookie", "auth",
    ] {
        assert_eq!(check(&format!("provider.a.options.{key}"), "hunter2"), Some(Rule::Key), "{key}");
    }
    for key in ["model", "baseURL", "maxTokens", "tokenizer", "author", "description"] {
        assert_eq!(check(&format!("provider.a.options.{key}"), "hunter2"), None, "{key}");
    }
}

#[test]
fn mcp_environment_and_headers_are_secrets_whatever_their_names() {
    assert_eq!(check("mcp.github.environment.GITHUB_ORG", "acme"), Some(Rule::McpEnvironment));
    assert_eq!(check("mcp.remote.headers.X-Custom", "v1"), Some(Rule::McpHeaders));
    assert_eq!(check("mcp.remote.url", "https://mcp.example.com"), None);
    assert_eq!(check("mcp.local.command.0", "npx"), None);
    assert_eq!(check("agent.x.environment.Y", "plain"), None, "only MCP servers' environment");
}

#[test]
fn secret_by_prefix_anywhere() {
    let cases = [
        ("sk-ant-", "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWx"),
        ("sk-", "sk-proj-AbCdEfGhIjKlMnOpQrStUv"),
        ("ghp_", "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
        ("github_pat_", "github_pat_11ABCDEFG0123456789_abcdefghijkl"),
        ("xoxb-", "xoxb-1234567890-abcdefghij"),
        ("AKIA", "AKIAIOSFODNN7EXAMPLE"),
        ("AIza", "AIzaSyA-1234567890abcdefghijklmnopqrstu"),
    ];
    for (prefix, v) in cases {
        assert_eq!(check("mcp.x.command.3", v), Some(Rule::Prefix(prefix)), "{v}");
        assert_eq!(check("whatever", &format!("Bearer {v}")), Some(Rule::Prefix(prefix)), "{v}");
    }
    // Too short or wrong alphabet: not a key.
    for v in ["sk-short", "ghp_abc", "AKIAshort", "sk-learn is a library", "xoxb-"] {
        assert_eq!(check("note", v), None, "{v}");
    }
}

#[test]
fn long_high_entropy_strings_are_secrets_ordinary_long_strings_are_not() {
    assert_eq!(check("x", RANDOM), Some(Rule::HighEntropy));
    assert_eq!(check("x", "3f9a1c7e5b2d8f4a6c0e9b1d3f5a7c9e1b3d5f7a"), Some(Rule::HighEntropy));
    for v in [
        "anthropic/claude-sonnet-4-5-20250929",
        "https://opencode.ai/config.json",
        "/home/alice/projects/some-long-project-name/file.txt",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
        "0123456789abcdef0123456789abcdef",
        "550e8400-e29b-41d4-a716-446655440000",
        "You are a careful reviewer. Check every change twice before answering.",
        "openrouter/meta-llama/llama-3.1-405b-instruct",
        "sha512-9Xq1zZ8B0K3vR7aTnWm4yL2cE5dH6jP0sU1gF8oQ3iN7bV4xC2kM9lA6eY5rT0uW1zS3hJ8fD2gK4pL6nB0vC7m==",
    ] {
        assert_eq!(check("x", v), None, "{v}");
    }
}

#[test]
fn opencode_references_are_not_secrets() {
    for v in ["{env:OPENAI_API_KEY}", "{file:~/.secrets/openai}", "Bearer {env:TOKEN}", " {env:A}{env:B} "] {
        assert_eq!(check("provider.a.options.apiKey", v), None, "{v}");
        assert_eq!(check("mcp.s.headers.Authorization", v), None, "{v}");
    }
    // A real secret next to a reference is still a secret.
    assert_eq!(check("x", &format!("{{env:A}}{RANDOM}")), Some(Rule::HighEntropy));
}

#[test]
fn placeholders_and_empty_values_are_not_secrets() {
    for v in ["", "  ", super::super::HELD_BACK, "oc-sync:sealed:eyJvYy1zeW5jLWVudmVsb3BlIjoxfQ=="] {
        assert_eq!(check("provider.a.options.apiKey", v), None, "{v:?}");
    }
}

#[test]
fn configured_paths_add_and_remove_secrets() {
    let d = Detector::new(&["provider.*.options.organization".into(), "agent.**.seed".into()], &["provider.local.**".into(), "x".into()]);
    assert_eq!(d.check(&p("provider.openai.options.organization"), "org-1"), Some(Rule::ConfiguredPath));
    assert_eq!(d.check(&p("agent.a.b.c.seed"), "42"), Some(Rule::ConfiguredPath));
    assert_eq!(d.check(&p("agent.seed"), "42"), Some(Rule::ConfiguredPath), "** may match no key");
    assert_eq!(d.check(&p("provider.local.options.apiKey"), "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWx"), None);
    assert_eq!(d.check(&p("x"), RANDOM), None);
    // References stay references even on a configured path.
    assert_eq!(d.check(&p("provider.openai.options.organization"), "{env:ORG}"), None);
}

#[test]
fn path_patterns() {
    let m = |pat: &str, path: &str| PathPattern::parse(pat).matches(&p(path));
    assert!(m("a.*.c", "a.b.c"));
    assert!(!m("a.*.c", "a.c"));
    assert!(m("**.apiKey", "provider.x.options.apiKey"));
    assert!(m("**", "anything.at.all"));
    assert!(!m("a.b", "a.b.c"));
}
