//! How backend names and URIs are shown to clients, and how a client's name
//! or URI is traced back to its backend.
//!
//! Tools and prompts: `<backend><sep><name>` (separator `__` by default).
//! Resources: `<backend>+<uri>`, reversible and still a valid URI (the
//! backend name becomes part of the scheme), so templates keep matching.
//! Whether a backend's names are prefixed is its prefix mode.

use super::config::{Backend, Config};
use super::session::Session;
use std::borrow::Cow;

/// Where a client-visible name points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// Backend index in the config, and the backend's own name or URI.
    Backend(usize, Cow<'a, str>),
    /// Unprefixed and more than one unprefixed backend could own it.
    Ambiguous(Vec<usize>),
    Unknown,
}

pub struct Naming<'c> {
    cfg: &'c Config,
}

impl<'c> Naming<'c> {
    pub fn new(cfg: &'c Config) -> Self {
        Naming { cfg }
    }

    fn prefixed(&self, b: &Backend) -> bool {
        b.prefixed(self.cfg.backends.len())
    }

    /// The client-visible name of a backend's tool or prompt.
    pub fn expose<'n>(&self, backend: &Backend, name: &'n str) -> Cow<'n, str> {
        if self.prefixed(backend) {
            let mut s =
                String::with_capacity(backend.name.len() + self.cfg.separator.len() + name.len());
            s.push_str(&backend.name);
            s.push_str(&self.cfg.separator);
            s.push_str(name);
            Cow::Owned(s)
        } else {
            Cow::Borrowed(name)
        }
    }

    /// The client-visible form of a backend's resource URI.
    pub fn expose_uri<'n>(&self, backend: &Backend, uri: &'n str) -> Cow<'n, str> {
        if self.prefixed(backend) {
            Cow::Owned(format!("{}+{}", backend.name, uri))
        } else {
            Cow::Borrowed(uri)
        }
    }

    /// Trace a tool or prompt name back to a backend of `session`.
    pub fn resolve<'n>(&self, session: &Session, name: &'n str) -> Resolved<'n> {
        self.resolve_with(session, name, |n| n.split_once(self.cfg.separator.as_str()))
    }

    /// Trace a resource URI back to a backend of `session`.
    pub fn resolve_uri<'n>(&self, session: &Session, uri: &'n str) -> Resolved<'n> {
        self.resolve_with(session, uri, |u| u.split_once('+'))
    }

    fn resolve_with<'n>(
        &self,
        session: &Session,
        name: &'n str,
        split: impl Fn(&'n str) -> Option<(&'n str, &'n str)>,
    ) -> Resolved<'n> {
        if let Some((prefix, rest)) = split(name) {
            if let Some((i, b)) = self.cfg.backend(prefix) {
                if self.prefixed(b) && session.backend(prefix).is_some() && !rest.is_empty() {
                    return Resolved::Backend(i, Cow::Borrowed(rest));
                }
            }
        }
        let bare: Vec<usize> = self
            .cfg
            .backends
            .iter()
            .enumerate()
            .filter(|(_, b)| !self.prefixed(b) && session.backend(&b.name).is_some())
            .map(|(i, _)| i)
            .collect();
        match bare.as_slice() {
            [] => Resolved::Unknown,
            [only] => Resolved::Backend(*only, Cow::Borrowed(name)),
            _ => Resolved::Ambiguous(bare),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::config::compile;
    use crate::gateway::config::tests::{env, KEY};
    use crate::gateway::session::BackendSession;
    use crate::protocol::mcp::Version;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn cfg(backends: &str) -> Config {
        compile(
            format!(r#"{{"session":{{"key":"{KEY}"}},"backends":{backends}}}"#).as_bytes(),
            &env,
        )
        .unwrap()
    }

    fn session(names: &[&str]) -> Session {
        Session {
            sid: [0; 16],
            created_ms: 0,
            version: Version::LATEST,
            principal: None,
            backends: names
                .iter()
                .map(|n| BackendSession {
                    name: n.to_string(),
                    version: Version::LATEST,
                    session_id: None,
                    caps: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn prefixed_round_trip() {
        let c = cfg(r#"[{"name":"gh","cluster":"a"},{"name":"fs","cluster":"b"}]"#);
        let n = Naming::new(&c);
        let s = session(&["gh", "fs"]);
        assert_eq!(n.expose(&c.backends[0], "list__issues"), "gh__list__issues");
        assert_eq!(
            n.resolve(&s, "gh__list__issues"),
            Resolved::Backend(0, "list__issues".into())
        );
        assert_eq!(
            n.resolve(&s, "fs__read"),
            Resolved::Backend(1, "read".into())
        );
        assert_eq!(n.resolve(&s, "zz__read"), Resolved::Unknown);
        assert_eq!(n.resolve(&s, "gh__"), Resolved::Unknown);
        assert_eq!(n.resolve(&s, "read"), Resolved::Unknown);
        // A backend that is not part of this session cannot be reached.
        assert_eq!(n.resolve(&session(&["fs"]), "gh__x"), Resolved::Unknown);
        assert_eq!(
            n.expose_uri(&c.backends[1], "file:///a+b"),
            "fs+file:///a+b"
        );
        assert_eq!(
            n.resolve_uri(&s, "fs+file:///a+b"),
            Resolved::Backend(1, "file:///a+b".into())
        );
    }

    #[test]
    fn single_backend_is_bare_by_default() {
        let c = cfg(r#"[{"name":"only","cluster":"a"}]"#);
        let n = Naming::new(&c);
        let s = session(&["only"]);
        assert_eq!(n.expose(&c.backends[0], "x"), "x");
        assert_eq!(
            n.resolve(&s, "only__x"),
            Resolved::Backend(0, "only__x".into())
        );
        assert_eq!(
            n.resolve_uri(&s, "test://static"),
            Resolved::Backend(0, "test://static".into())
        );
    }

    #[test]
    fn mixed_modes() {
        let c = cfg(
            r#"[{"name":"fix","cluster":"a","prefix":"never"},{"name":"two","cluster":"b"},{"name":"three","cluster":"c","prefix":"never"}]"#,
        );
        let n = Naming::new(&c);
        assert_eq!(
            n.resolve(&session(&["fix", "two"]), "test_x"),
            Resolved::Backend(0, "test_x".into())
        );
        assert_eq!(
            n.resolve(&session(&["fix", "two"]), "two__y"),
            Resolved::Backend(1, "y".into())
        );
        assert_eq!(
            n.resolve(&session(&["fix", "two", "three"]), "test_x"),
            Resolved::Ambiguous(vec![0, 2])
        );
    }
}
