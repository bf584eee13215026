//! Origins an app may send HTTP requests to: `scheme://host[:port]`, with `*.` as a subdomain
//! wildcard (`https://*.example.com` matches `https://api.example.com`, not `example.com`).

use std::fmt;

/// One granted origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    /// Lowercase host; for a wildcard, the suffix after `*.`.
    host: String,
    wildcard: bool,
    port: u16,
}

/// The origin of one outgoing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Splits `host[:port]` (IPv6 in brackets), lowercasing the host.
fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (format!("[{host}]"), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(port) => Some(port.parse().ok()?),
        None => None,
    };
    Some((host.to_ascii_lowercase(), port))
}

impl OriginPattern {
    /// Parses an origin as given to `--allow-outbound`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| {
            format!(
                "invalid --allow-outbound origin {text:?}: {why}; give scheme, host and optional \
                 port, such as https://api.example.com, https://*.example.com or \
                 http://127.0.0.1:9000"
            )
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default =
            default_port(&scheme).ok_or_else(|| invalid("the scheme must be http or https"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(invalid("an origin has no path, query, fragment or user"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| invalid("bad port"))?;
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(suffix) => (suffix.to_string(), true),
            None => (host, false),
        };
        if host.is_empty() || host.contains('*') {
            return Err(invalid(
                "`*` is only allowed as the first label (`*.example.com`)",
            ));
        }
        Ok(Self {
            scheme,
            host,
            wildcard,
            port: port.unwrap_or(default),
        })
    }

    pub fn matches(&self, origin: &Origin) -> bool {
        if self.scheme != origin.scheme || self.port != origin.port {
            return false;
        }
        if self.wildcard {
            origin
                .host
                .strip_suffix(&self.host)
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.'))
        } else {
            origin.host == self.host
        }
    }
}

impl Origin {
    /// The origin a request goes to, from its absolute URI.
    pub fn of(uri: &http::Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let (host, port) = split_host_port(uri.authority()?.as_str().rsplit('@').next()?)?;
        let port = port.or_else(|| default_port(&scheme))?;
        Some(Self { scheme, host, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(uri: &str) -> Origin {
        Origin::of(&uri.parse().unwrap()).unwrap()
    }

    #[test]
    fn exact_origins_match_scheme_host_and_port() {
        let granted = OriginPattern::parse("http://127.0.0.1:9000").unwrap();
        assert!(granted.matches(&origin("http://127.0.0.1:9000/ingest?x=1")));
        assert!(!granted.matches(&origin("http://127.0.0.1:9001/ingest")));
        assert!(!granted.matches(&origin("https://127.0.0.1:9000/")));
        let https = OriginPattern::parse("https://API.example.com/").unwrap();
        assert!(https.matches(&origin("https://api.example.com/v1")));
        assert!(https.matches(&origin("https://api.example.com:443/v1")));
        assert!(!https.matches(&origin("https://api.example.com:8443/v1")));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let granted = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(granted.matches(&origin("https://a.example.com/")));
        assert!(granted.matches(&origin("https://a.b.example.com/")));
        assert!(!granted.matches(&origin("https://example.com/")));
        assert!(!granted.matches(&origin("https://badexample.com/")));
    }

    #[test]
    fn bad_origins_are_refused_with_an_example() {
        for bad in [
            "api.example.com",
            "ftp://x",
            "https://x/path",
            "https://*",
            "https://a.*.com",
            "http://x:99999",
        ] {
            let err = OriginPattern::parse(bad).unwrap_err();
            assert!(err.contains("https://api.example.com"), "{bad}: {err}");
        }
        assert!(
            OriginPattern::parse("http://[::1]:8080")
                .unwrap()
                .matches(&origin("http://[::1]:8080/"))
        );
    }
}
