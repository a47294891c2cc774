//! URL rules shared by oc-sync's HTTP clients (GitHub, OpenSync): a secret travels over https
//! only; plain http is accepted to a loopback address (local fakes, tests). URLs are parsed with
//! a real (WHATWG) parser, never split by hand.

use url::{Host, Url};

/// A URL that passed [`check_secure_url`], parsed once by the WHATWG rules (the `url` crate).
/// Clients are built from [`SecureUrl::url`], the canonical spelling of what was checked, so the
/// host that was judged is the host they connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureUrl {
    /// The canonical form, without a trailing `/`.
    pub url: String,
    /// The host as the client sees it (lower case, IPv4 in dotted form, IPv6 in brackets).
    pub host: String,
    parsed: Url,
}

impl SecureUrl {
    /// The parsed URL.
    pub fn parsed(&self) -> &Url {
        &self.parsed
    }

    /// The same URL with another host name (e.g. a Convex deployment's `.site` twin), checked again.
    pub fn with_host(&self, host: &str, secret: &str) -> Result<SecureUrl, String> {
        let mut u = self.parsed.clone();
        u.set_host(Some(host)).map_err(|e| format!("{host:?} is not a host name: {e}"))?;
        check_parsed(u, secret)
    }
}

/// Checks that `url` is https, or http to a loopback address, with no user info, query or
/// fragment. `secret` names what would leak ("token", "API key"), `example` is shown when `url`
/// is not a URL at all.
pub fn check_secure_url(url: &str, secret: &str, example: &str) -> Result<SecureUrl, String> {
    let shown = url.trim();
    let parsed = Url::parse(shown).map_err(|e| format!("{shown:?} is not a URL ({e}; expected {example})"))?;
    check_parsed(parsed, secret)
}

fn check_parsed(parsed: Url, secret: &str) -> Result<SecureUrl, String> {
    let shown = parsed.as_str().trim_end_matches('/').to_owned();
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("{shown:?} has user info before its host (user@host), which would hide where your {secret} goes: remove it"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{shown:?} has a ?query or #fragment: give the plain base address"));
    }
    let Some(host) = parsed.host() else { return Err(format!("{shown:?} has no host name")) };
    let loopback = is_loopback(&host);
    let host = host.to_string();
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!("{shown:?} uses plain http to a non-loopback host, which would send your {secret} unencrypted: use https"));
        }
        _ => return Err(format!("{shown:?} must start with https://")),
    }
    Ok(SecureUrl { url: shown, host, parsed })
}

/// 127.0.0.0/8, ::1, ::ffff:127.x.x.x, `localhost` and `localhost.`.
pub fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Host::Domain(d) => matches!(*d, "localhost" | "localhost."),
    }
}

/// The GitHub API base URL, checked: https, or plain http to a loopback address only.
pub fn github_api_url(url: &str) -> Result<SecureUrl, String> {
    check_secure_url(url, "token", "https://api.github.com or https://HOST/api/v3")
}

/// [`github_api_url`], as the normalised string.
pub fn check_github_api_url(url: &str) -> Result<String, String> {
    github_api_url(url).map(|c| c.url)
}

#[cfg(test)]
mod tests {
    use super::{check_github_api_url, check_secure_url};

    #[test]
    fn https_or_loopback_http() {
        let ok = |u: &str| check_secure_url(u, "token", "https://x").map(|c| c.url);
        assert_eq!(ok("https://ghe.example.com/api/v3/").unwrap(), "https://ghe.example.com/api/v3");
        assert!(ok("http://127.0.0.1:8080").is_ok());
        assert!(ok("http://localhost:1/api/v3").is_ok());
        assert!(ok("http://[::1]:9").is_ok());
        assert!(ok("http://example.com").unwrap_err().contains("unencrypted"));
        assert!(ok("http://127.0.0.1.evil.com").is_err());
        assert!(ok("ftp://x").is_err());
        assert!(ok("api.github.com").is_err());
        assert_eq!(check_secure_url("https://a.b:443/p", "k", "").unwrap().host, "a.b");
    }

    /// Spellings where a hand-written split and the HTTP client disagree about the host: every
    /// one is judged on the host the client would connect to, and user info is refused.
    #[test]
    fn tricky_spellings_are_judged_on_the_real_host() {
        let ok = |u: &str| check_secure_url(u, "token", "https://x").map(|c| c.url);
        // User info: the client would connect to other.example (over plain http).
        for u in [
            "http://127.0.0.1:80@other.example",
            "http://127.0.0.1:80@other.example/api/v3",
            "http://localhost@other.example",
            "http://user:pw@127.0.0.1:9",
            "https://token@api.github.com",
            "http://[::1]@other.example",
            "http://127.0.0.1%3A80@other.example",
        ] {
            assert!(ok(u).is_err(), "{u} must be refused");
        }
        // Loopback, however spelled: accepted, and the client is given the canonical form.
        for (u, canon) in [
            ("http://[::1]:9", "http://[::1]:9"),
            ("http://[::ffff:127.0.0.1]:9", "http://[::ffff:7f00:1]:9"),
            ("http://2130706433:9", "http://127.0.0.1:9"),
            ("http://0177.0.0.1:9", "http://127.0.0.1:9"),
            ("http://0x7f.1:9", "http://127.0.0.1:9"),
            ("http://127.1.2.3:9", "http://127.1.2.3:9"),
            ("http://127.0.0.1.:9/x/", "http://127.0.0.1:9/x"),
            ("http://localhost.:9", "http://localhost.:9"),
            ("http://LOCALHOST:9", "http://localhost:9"),
            ("HTTP://127.0.0.1:9", "http://127.0.0.1:9"),
            ("http://%6c%6f%63%61%6c%68%6f%73%74:9", "http://localhost:9"),
            ("HTTPS://Api.GitHub.com/", "https://api.github.com"),
        ] {
            assert_eq!(ok(u).as_deref(), Ok(canon), "{u}");
        }
        // Not loopback, however much it looks like it: no plain http.
        for u in [
            "http://127.0.0.1.evil.com",
            "http://localhost.evil.com",
            "http://evil.com#@127.0.0.1",
            "http://evil.com?@127.0.0.1",
            "http://evil.com\\@127.0.0.1",
            "http://[::ffff:10.0.0.1]",
            "http://0.0.0.0:9",
            "http://2147483648", // 128.0.0.0
            "http://128.0.0.1",
            "http://%31%32%37.0.0.1.evil.com",
        ] {
            assert!(ok(u).is_err(), "{u} must be refused");
        }
        assert!(ok("http:///127.0.0.1").is_ok_and(|u| u == "http://127.0.0.1"), "WHATWG skips extra slashes");
        assert!(ok("https://").is_err());
        assert!(ok("https://host/a?q=1").is_err(), "a query would be sent with every request");
        assert!(ok("https://host/a#f").is_err());
        assert!(ok("file:///etc/passwd").is_err());
        assert!(ok("javascript:alert(1)").is_err());
    }

    #[test]
    fn github_api_urls() {
        let check = check_github_api_url;
        assert!(check("https://api.github.com").is_ok());
        assert_eq!(check("https://ghe.example.com/api/v3/").unwrap(), "https://ghe.example.com/api/v3");
        assert!(check("http://127.0.0.1:8080").is_ok());
        assert!(check("http://localhost:1/api/v3").is_ok());
        assert!(check("http://[::1]:9").is_ok());
        assert!(check("http://example.com").unwrap_err().contains("unencrypted"));
        assert!(check("http://127.0.0.1.evil.com").is_err());
        assert!(check("ftp://x").is_err());
        assert!(check("api.github.com").is_err());
    }
}
