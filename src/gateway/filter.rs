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
    include_regex: Vec<Regex>,
    exclude_regex: Vec<Regex>,
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
                    Regex::new(r)
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
