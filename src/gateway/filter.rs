//! Which of a backend's tools (or prompts) clients may see and call.
//!
//! Exclusions win. With no include rule everything not excluded is visible;
//! with include rules a name must match one of them (exact or regex).
//! Regexes search the name like Go's `MatchString` (MCPRoute's
//! `toolSelector` semantics); anchor with `^...$` for a whole-name match.

use regex_lite::Regex;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameFilterSpec {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub include_regex: Vec<String>,
    #[serde(default)]
    pub exclude_regex: Vec<String>,
}

#[derive(Debug, Default)]
pub struct NameFilter {
    include: Vec<String>,
    exclude: Vec<String>,
    include_regex: Vec<Pattern>,
    exclude_regex: Vec<Pattern>,
}

/// A compiled regex; one that is plain text with optional anchors (the
/// usual `^prefix_`, `_suffix$`, `^exact$`) matches without the regex
/// engine, which costs far more per name on a large list.
#[derive(Debug)]
enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(Regex),
}

impl Pattern {
    fn new(re: &str) -> Result<Pattern, regex_lite::Error> {
        // Validated by the engine either way, so errors read the same.
        let compiled = Regex::new(re)?;
        let (start, rest) = match re.strip_prefix('^') {
            Some(r) => (true, r),
            None => (false, re),
        };
        let (end, text) = match rest.strip_suffix('$') {
            Some(t) => (true, t),
            None => (false, rest),
        };
        let plain = !text.chars().any(|c| "\\.+*?()|[]{}^$".contains(c));
        Ok(match (plain, start, end) {
            (false, _, _) => Pattern::Regex(compiled),
            (true, true, true) => Pattern::Exact(text.to_string()),
            (true, true, false) => Pattern::Prefix(text.to_string()),
            (true, false, true) => Pattern::Suffix(text.to_string()),
            (true, false, false) => Pattern::Contains(text.to_string()),
        })
    }

    fn is_match(&self, name: &str) -> bool {
        match self {
            Pattern::Exact(t) => name == t,
            Pattern::Prefix(t) => name.starts_with(t.as_str()),
            Pattern::Suffix(t) => name.ends_with(t.as_str()),
            Pattern::Contains(t) => name.contains(t.as_str()),
            Pattern::Regex(r) => r.is_match(name),
        }
    }
}

impl NameFilter {
    /// Compile; an error names the offending member (e.g. `include_regex[2]`).
    pub fn compile(spec: &NameFilterSpec) -> Result<NameFilter, (String, String)> {
        let compile_all = |field: &str, list: &[String]| {
            list.iter()
                .enumerate()
                .map(|(i, r)| {
                    if r.len() > 1024 {
                        return Err((
                            format!("{field}[{i}]"),
                            "regex longer than 1024 characters".to_string(),
                        ));
                    }
                    Pattern::new(r)
                        .map_err(|e| (format!("{field}[{i}]"), format!("invalid regex: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(NameFilter {
            include: spec.include.clone(),
            exclude: spec.exclude.clone(),
            include_regex: compile_all("include_regex", &spec.include_regex)?,
            exclude_regex: compile_all("exclude_regex", &spec.exclude_regex)?,
        })
    }

    /// No rule at all: every name passes.
    pub fn allows_all(&self) -> bool {
        self.include.is_empty()
            && self.exclude.is_empty()
            && self.include_regex.is_empty()
            && self.exclude_regex.is_empty()
    }

    pub fn allows(&self, name: &str) -> bool {
        if self.exclude.iter().any(|e| e == name)
            || self.exclude_regex.iter().any(|r| r.is_match(name))
        {
            return false;
        }
        if self.include.is_empty() && self.include_regex.is_empty() {
            return true;
        }
        self.include.iter().any(|e| e == name)
            || self.include_regex.iter().any(|r| r.is_match(name))
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_empty()
            && self.exclude.is_empty()
            && self.include_regex.is_empty()
            && self.exclude_regex.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn f(include: &[&str], exclude: &[&str], ir: &[&str], er: &[&str]) -> NameFilter {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        NameFilter::compile(&NameFilterSpec {
            include: s(include),
            exclude: s(exclude),
            include_regex: s(ir),
            exclude_regex: s(er),
        })
        .unwrap()
    }

    #[test]
    fn plain_patterns_match_as_the_regex_does() {
        let patterns = [
            "7$", "^get_", "^exact$", "mid", "", "^$", "^", "$", "a.b", "^a\\$", "x|y", "^gh__",
            "é$", "^[a-z]+$", "(?i)^GET", "__",
        ];
        let names = [
            "", "7", "x7", "77a", "get_x", "xget_", "exact", "exact2", "amid", "a.b", "axb", "a$",
            "x", "y", "gh__list", "café", "GET_it", "a__b",
        ];
        for p in patterns {
            let fast = Pattern::new(p).unwrap();
            let re = Regex::new(p).unwrap();
            for n in names {
                assert_eq!(fast.is_match(n), re.is_match(n), "{p:?} on {n:?}");
            }
        }
        assert!(matches!(Pattern::new("7$").unwrap(), Pattern::Suffix(_)));
        assert!(matches!(Pattern::new("a.b").unwrap(), Pattern::Regex(_)));
        assert!(Pattern::new("(").is_err());
    }

    #[test]
    fn semantics() {
        let all = f(&[], &[], &[], &[]);
        assert!(all.allows("anything") && all.is_empty());
        let inc = f(&["a"], &[], &["^get_"], &[]);
        assert!(inc.allows("a") && inc.allows("get_x") && !inc.allows("b") && !inc.allows("xget_"));
        let exc = f(&[], &["danger"], &[], &["^admin_"]);
        assert!(!exc.allows("danger") && !exc.allows("admin_x") && exc.allows("ok"));
        let both = f(&["danger"], &["danger"], &[], &[]);
        assert!(!both.allows("danger"), "exclude wins");
        let search = f(&[], &[], &["issue"], &[]);
        assert!(
            search.allows("list_issues"),
            "regexes search, like MCPRoute"
        );
    }

    #[test]
    fn bad_regex_is_named() {
        let e = NameFilter::compile(&NameFilterSpec {
            exclude_regex: vec!["ok".into(), "(".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.0, "exclude_regex[1]");
    }
}
