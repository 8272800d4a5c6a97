//! Authorization: one decision, `authorize(caller, access)`, for every MCP
//! resource, in every protocol era. The same decision filters every list and
//! guards every call, so a list and a call cannot disagree.
//!
//! A policy is an ordered list of rules; the first rule that matches decides
//! (`allow` or `deny`), else the default (`deny` once a policy exists). A rule
//! matches when its target covers the resource, the caller's token has its
//! scopes and claims, and its CEL condition (if any) is true. Targets name
//! what they cover per kind and per backend, by the backend's own names:
//! tools and prompts by exact name or whole-name regex, resources by URI
//! prefix or URI template, tasks by backend. Nothing is implied across kinds,
//! and regexes are only ever matched against names. A rule without a target
//! covers everything.
//!
//! Lists ask "could some call of this be allowed?": the arguments are not
//! known yet, so a CEL conjunct that reads them counts as possibly true.
//! Without such conditions a listed item is exactly a callable one.

use super::auth::Principal;
use super::cel::{self, Tri};
use regex_lite::Regex;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

// ----- configuration (the plugin config's `authorization` member) ------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// When no rule matches (default `deny`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Action>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Default `allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    #[serde(default, skip_serializing_if = "RawWhen::is_empty")]
    pub when: RawWhen,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cel: Option<String>,
    /// What the rule covers; absent = everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RawTarget>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawWhen {
    /// Every one of these scopes (`scope` or `scp` claim).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "RawClaims::is_empty")]
    pub claims: RawClaims,
}

impl RawWhen {
    fn is_empty(&self) -> bool {
        self.scopes.is_empty() && self.claims.is_empty()
    }
}

/// `{"claim.path": value | [values]}`, or Envoy AI Gateway's typed list.
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawClaims {
    Map(Map<String, Value>),
    List(Vec<RawClaim>),
}

impl Default for RawClaims {
    fn default() -> Self {
        RawClaims::Map(Map::new())
    }
}

impl RawClaims {
    fn is_empty(&self) -> bool {
        match self {
            RawClaims::Map(m) => m.is_empty(),
            RawClaims::List(l) => l.is_empty(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaim {
    /// Dot path into the claims (`org.departments`).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_type: Option<ClaimType>,
    pub values: Vec<Value>,
}

/// `String`: the claim is a string equal to one of the values.
/// `StringArray`: a list containing one of them (or such a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ClaimType {
    String,
    StringArray,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Whole backends (`"*"`: all): every tool, prompt, resource, template
    /// and task of theirs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<RawName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<RawName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<RawUri>,
    /// Backends whose tasks (`tasks/get`, `result`, `cancel`, `list`) are covered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
}

/// A tool or prompt of `backend`: `name` exactly, or `regex` over the whole name.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawName {
    pub backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// Resources of `backend`: URIs starting with `prefix`, or matching the
/// RFC 6570 `template` (which also covers the template itself).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUri {
    pub backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

// ----- the typed resource and the request for it -----------------------------

/// What a resource is, by its backend's own name or URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    Tool(&'a str),
    Prompt(&'a str),
    Resource(&'a str),
    ResourceTemplate(&'a str),
    Task,
}

/// A resource of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource<'a> {
    pub backend: &'a str,
    pub kind: Kind<'a>,
}

impl<'a> Resource<'a> {
    pub fn tool(backend: &'a str, name: &'a str) -> Self {
        Resource {
            backend,
            kind: Kind::Tool(name),
        }
    }
    pub fn prompt(backend: &'a str, name: &'a str) -> Self {
        Resource {
            backend,
            kind: Kind::Prompt(name),
        }
    }
    pub fn uri(backend: &'a str, uri: &'a str) -> Self {
        Resource {
            backend,
            kind: Kind::Resource(uri),
        }
    }
    pub fn template(backend: &'a str, uri_template: &'a str) -> Self {
        Resource {
            backend,
            kind: Kind::ResourceTemplate(uri_template),
        }
    }
    pub fn task(backend: &'a str) -> Self {
        Resource {
            backend,
            kind: Kind::Task,
        }
    }

    /// The method that uses it (what a list asks about).
    pub fn use_method(&self) -> &'static str {
        match self.kind {
            Kind::Tool(_) => "tools/call",
            Kind::Prompt(_) => "prompts/get",
            Kind::Resource(_) => "resources/read",
            Kind::ResourceTemplate(_) => "completion/complete",
            Kind::Task => "tasks/get",
        }
    }

    /// How the audit log and messages name it.
    pub fn label(&self) -> &'a str {
        match self.kind {
            Kind::Tool(n) | Kind::Prompt(n) | Kind::Resource(n) | Kind::ResourceTemplate(n) => n,
            Kind::Task => "",
        }
    }

    pub fn kind_label(&self) -> &'static str {
        match self.kind {
            Kind::Tool(_) => "tool",
            Kind::Prompt(_) => "prompt",
            Kind::Resource(_) => "resource",
            Kind::ResourceTemplate(_) => "resource template",
            Kind::Task => "task",
        }
    }
}

/// Who asks, as the request and the verified token say.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    pub principal: Option<&'a Principal>,
    pub http_method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    /// Request headers (names lower-case), for CEL.
    pub headers: &'a [(String, String)],
}

/// One use of a resource.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub resource: Resource<'a>,
    /// The MCP method (`tools/call`, `resources/subscribe`, ...).
    pub method: &'a str,
    /// The call's `params`; `None` when there are none.
    pub params: Option<&'a RawValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `rule`: index of the deciding rule; `None` = the default.
    Allow { rule: Option<usize> },
    Deny {
        rule: Option<usize>,
        /// Scopes that, added to the token's, would make an allow rule match.
        step_up: Option<Vec<String>>,
    },
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    pub fn rule(&self) -> Option<usize> {
        match self {
            Decision::Allow { rule } | Decision::Deny { rule, .. } => *rule,
        }
    }
}

// ----- compiled ------------------------------------------------------------------

#[derive(Debug)]
enum NameMatch {
    Exact(String),
    Regex(Regex),
}

impl NameMatch {
    fn is_match(&self, name: &str) -> bool {
        match self {
            NameMatch::Exact(n) => n == name,
            NameMatch::Regex(r) => r.is_match(name),
        }
    }
}

#[derive(Debug)]
enum UriMatch {
    Prefix(String),
    Template { text: String, re: Regex },
}

#[derive(Debug, Default)]
struct Target {
    all: bool,
    backends: Vec<String>,
    tools: Vec<(String, NameMatch)>,
    prompts: Vec<(String, NameMatch)>,
    resources: Vec<(String, UriMatch)>,
    tasks: Vec<String>,
}

impl Target {
    fn covers(&self, r: &Resource<'_>) -> bool {
        if self.all || self.backends.iter().any(|b| b == r.backend) {
            return true;
        }
        let mine = |b: &String| b == r.backend;
        match r.kind {
            Kind::Tool(n) => self.tools.iter().any(|(b, m)| mine(b) && m.is_match(n)),
            Kind::Prompt(n) => self.prompts.iter().any(|(b, m)| mine(b) && m.is_match(n)),
            Kind::Resource(uri) => self.resources.iter().any(|(b, m)| {
                mine(b)
                    && match m {
                        UriMatch::Prefix(p) => uri.starts_with(p.as_str()),
                        UriMatch::Template { re, .. } => re.is_match(uri),
                    }
            }),
            // A template is covered when every URI it expands to is.
            Kind::ResourceTemplate(t) => self.resources.iter().any(|(b, m)| {
                mine(b)
                    && match m {
                        UriMatch::Prefix(p) => literal_prefix(t).starts_with(p.as_str()),
                        UriMatch::Template { text, .. } => text == t,
                    }
            }),
            Kind::Task => self.tasks.iter().any(mine),
        }
    }
}

#[derive(Debug)]
struct Claim {
    path: Vec<String>,
    ty: Option<ClaimType>,
    values: Vec<Value>,
}

impl Claim {
    fn holds(&self, claims: &Map<String, Value>) -> bool {
        let mut cur: Option<&Value> = None;
        for (i, part) in self.path.iter().enumerate() {
            cur = if i == 0 {
                claims.get(part)
            } else {
                cur.and_then(|c| c.get(part))
            };
        }
        let Some(v) = cur else { return false };
        match (self.ty, v) {
            (Some(ClaimType::String), Value::String(_)) => self.values.contains(v),
            (Some(ClaimType::String), _) => false,
            (_, Value::Array(items)) => items.iter().any(|i| self.values.contains(i)),
            (Some(ClaimType::StringArray), Value::String(_)) => self.values.contains(v),
            (Some(ClaimType::StringArray), _) => false,
            (None, _) => self.values.contains(v),
        }
    }
}

#[derive(Debug)]
struct Rule {
    name: String,
    allow: bool,
    scopes: Vec<String>,
    claims: Vec<Claim>,
    cel: Option<cel::Expression>,
    target: Target,
}

/// The compiled `authorization` member.
#[derive(Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    default_allow: bool,
    env: Option<cel::Env>,
    /// Some condition reads the call's `params` (so calls must parse them).
    pub reads_params: bool,
}

/// The text of a URI template before its first expression.
fn literal_prefix(t: &str) -> &str {
    t.split('{').next().unwrap_or("")
}

/// RFC 6570 template -> whole-URI regex.
fn template_regex(t: &str) -> Result<Regex, String> {
    let mut re = String::from("^");
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        re.push_str(&regex_lite::escape(rest.get(..open).unwrap_or("")));
        let after = rest.get(open + 1..).unwrap_or("");
        let close = after
            .find('}')
            .ok_or_else(|| format!("template {t:?} has an unclosed '{{'"))?;
        let expr = after.get(..close).unwrap_or("");
        let var = match expr.chars().next() {
            Some('+') | Some('#') => ".*",
            Some('/') => "(?:/[^/?#]*)*",
            Some('.') => "(?:\\.[^/?#.]*)*",
            Some('?') | Some('&') => "(?:[?&][^#]*)?",
            Some(';') => "(?:;[^/?#]*)*",
            Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '%' => "[^/?#]*",
            _ => {
                return Err(format!(
                    "template {t:?} has an invalid expression {{{expr}}}"
                ))
            }
        };
        re.push_str(var);
        rest = after.get(close + 1..).unwrap_or("");
    }
    re.push_str(&regex_lite::escape(rest));
    re.push('$');
    Regex::new(&re).map_err(|e| format!("template {t:?}: {e}"))
}

/// Compile; errors name the field (`rules[2].target.tools[0].regex`) and
/// the fix. `backends` are the configured backend names.
pub fn compile(raw: &RawPolicy, backends: &[&str]) -> Result<Policy, (String, String)> {
    let mut rules = Vec::with_capacity(raw.rules.len());
    let mut cel_sources: Vec<(String, &str)> = Vec::new();
    let mut cel_of: Vec<Option<usize>> = Vec::new();
    for (i, r) in raw.rules.iter().enumerate() {
        let f = |m: &str| format!("authorization.rules[{i}].{m}");
        let known = |field: String, b: &str| -> Result<String, (String, String)> {
            if backends.contains(&b) {
                Ok(b.to_string())
            } else {
                Err((
                    field,
                    format!(
                        "\"{b}\" is not a backend of this gateway (backends: {})",
                        backends.join(", ")
                    ),
                ))
            }
        };
        let mut claims = Vec::new();
        let mut add_claim = |field: String,
                             name: &str,
                             ty: Option<ClaimType>,
                             values: Vec<Value>|
         -> Result<(), (String, String)> {
            if name.is_empty() || name.split('.').any(str::is_empty) {
                return Err((
                    field,
                    "a claim name is a dot path like \"org.departments\"".into(),
                ));
            }
            if name == "scope" || name == "scp" {
                return Err((
                    field,
                    "scopes are matched with `scopes`, not as a claim".into(),
                ));
            }
            if values.is_empty()
                || values
                    .iter()
                    .any(|v| !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)))
            {
                return Err((
                    field,
                    "needs one or more values (strings, numbers or booleans)".into(),
                ));
            }
            claims.push(Claim {
                path: name.split('.').map(str::to_string).collect(),
                ty,
                values,
            });
            Ok(())
        };
        match &r.when.claims {
            RawClaims::Map(m) => {
                for (k, v) in m {
                    let values = match v {
                        Value::Array(a) => a.clone(),
                        other => vec![other.clone()],
                    };
                    add_claim(f(&format!("when.claims.{k}")), k, None, values)?;
                }
            }
            RawClaims::List(l) => {
                for (j, c) in l.iter().enumerate() {
                    add_claim(
                        f(&format!("when.claims[{j}]")),
                        &c.name,
                        c.value_type,
                        c.values.clone(),
                    )?;
                }
            }
        }
        let target = match &r.target {
            None => Target {
                all: true,
                ..Default::default()
            },
            Some(t) => {
                let mut out = Target::default();
                for (j, b) in t.backends.iter().enumerate() {
                    if b == "*" {
                        out.all = true;
                    } else {
                        out.backends
                            .push(known(f(&format!("target.backends[{j}]")), b)?);
                    }
                }
                let names = |list: &[RawName], what: &str| {
                    let mut v = Vec::new();
                    for (j, n) in list.iter().enumerate() {
                        let at = f(&format!("target.{what}[{j}]"));
                        let b = known(format!("{at}.backend"), &n.backend)?;
                        let m = match (&n.name, &n.regex) {
                            (Some(x), None) if !x.is_empty() => NameMatch::Exact(x.clone()),
                            (None, Some(re)) => {
                                // Whole-name match: `get_.*` never matches `forget_x`.
                                let anchored = format!("^(?:{re})$");
                                NameMatch::Regex(Regex::new(&anchored).map_err(|e| {
                                    (format!("{at}.regex"), format!("invalid regex: {e}"))
                                })?)
                            }
                            _ => {
                                return Err((
                                    at,
                                    "set exactly one of `name` or `regex` (the backend's own name, without prefix)"
                                        .to_string(),
                                ))
                            }
                        };
                        v.push((b, m));
                    }
                    Ok::<_, (String, String)>(v)
                };
                out.tools = names(&t.tools, "tools")?;
                out.prompts = names(&t.prompts, "prompts")?;
                for (j, u) in t.resources.iter().enumerate() {
                    let at = f(&format!("target.resources[{j}]"));
                    let b = known(format!("{at}.backend"), &u.backend)?;
                    let m = match (&u.prefix, &u.template) {
                        (Some(p), None) => UriMatch::Prefix(p.clone()),
                        (None, Some(t)) => UriMatch::Template {
                            re: template_regex(t).map_err(|e| (format!("{at}.template"), e))?,
                            text: t.clone(),
                        },
                        _ => return Err((
                            at,
                            "set exactly one of `prefix` or `template` (the backend's own URIs)"
                                .into(),
                        )),
                    };
                    out.resources.push((b, m));
                }
                for (j, b) in t.tasks.iter().enumerate() {
                    out.tasks.push(known(f(&format!("target.tasks[{j}]")), b)?);
                }
                if !out.all
                    && out.backends.is_empty()
                    && out.tools.is_empty()
                    && out.prompts.is_empty()
                    && out.resources.is_empty()
                    && out.tasks.is_empty()
                {
                    return Err((
                        f("target"),
                        "covers nothing; name backends, tools, prompts, resources or tasks, or leave `target` out to cover everything".into(),
                    ));
                }
                out
            }
        };
        let name = match &r.name {
            Some(n) if !n.trim().is_empty() => n.clone(),
            _ => format!("rules[{i}]"),
        };
        if let Some(src) = &r.cel {
            cel_of.push(Some(cel_sources.len()));
            cel_sources.push((f("cel"), src.as_str()));
        } else {
            cel_of.push(None);
        }
        rules.push(Rule {
            name,
            allow: r.action.unwrap_or(Action::Allow) == Action::Allow,
            scopes: r.when.scopes.clone(),
            claims,
            cel: None,
            target,
        });
    }
    let mut env = None;
    let mut reads_params = false;
    if !cel_sources.is_empty() {
        let (e, mut exprs) = cel::Env::compile(&cel_sources)?;
        reads_params = exprs.iter().any(cel::Expression::reads_params);
        // Hand each rule its expression (in order).
        exprs.reverse();
        for (rule, idx) in rules.iter_mut().zip(&cel_of) {
            if idx.is_some() {
                rule.cel = exprs.pop();
            }
        }
        env = Some(e);
    }
    Ok(Policy {
        rules,
        default_allow: raw.default.unwrap_or(Action::Deny) == Action::Allow,
        env,
        reads_params,
    })
}

/// The CEL `request` of one decision, built only when a rule needs it.
struct CelRequest<'c> {
    caller: &'c Caller<'c>,
    base: Option<Vec<(&'static str, ::cel::Value)>>,
}

impl CelRequest<'_> {
    fn value(&mut self, access: &Access<'_>, params: Option<Option<::cel::Value>>) -> ::cel::Value {
        let caller = self.caller;
        let base = self.base.get_or_insert_with(|| {
            let mut first: Vec<(&str, ::cel::Value)> = Vec::new();
            let mut all: Vec<(&str, Vec<::cel::Value>)> = Vec::new();
            for (k, v) in caller.headers {
                if k.starts_with(':') {
                    continue;
                }
                match all.iter_mut().find(|(n, _)| n == k) {
                    Some((_, vs)) => vs.push(cel::string(v)),
                    None => {
                        first.push((k.as_str(), cel::string(v)));
                        all.push((k.as_str(), vec![cel::string(v)]));
                    }
                }
            }
            let all = cel::map(
                all.into_iter()
                    .map(|(k, v)| (k, ::cel::Value::List(std::sync::Arc::new(v)))),
            );
            let (claims, scopes) = match caller.principal {
                Some(p) => (
                    cel::map(
                        p.claims
                            .iter()
                            .filter(|(k, _)| k.as_str() != "scope" && k.as_str() != "scp")
                            .map(|(k, v)| (k.as_str(), cel::from_json(v))),
                    ),
                    ::cel::Value::List(std::sync::Arc::new(
                        p.scopes.iter().map(|s| cel::string(s)).collect(),
                    )),
                ),
                None => (
                    cel::map(std::iter::empty()),
                    ::cel::Value::List(std::sync::Arc::new(Vec::new())),
                ),
            };
            vec![
                ("method", cel::string(caller.http_method)),
                ("path", cel::string(caller.path)),
                ("host", cel::string(caller.host)),
                ("headers", cel::map(first)),
                ("headers_all", all),
                (
                    "auth",
                    cel::map([("jwt", cel::map([("claims", claims), ("scopes", scopes)]))]),
                ),
            ]
        });
        let r = access.resource;
        let (tool, prompt, uri) = match r.kind {
            Kind::Tool(n) => (n, "", ""),
            Kind::Prompt(n) => ("", n, ""),
            Kind::Resource(u) | Kind::ResourceTemplate(u) => ("", "", u),
            Kind::Task => ("", "", ""),
        };
        let mut mcp = vec![
            ("method", cel::string(access.method)),
            ("backend", cel::string(r.backend)),
            ("tool", cel::string(tool)),
            ("prompt", cel::string(prompt)),
            ("uri", cel::string(uri)),
        ];
        // Unknown params (lists) are left out: conditions on them are not evaluated.
        if let Some(p) = params {
            mcp.push(("params", p.unwrap_or(::cel::Value::Null)));
        }
        let mut entries: Vec<(&str, ::cel::Value)> =
            base.iter().map(|(k, v)| (*k, v.clone())).collect();
        entries.push(("mcp", cel::map(mcp)));
        cel::map(entries)
    }
}

impl Policy {
    pub fn rule_name(&self, i: Option<usize>) -> &str {
        match i.and_then(|i| self.rules.get(i)) {
            Some(r) => &r.name,
            None => "default",
        }
    }

    /// The token claims the rules read (first path segment).
    pub fn claim_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.rules {
            let names = r
                .claims
                .iter()
                .filter_map(|c| c.path.first().cloned())
                .chain(r.cel.iter().flat_map(cel::Expression::claim_names));
            for n in names {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        out
    }

    /// Whether any rule has a CEL condition (so requests keep their headers).
    pub fn uses_cel(&self) -> bool {
        self.env.is_some()
    }

    fn source_matches(rule: &Rule, p: Option<&Principal>) -> bool {
        if rule.claims.is_empty() {
            return true;
        }
        p.is_some_and(|p| rule.claims.iter().all(|c| c.holds(&p.claims)))
    }

    fn scopes_held(rule: &Rule, p: Option<&Principal>) -> bool {
        rule.scopes.is_empty()
            || p.is_some_and(|p| rule.scopes.iter().all(|s| p.scopes.contains(s)))
    }

    /// The decision for one call (the arguments are known).
    pub fn authorize(&self, caller: &Caller<'_>, access: &Access<'_>) -> Decision {
        let mut req = CelRequest { caller, base: None };
        let mut params: Option<Option<::cel::Value>> = None;
        let mut step_up: Option<Vec<String>> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.target.covers(&access.resource)
                || !Self::source_matches(rule, caller.principal)
            {
                continue;
            }
            if let (Some(e), Some(env)) = (&rule.cel, &self.env) {
                let p = params.get_or_insert_with(|| {
                    access
                        .params
                        .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
                        .map(|v| cel::from_json(&v))
                });
                let request = req.value(access, Some(p.clone()));
                if env.eval(e, &request) != Ok(true) {
                    continue;
                }
            }
            if !Self::scopes_held(rule, caller.principal) {
                if rule.allow {
                    let held = caller.principal.map(|p| p.scopes.as_slice()).unwrap_or(&[]);
                    let missing: Vec<String> = rule
                        .scopes
                        .iter()
                        .filter(|s| !held.contains(s))
                        .cloned()
                        .collect();
                    if step_up.as_ref().is_none_or(|s| missing.len() < s.len()) {
                        step_up = Some(missing);
                    }
                }
                continue;
            }
            return if rule.allow {
                Decision::Allow { rule: Some(i) }
            } else {
                Decision::Deny {
                    rule: Some(i),
                    step_up: None,
                }
            };
        }
        if self.default_allow {
            Decision::Allow { rule: None }
        } else {
            Decision::Deny {
                rule: None,
                step_up,
            }
        }
    }

    /// Whether some use of `resource` could be allowed: the list filter.
    pub fn may_use(&self, caller: &Caller<'_>, resource: Resource<'_>) -> bool {
        let access = Access {
            resource,
            method: resource.use_method(),
            params: None,
        };
        let mut req = CelRequest { caller, base: None };
        for rule in &self.rules {
            if !rule.target.covers(&resource)
                || !Self::source_matches(rule, caller.principal)
                || !Self::scopes_held(rule, caller.principal)
            {
                continue;
            }
            let m = match (&rule.cel, &self.env) {
                (Some(e), Some(env)) => env.eval_for_list(e, &req.value(&access, None)),
                _ => Tri::Yes,
            };
            match m {
                Tri::No => continue,
                Tri::Yes => return rule.allow,
                // Some calls match this rule, the others fall through.
                Tri::Maybe if rule.allow => return true,
                Tri::Maybe => continue,
            }
        }
        self.default_allow
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
