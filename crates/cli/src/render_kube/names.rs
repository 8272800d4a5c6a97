//! Kubernetes names for what mcpgw renders: valid, stable (the same input
//! always gives the same name) and distinct (two inputs never share one).

use sha2::Digest;

/// The longest name mcpgw makes: a DNS-1123 label's limit, so a name is
/// valid wherever Kubernetes or Envoy Gateway reuses it.
const MAX: usize = 63;

/// Whether `s` is a DNS-1123 label (lower-case letters, digits and '-',
/// starting and ending alphanumeric, at most 63).
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Whether `s` is a DNS-1123 subdomain (dot-separated labels, at most 253).
pub fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

/// The name of an object made from `parts` (joined with '-'): the joined
/// text itself when it is already a valid name, else its closest valid form
/// plus a short hash of the original, so that "GitHub" and "github" (or
/// "my_server" and "my-server") never land on the same object.
pub fn object(parts: &[&str]) -> String {
    let joined = parts.join("-");
    if joined.len() <= MAX && is_subdomain(&joined) {
        return joined;
    }
    let mut out = String::with_capacity(joined.len());
    for c in joined.chars() {
        let c = c.to_ascii_lowercase();
        let keep = c.is_ascii_lowercase() || c.is_ascii_digit();
        let sep = if keep { c } else { '-' };
        if sep == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(sep);
    }
    let hash = short_hash(&joined);
    let room = MAX - hash.len() - 1;
    let mut base: String = out.chars().take(room).collect();
    while base.ends_with('-') {
        base.pop();
    }
    if base.is_empty() {
        hash
    } else {
        format!("{base}-{hash}")
    }
}

/// An object mcpgw owns for route `route` of namespace `route_ns`, placed in
/// `ns`: `<route>-<suffix>`, prefixed with the route's namespace when it
/// lives elsewhere (Envoy's namespace is shared by every route).
pub fn owned(route_ns: &str, route: &str, ns: &str, suffix: &str) -> String {
    if ns == route_ns {
        object(&[route, suffix])
    } else {
        object(&[route_ns, route, suffix])
    }
}

fn short_hash(s: &str) -> String {
    let d = sha2::Sha256::digest(s.as_bytes());
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_stable_and_distinct() {
        assert_eq!(object(&["mcpgw", "github"]), "mcpgw-github");
        assert_eq!(object(&["tools", "session-key"]), "tools-session-key");
        let a = object(&["mcpgw", "GitHub"]);
        let b = object(&["mcpgw", "github"]);
        let c = object(&["mcpgw", "My_Server"]);
        let d = object(&["mcpgw", "my-server"]);
        assert!(a.starts_with("mcpgw-github-") && a != b, "{a}");
        assert!(c.starts_with("mcpgw-my-server-") && c != d, "{c}");
        assert_eq!(a, object(&["mcpgw", "GitHub"]), "stable");
        let long = "x".repeat(200);
        for n in [
            a,
            c,
            object(&["mcpgw", &long]),
            object(&["__"]),
            object(&["a.b", "C"]),
        ] {
            assert!(n.len() <= 63 && is_subdomain(&n), "{n}");
        }
        assert_ne!(
            object(&["mcpgw", &long]),
            object(&["mcpgw", &format!("{long}y")])
        );
        assert_eq!(owned("agents", "tools", "agents", "proxy"), "tools-proxy");
        assert_eq!(
            owned("agents", "tools", "envoy-gateway-system", "session-key"),
            "agents-tools-session-key"
        );
        assert!(is_label("a-1") && !is_label("-a") && !is_label("A") && !is_label("a.b"));
        assert!(is_subdomain("a.b-c") && !is_subdomain("a..b") && !is_subdomain("a_b"));
    }
}
