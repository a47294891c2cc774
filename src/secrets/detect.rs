//! Which string values of a config file are secrets.
//!
//! A value is looked at with its *path* (the keys leading to it, array indices as numbers) and
//! decided in this order:
//!
//! 1. never a secret: empty text, oc-sync's own placeholders ([`super::SEALED_PREFIX`],
//!    [`super::HELD_BACK`]), and OpenCode references: a value made only of `{env:VAR}` /
//!    `{file:path}` references (optionally after `Bearer ` / `Basic ` / `Token `);
//! 2. never a secret: a path matching a `notSecretPaths` pattern;
//! 3. a secret: a path matching a `secretPaths` pattern;
//! 4. a secret by key: the last key, lower-cased without `-`, `_` and `.`, ends with `apikey`,
//!    `token`, `secret`, `password`, `passwd`, `passphrase`, `privatekey`, `credential(s)`,
//!    `authorization` or `cookie`, or is `auth`;
//! 5. a secret by place: every value of an MCP server's `environment` or `headers`
//!    (`mcp.<name>.environment.*`, `mcp.<name>.headers.*`);
//! 6. a secret by shape, whatever the key: `sk-ant-…`, `sk-…`, `ghp_` / `gho_` / `ghu_` / `ghs_` /
//!    `ghr_…`, `github_pat_…`, `xoxb-` / `xoxp-` / `xoxa-` / `xoxs-` / `xoxr-…`, `AKIA` / `ASIA`
//!    and 16 more, `AIza` and 35 more, and long high-entropy strings (32+ characters of a token
//!    alphabet with letters and digits and at least 4 bits of entropy per character; 40+ for
//!    hex), except subresource-integrity hashes (`sha512-…`).

use std::collections::HashMap;

use super::{HELD_BACK, SEALED_PREFIX};

/// Why a value counts as a secret (shown by tests and `status --json`, never the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    ConfiguredPath,
    Key,
    McpEnvironment,
    McpHeaders,
    Prefix(&'static str),
    HighEntropy,
}

/// A dotted path pattern from the config: `provider.*.options.apiKey`, `mcp.**`.
/// `*` matches one key, `**` any number of keys (none included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern(Vec<String>);

impl PathPattern {
    pub fn parse(s: &str) -> PathPattern {
        PathPattern(s.split('.').map(str::to_owned).collect())
    }

    pub fn matches(&self, path: &[String]) -> bool {
        fn go(p: &[String], path: &[String]) -> bool {
            match p.split_first() {
                None => path.is_empty(),
                Some((first, rest)) if first == "**" => (0..=path.len()).any(|i| go(rest, &path[i..])),
                Some((first, rest)) => {
                    path.split_first().is_some_and(|(seg, tail)| (first == "*" || first == seg) && go(rest, tail))
                }
            }
        }
        go(&self.0, path)
    }
}

/// The detector of one configuration (its `secretPaths` and `notSecretPaths`).
#[derive(Debug, Clone, Default)]
pub struct Detector {
    secret: Vec<PathPattern>,
    not_secret: Vec<PathPattern>,
}

impl Detector {
    pub fn new(secret_paths: &[String], not_secret_paths: &[String]) -> Detector {
        Detector {
            secret: secret_paths.iter().map(|s| PathPattern::parse(s)).collect(),
            not_secret: not_secret_paths.iter().map(|s| PathPattern::parse(s)).collect(),
        }
    }

    /// The rule that makes `value` at `path` a secret, if one does.
    pub fn check(&self, path: &[String], value: &str) -> Option<Rule> {
        let rest = without_references(value)?;
        if rest.is_empty() || is_placeholder(value) {
            return None;
        }
        if self.not_secret.iter().any(|p| p.matches(path)) {
            return None;
        }
        if self.secret.iter().any(|p| p.matches(path)) {
            return Some(Rule::ConfiguredPath);
        }
        if path.last().is_some_and(|k| secret_key(k)) {
            return Some(Rule::Key);
        }
        if let Some(rule) = mcp_place(path) {
            return Some(rule);
        }
        shape(rest)
    }
}

/// oc-sync's own stand-ins for secrets.
pub fn is_placeholder(value: &str) -> bool {
    value == HELD_BACK || value.starts_with(SEALED_PREFIX)
}

/// `value` with its `{env:…}` / `{file:…}` references removed and trimmed, dropping a leading
/// auth scheme when references were there; `None` if it held references and nothing else.
fn without_references(value: &str) -> Option<&str> {
    let mut rest = String::new();
    let mut found = false;
    let mut s = value;
    while let Some(i) = s.find('{') {
        let tail = &s[i..];
        let is_ref = (tail.starts_with("{env:") || tail.starts_with("{file:")) && tail.contains('}');
        if !is_ref {
            rest.push_str(&s[..=i]);
            s = &s[i + 1..];
            continue;
        }
        found = true;
        rest.push_str(&s[..i]);
        s = &tail[tail.find('}').expect("checked") + 1..];
    }
    if !found {
        return Some(value.trim());
    }
    rest.push_str(s);
    let r = rest.trim();
    let r = ["Bearer", "Basic", "Token", "token", "bearer"].iter().fold(r, |r, w| r.strip_prefix(w).unwrap_or(r)).trim();
    if r.is_empty() {
        return None;
    }
    // Something besides the references: judge that part (it lives inside `value`).
    value.find(r).map(|i| &value[i..i + r.len()])
}

fn secret_key(key: &str) -> bool {
    let k: String = key.chars().filter(|c| !matches!(c, '-' | '_' | '.')).flat_map(char::to_lowercase).collect();
    const ENDINGS: &[&str] =
        &["apikey", "token", "secret", "password", "passwd", "passphrase", "privatekey", "credential", "credentials", "authorization", "cookie"];
    k == "auth" || ENDINGS.iter().any(|e| k.ends_with(e))
}

fn mcp_place(path: &[String]) -> Option<Rule> {
    let n = path.len();
    if n >= 4 && path[n - 4] == "mcp" {
        return match path[n - 2].as_str() {
            "environment" => Some(Rule::McpEnvironment),
            "headers" => Some(Rule::McpHeaders),
            _ => None,
        };
    }
    None
}

/// Well-known prefixes: (prefix, fewest characters after it, allowed characters after it).
type PrefixRule = (&'static str, usize, fn(char) -> bool);
const PREFIXES: &[PrefixRule] = &[
    ("sk-ant-", 20, token_char),
    ("sk-", 20, token_char),
    ("github_pat_", 20, word_char),
    ("ghp_", 30, alnum),
    ("gho_", 30, alnum),
    ("ghu_", 30, alnum),
    ("ghs_", 30, alnum),
    ("ghr_", 30, alnum),
    ("xoxb-", 10, token_char),
    ("xoxp-", 10, token_char),
    ("xoxa-", 10, token_char),
    ("xoxs-", 10, token_char),
    ("xoxr-", 10, token_char),
    ("AKIA", 16, upper_alnum),
    ("ASIA", 16, upper_alnum),
    ("AIza", 35, token_char),
];

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}
fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}
fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}
fn upper_alnum(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}

/// A secret by its look alone.
fn shape(value: &str) -> Option<Rule> {
    let v = value.trim();
    let v = ["Bearer ", "bearer ", "Token ", "token "].iter().fold(v, |v, p| v.strip_prefix(p).unwrap_or(v)).trim();
    for (prefix, min, ok) in PREFIXES {
        if let Some(rest) = v.strip_prefix(prefix)
            && rest.chars().count() >= *min
            && rest.chars().all(ok)
        {
            return Some(Rule::Prefix(prefix));
        }
    }
    // Subresource-integrity hashes (package-lock.json) are random-looking but public.
    if ["sha1-", "sha256-", "sha384-", "sha512-"].iter().any(|p| v.starts_with(p)) {
        return None;
    }
    high_entropy(v).then_some(Rule::HighEntropy)
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts: HashMap<char, usize> = HashMap::new();
    for c in s.chars() {
        *counts.entry(c).or_default() += 1;
    }
    let n = s.chars().count() as f64;
    counts.values().map(|&k| k as f64 / n).map(|p| -p * p.log2()).sum()
}

fn high_entropy(v: &str) -> bool {
    let n = v.chars().count();
    if !(32..=4096).contains(&n) || v.starts_with(['/', '.', '~', '-']) {
        return false;
    }
    if !v.chars().all(|c| c.is_ascii_alphanumeric() || "+/=_-.".contains(c)) {
        return false;
    }
    if !(v.chars().any(|c| c.is_ascii_digit()) && v.chars().any(|c| c.is_ascii_alphabetic())) {
        return false;
    }
    if v.chars().all(|c| c.is_ascii_hexdigit()) {
        return n >= 40 && entropy(v) >= 3.0;
    }
    // Paths and dotted names ("anthropic/claude-…", "a.b.c") need a clearly random look.
    let threshold = if v.contains(['/', '.']) { 4.5 } else { 4.0 };
    entropy(v) >= threshold
}

#[cfg(test)]
mod tests;
