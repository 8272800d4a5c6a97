use super::*;
use serde_json::json;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

const BACKENDS: [&str; 3] = ["github", "notgithub", "fs"];

fn policy(v: serde_json::Value) -> Policy {
    let raw: RawPolicy = serde_json::from_value(v).unwrap();
    compile(&raw, &BACKENDS).unwrap()
}

fn compile_err(v: serde_json::Value) -> (String, String) {
    let raw: RawPolicy = serde_json::from_value(v).unwrap();
    compile(&raw, &BACKENDS).unwrap_err()
}

fn principal(scopes: &[&str], claims: serde_json::Value) -> Principal {
    Principal {
        issuer: "https://auth.example.com".into(),
        subject: "alice".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        claims: match claims {
            Value::Object(m) => m,
            _ => Map::new(),
        },
    }
}

fn caller(p: &Principal) -> Caller<'_> {
    Caller {
        principal: Some(p),
        http_method: "POST",
        path: "/mcp",
        host: "mcp.example.com",
        headers: &[],
    }
}

/// The call decision with `args` as the tool arguments.
fn call(
    pol: &Policy,
    c: &Caller<'_>,
    r: Resource<'_>,
    args: Option<serde_json::Value>,
) -> Decision {
    let params = args.map(|a| {
        RawValue::from_string(json!({"name": r.label(), "arguments": a}).to_string()).unwrap()
    });
    pol.authorize(
        c,
        &Access {
            resource: r,
            method: r.use_method(),
            params: params.as_deref(),
        },
    )
}

fn allowed(pol: &Policy, c: &Caller<'_>, r: Resource<'_>) -> bool {
    call(pol, c, r, Some(json!({}))).allowed()
}

#[test]
fn every_kind_is_granted_only_by_its_own_target() {
    let pol = policy(json!({"rules": [
        {"name": "tools", "target": {"tools": [
            {"backend": "github", "name": "list_issues"},
            {"backend": "github", "regex": "get_.*"}]}},
        {"name": "prompts", "target": {"prompts": [{"backend": "github", "name": "triage"}]}},
        {"name": "files", "target": {"resources": [
            {"backend": "fs", "prefix": "file:///docs/"},
            {"backend": "fs", "template": "file:///notes/{day}.md"}]}},
        {"name": "tasks", "target": {"tasks": ["github"]}}
    ]}));
    let p = principal(&[], json!({}));
    let c = caller(&p);
    assert!(allowed(&pol, &c, Resource::tool("github", "list_issues")));
    assert!(allowed(&pol, &c, Resource::tool("github", "get_issue")));
    // Regexes match the whole name, only names of their backend.
    assert!(!allowed(&pol, &c, Resource::tool("github", "forget_issue")));
    assert!(!allowed(
        &pol,
        &c,
        Resource::tool("notgithub", "list_issues")
    ));
    assert!(!allowed(&pol, &c, Resource::tool("github", "create_issue")));
    assert!(allowed(&pol, &c, Resource::prompt("github", "triage")));
    assert!(!allowed(
        &pol,
        &c,
        Resource::prompt("github", "list_issues")
    ));
    assert!(!allowed(&pol, &c, Resource::prompt("github", "other")));
    assert!(allowed(&pol, &c, Resource::uri("fs", "file:///docs/a.md")));
    assert!(!allowed(
        &pol,
        &c,
        Resource::uri("fs", "file:///etc/passwd")
    ));
    assert!(allowed(
        &pol,
        &c,
        Resource::uri("fs", "file:///notes/monday.md")
    ));
    assert!(!allowed(
        &pol,
        &c,
        Resource::uri("fs", "file:///notes/a/b.md")
    ));
    // A template is covered when all its URIs are.
    assert!(allowed(
        &pol,
        &c,
        Resource::template("fs", "file:///docs/{name}")
    ));
    assert!(allowed(
        &pol,
        &c,
        Resource::template("fs", "file:///notes/{day}.md")
    ));
    assert!(!allowed(
        &pol,
        &c,
        Resource::template("fs", "file:///{path}")
    ));
    assert!(allowed(&pol, &c, Resource::task("github")));
    assert!(!allowed(&pol, &c, Resource::task("fs")));
    assert!(!allowed(
        &pol,
        &c,
        Resource::uri("github", "file:///docs/a.md")
    ));
}

/// Regressions of the over-grant the old rules had: prompt and resource
/// access used to be inferred from a tool rule's regex *text*.
#[test]
fn tool_rules_never_grant_prompts_or_resources() {
    let p = principal(&[], json!({}));
    let c = caller(&p);
    // `^notgithub__x` used to grant all of github's prompts and resources.
    let pol = policy(
        json!({"rules": [{"target": {"tools": [{"backend": "notgithub", "regex": "x.*"}]}}]}),
    );
    for r in [
        Resource::prompt("github", "p"),
        Resource::uri("github", "repo://x"),
        Resource::template("github", "repo://{x}"),
        Resource::prompt("notgithub", "x"),
        Resource::uri("notgithub", "x://y"),
        Resource::tool("github", "x1"),
    ] {
        assert!(!allowed(&pol, &c, r), "{r:?}");
        assert!(!pol.may_use(&c, r), "{r:?}");
    }
    assert!(allowed(&pol, &c, Resource::tool("notgithub", "x1")));
    // A grant of one tool grants nothing else of its backend.
    let pol = policy(
        json!({"rules": [{"target": {"tools": [{"backend": "github", "name": "list_issues"}]}}]}),
    );
    for r in [
        Resource::prompt("github", "list_issues"),
        Resource::uri("github", "list_issues"),
        Resource::task("github"),
    ] {
        assert!(!allowed(&pol, &c, r) && !pol.may_use(&c, r), "{r:?}");
    }
    // A regex that names two backends' prefixes is just a name pattern.
    let pol = policy(
        json!({"rules": [{"target": {"tools": [{"backend": "github", "regex": "(github|gitlab)__.*"}]}}]}),
    );
    assert!(!allowed(&pol, &c, Resource::tool("github", "list_issues")));
    assert!(allowed(&pol, &c, Resource::tool("github", "github__x")));
    // The old `allow` member is refused, not silently reinterpreted.
    assert!(serde_json::from_value::<RawPolicy>(
        json!({"rules": [{"allow": {"tools_regex": ["^github__"]}}]})
    )
    .is_err());
}

#[test]
fn first_match_decides_and_default_applies() {
    let pol = policy(json!({"default": "allow", "rules": [
        {"name": "no deletes", "action": "deny", "target": {"tools": [{"backend": "github", "regex": "delete_.*"}]}},
        {"name": "admins", "when": {"claims": {"groups": "admins"}}}
    ]}));
    let admin = principal(&[], json!({"groups": ["ops", "admins"]}));
    let d = call(
        &pol,
        &caller(&admin),
        Resource::tool("github", "delete_repo"),
        None,
    );
    assert_eq!(
        d,
        Decision::Deny {
            rule: Some(0),
            step_up: None
        }
    );
    assert_eq!(pol.rule_name(d.rule()), "no deletes");
    assert_eq!(
        call(&pol, &caller(&admin), Resource::tool("github", "x"), None),
        Decision::Allow { rule: Some(1) }
    );
    let user = principal(&[], json!({}));
    let d = call(&pol, &caller(&user), Resource::tool("fs", "read"), None);
    assert_eq!(d, Decision::Allow { rule: None });
    assert_eq!(pol.rule_name(d.rule()), "default");
    // An empty policy denies; without a principal no token rule matches.
    let empty = policy(json!({}));
    assert!(!allowed(&empty, &caller(&admin), Resource::tool("fs", "x")));
    let anon = Caller::default();
    assert!(!allowed(&pol, &anon, Resource::tool("github", "delete_x")));
    assert!(
        allowed(&pol, &anon, Resource::tool("github", "x")),
        "default allow"
    );
}

#[test]
fn claims_by_path_and_type() {
    let pol = policy(json!({"rules": [
        {"name": "typed", "when": {"scopes": ["sum"], "claims": [
            {"name": "tenant", "value_type": "String", "values": ["acme", "globex"]},
            {"name": "org.departments", "value_type": "StringArray", "values": ["engineering"]}]},
         "target": {"tools": [{"backend": "github", "name": "sum"}]}},
        {"name": "map", "when": {"claims": {"level": 3, "team": ["a", "b"]}}, "target": {"backends": ["fs"]}}
    ]}));
    let sum = Resource::tool("github", "sum");
    let ok = principal(
        &["sum"],
        json!({"tenant": "acme", "org": {"departments": ["hr", "engineering"]}}),
    );
    assert!(allowed(&pol, &caller(&ok), sum));
    let hr = principal(
        &["sum"],
        json!({"tenant": "acme", "org": {"departments": ["hr"]}}),
    );
    assert!(!allowed(&pol, &caller(&hr), sum));
    let list_tenant = principal(
        &["sum"],
        json!({"tenant": ["acme"], "org": {"departments": "engineering"}}),
    );
    assert!(
        !allowed(&pol, &caller(&list_tenant), sum),
        "String wants a string"
    );
    let single = principal(
        &["sum"],
        json!({"tenant": "acme", "org": {"departments": "engineering"}}),
    );
    assert!(
        allowed(&pol, &caller(&single), sum),
        "StringArray accepts a string"
    );
    let fsr = Resource::uri("fs", "file:///x");
    assert!(allowed(
        &pol,
        &caller(&principal(&[], json!({"level": 3, "team": "b"}))),
        fsr
    ));
    assert!(!allowed(
        &pol,
        &caller(&principal(&[], json!({"level": "3", "team": "b"}))),
        fsr
    ));
    // Config errors name the field.
    let e =
        compile_err(json!({"rules": [{"when": {"claims": [{"name": "scope", "values": ["x"]}]}}]}));
    assert_eq!(e.0, "authorization.rules[0].when.claims[0]");
    let e = compile_err(json!({"rules": [{"when": {"claims": {"a..b": "x"}}}]}));
    assert_eq!(e.0, "authorization.rules[0].when.claims.a..b");
}

#[test]
fn step_up_names_the_smallest_missing_scopes() {
    let pol = policy(json!({"rules": [
        {"when": {"scopes": ["repo", "issues:write", "admin"]}, "target": {"backends": ["github"]}},
        {"when": {"scopes": ["mcp", "issues:write"]}, "target": {"tools": [{"backend": "github", "name": "create_issue"}]}},
        {"action": "deny", "when": {"scopes": ["other"]}, "target": {"backends": ["github"]}}
    ]}));
    let p = principal(&["mcp"], json!({}));
    assert_eq!(
        call(
            &pol,
            &caller(&p),
            Resource::tool("github", "create_issue"),
            None
        ),
        Decision::Deny {
            rule: None,
            step_up: Some(vec!["issues:write".into()])
        }
    );
}

#[test]
fn config_errors_name_the_rule_and_field() {
    let cases = [
        (
            json!({"rules": [{"target": {"tools": [{"backend": "gitlab", "name": "x"}]}}]}),
            "authorization.rules[0].target.tools[0].backend",
        ),
        (
            json!({"rules": [{}, {"target": {"tools": [{"backend": "github", "regex": "("}]}}]}),
            "authorization.rules[1].target.tools[0].regex",
        ),
        (
            json!({"rules": [{"target": {"tools": [{"backend": "github"}]}}]}),
            "authorization.rules[0].target.tools[0]",
        ),
        (
            json!({"rules": [{"target": {"resources": [{"backend": "fs", "template": "x/{a"}]}}]}),
            "authorization.rules[0].target.resources[0].template",
        ),
        (
            json!({"rules": [{"target": {}}]}),
            "authorization.rules[0].target",
        ),
        (
            json!({"rules": [{"target": {"tasks": ["nope"]}}]}),
            "authorization.rules[0].target.tasks[0]",
        ),
        (
            json!({"rules": [{}, {}, {"cel": "request.mcp.tool =="}]}),
            "authorization.rules[2].cel",
        ),
        (
            json!({"rules": [{"cel": "request.mcp.tool.matches('[')"}]}),
            "authorization.rules[0].cel",
        ),
    ];
    for (v, field) in cases {
        let e = compile_err(v.clone());
        assert_eq!(e.0, field, "{v}: {e:?}");
    }
}

#[test]
fn argument_conditions_decide_calls_and_keep_tools_listed() {
    let pol = policy(json!({"rules": [
        {"name": "hello only", "target": {"tools": [{"backend": "github", "name": "echo"}]},
         "cel": "request.mcp.params.arguments.text.matches('^Hello, .*!$') && request.mcp.method == 'tools/call'"},
        {"name": "no big n", "action": "deny", "target": {"tools": [{"backend": "github", "name": "count"}]},
         "cel": "request.mcp.params.arguments.n > 100"},
        {"target": {"tools": [{"backend": "github", "name": "count"}]}},
        {"name": "prompt method", "target": {"backends": ["fs"]}, "cel": "request.mcp.method == 'prompts/get' && request.mcp.prompt == 'p' && request.mcp.tool == ''"}
    ]}));
    assert!(pol.reads_params);
    let p = principal(&[], json!({}));
    let c = caller(&p);
    let echo = Resource::tool("github", "echo");
    assert!(call(&pol, &c, echo, Some(json!({"text": "Hello, world!"}))).allowed());
    assert!(!call(&pol, &c, echo, Some(json!({"text": "hello, world!"}))).allowed());
    assert!(
        !call(&pol, &c, echo, None).allowed(),
        "no arguments: no match"
    );
    assert!(pol.may_use(&c, echo), "some call could be allowed");
    let count = Resource::tool("github", "count");
    assert!(call(&pol, &c, count, Some(json!({"n": 5}))).allowed());
    assert!(!call(&pol, &c, count, Some(json!({"n": 500}))).allowed());
    assert!(pol.may_use(&c, count));
    assert!(allowed(&pol, &c, Resource::prompt("fs", "p")));
    assert!(!allowed(&pol, &c, Resource::prompt("fs", "q")));
    assert!(!allowed(&pol, &c, Resource::uri("fs", "p")));
    assert!(
        pol.may_use(&c, Resource::prompt("fs", "p"))
            && !pol.may_use(&c, Resource::prompt("fs", "q"))
    );
}

#[test]
fn cel_sees_headers_and_tokens() {
    let pol = policy(json!({"rules": [
        {"cel": "request.headers['x-tenant-id'] == 't-123' && 'echo' in request.auth.jwt.scopes && request.auth.jwt.claims.sub == 'alice' && !has(request.auth.jwt.claims.scope)"}
    ]}));
    let p = principal(&["echo"], json!({"sub": "alice", "scope": "echo"}));
    let headers = vec![("x-tenant-id".to_string(), "t-123".to_string())];
    let mut c = caller(&p);
    assert!(!allowed(&pol, &c, Resource::tool("fs", "x")));
    c.headers = &headers;
    assert!(allowed(&pol, &c, Resource::tool("fs", "x")));
    assert!(pol.may_use(&c, Resource::tool("fs", "x")));
    assert_eq!(pol.claim_names(), ["sub", "scope"]);
}

// ----- the list/call property --------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

const SCOPES: [&str; 3] = ["a", "b", "c"];
const NAMES: [&str; 3] = ["x", "get_y", "z"];
const URIS: [&str; 3] = ["file:///docs/a", "file:///src/b", "repo://o/r"];
const TEMPLATES: [&str; 3] = ["file:///docs/{n}", "file:///{path}", "repo://{o}/{r}"];

fn random_rule(rng: &mut Rng, with_args: bool) -> serde_json::Value {
    let mut r = serde_json::Map::new();
    if rng.chance(25) {
        r.insert("action".into(), json!("deny"));
    }
    let scopes: Vec<&str> = SCOPES.iter().copied().filter(|_| rng.chance(30)).collect();
    let mut when = json!({"scopes": scopes});
    if rng.chance(30) {
        when["claims"] = json!({"team": *rng.pick(&["red", "blue"])});
    }
    r.insert("when".into(), when);
    if !rng.chance(15) {
        let mut t = serde_json::Map::new();
        let b = *rng.pick(&BACKENDS);
        match rng.below(6) {
            0 => {
                t.insert("backends".into(), json!([b]));
            }
            1 => {
                let m = if rng.chance(50) {
                    json!({"backend": b, "name": *rng.pick(&NAMES)})
                } else {
                    json!({"backend": b, "regex": *rng.pick(&["get_.*", "x|z", ".*"])})
                };
                t.insert("tools".into(), json!([m]));
            }
            2 => {
                t.insert(
                    "prompts".into(),
                    json!([{"backend": b, "name": *rng.pick(&NAMES)}]),
                );
            }
            3 => {
                let m = if rng.chance(50) {
                    json!({"backend": b, "prefix": *rng.pick(&["file:///docs/", "file:///", "repo://"])})
                } else {
                    json!({"backend": b, "template": *rng.pick(&TEMPLATES)})
                };
                t.insert("resources".into(), json!([m]));
            }
            4 => {
                t.insert("tasks".into(), json!([b]));
            }
            _ => {
                t.insert("backends".into(), json!(["*"]));
            }
        }
        r.insert("target".into(), Value::Object(t));
    }
    let cel = if with_args && rng.chance(40) {
        Some(format!(
            "request.mcp.params.arguments.n == {}",
            rng.below(3)
        ))
    } else if rng.chance(20) {
        Some(format!("request.mcp.backend != '{}'", rng.pick(&BACKENDS)))
    } else {
        None
    };
    if let Some(c) = cel {
        r.insert("cel".into(), json!(c));
    }
    Value::Object(r)
}

fn resources() -> Vec<Resource<'static>> {
    let mut out = Vec::new();
    for b in BACKENDS {
        for n in NAMES {
            out.push(Resource::tool(b, n));
            out.push(Resource::prompt(b, n));
        }
        for u in URIS {
            out.push(Resource::uri(b, u));
        }
        for t in TEMPLATES {
            out.push(Resource::template(b, t));
        }
        out.push(Resource::task(b));
    }
    out
}

/// Everything callable is listed; without argument conditions, everything
/// listed is callable.
#[test]
fn lists_and_calls_never_disagree() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let all = resources();
    for round in 0..300 {
        let with_args = round % 2 == 0;
        let n = 1 + rng.below(5);
        let rules: Vec<serde_json::Value> =
            (0..n).map(|_| random_rule(&mut rng, with_args)).collect();
        let default = if rng.chance(20) { "allow" } else { "deny" };
        let spec = json!({"default": default, "rules": rules});
        let pol = policy(spec.clone());
        for _ in 0..4 {
            let scopes: Vec<&str> = SCOPES.iter().copied().filter(|_| rng.chance(50)).collect();
            let claims = if rng.chance(50) {
                json!({"team": *rng.pick(&["red", "blue"])})
            } else {
                json!({})
            };
            let p = principal(&scopes, claims);
            let c = caller(&p);
            for r in &all {
                let listed = pol.may_use(&c, *r);
                let callable_with: Vec<bool> = (0..3)
                    .map(|n| call(&pol, &c, *r, Some(json!({"n": n}))).allowed())
                    .collect();
                let some_call = callable_with.iter().any(|a| *a);
                assert!(
                    !some_call || listed,
                    "callable but not listed: {r:?} for {scopes:?}\n{spec:#}"
                );
                if !pol.reads_params {
                    assert_eq!(
                        listed, some_call,
                        "listed but not callable: {r:?} for {scopes:?}\n{spec:#}"
                    );
                }
            }
        }
    }
}
