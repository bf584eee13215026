//! Rules for app names and route prefixes, shared by the CLI (to fail early) and the node.

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Longest accepted app name.
pub const MAX_NAME_LEN: usize = 63;

/// Checks an app name: 1 to 63 lowercase letters, digits, `-` or `_`, starting with a letter
/// or digit. Names become file and URL path segments, so `/`, `..` and the like never pass.
pub fn validate_app_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() || name.len() > MAX_NAME_LEN || !valid_chars || !starts_well {
        return Err(format!(
            "invalid app name {name:?}: use 1 to {MAX_NAME_LEN} lowercase letters, digits, '-' \
             or '_', starting with a letter or digit (no '/' or '..')"
        ));
    }
    Ok(())
}

/// Normalises and checks a route prefix: starts with `/`, no trailing `/` (except the root),
/// no empty, `.` or `..` segments, no query or fragment.
pub fn normalize_route(route: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("invalid route {route:?}: {why}"));
    if !route.starts_with('/') {
        return bad("it must start with '/'");
    }
    if route.contains(['?', '#', ' ']) || route.chars().any(char::is_control) {
        return bad("it must be a plain path without query, fragment or spaces");
    }
    let trimmed = route.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".to_string());
    }
    if trimmed[1..]
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("it contains an empty, '.' or '..' segment");
    }
    Ok(trimmed.to_string())
}

/// Whether `path` is under `prefix` on a segment boundary (`/a` owns `/a` and `/a/b`, not `/ab`).
pub fn route_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_with_slashes_or_dots_are_rejected() {
        for bad in ["", "a/b", "..", "../etc", "A", "-x", "a b", &"x".repeat(64)] {
            assert!(validate_app_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["hello", "a", "app-2", "my_app", "9lives"] {
            assert!(validate_app_name(good).is_ok(), "{good:?} rejected");
        }
    }

    #[test]
    fn routes_are_normalised_and_checked() {
        assert_eq!(normalize_route("/a/").unwrap(), "/a");
        assert_eq!(normalize_route("/").unwrap(), "/");
        assert_eq!(normalize_route("/a/b").unwrap(), "/a/b");
        for bad in ["a", "/a//b", "/a/../b", "/a?x", "/./a"] {
            assert!(normalize_route(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn routes_match_on_segment_boundaries() {
        assert!(route_matches("/a", "/a"));
        assert!(route_matches("/a", "/a/b"));
        assert!(!route_matches("/a", "/ab"));
        assert!(route_matches("/", "/anything"));
    }
}
