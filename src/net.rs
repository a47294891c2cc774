//! URL rules shared by oc-sync's HTTP clients (GitHub, OpenSync): a secret travels over https
//! only; plain http is accepted to a loopback address (local fakes, tests).

/// A URL that passed [`check_secure_url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedUrl {
    /// Trimmed, without a trailing `/`.
    pub url: String,
    pub host: String,
}

/// Checks that `url` is https, or http to a loopback address. `secret` names what would leak
/// ("token", "API key"), `example` is shown when `url` is not a URL at all.
pub fn check_secure_url(url: &str, secret: &str, example: &str) -> Result<CheckedUrl, String> {
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("{url:?} is not a URL (expected {example})"))?;
    let host_port = rest.split('/').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(h) => h.split(']').next().unwrap_or(""),
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host name"));
    }
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match scheme {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!("{url:?} uses plain http to a non-loopback host, which would send your {secret} unencrypted: use https"));
        }
        _ => return Err(format!("{url:?} must start with https://")),
    }
    Ok(CheckedUrl { url: url.to_owned(), host: host.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::check_secure_url;

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
}
