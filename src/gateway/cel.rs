//! CEL conditions of authorization rules (Envoy AI Gateway's `cel` field):
//! compiled once at configure time, evaluated against a `request` built from
//! the HTTP request, the verified token and the MCP call.
//!
//! The parser is `cel`'s hand-written Pratt parser: its default ANTLR
//! parser would double the size of the filter. `matches()` uses
//! `regex-lite` (already in the filter) instead of `regex`; patterns written
//! as literals are compiled at configure time, so a bad one is a config
//! error and evaluation never compiles.
//!
//! Lists ask whether *some* call could be allowed, before the arguments
//! exist: a conjunct of the top-level `&&` chain that reads
//! `request.mcp.params` is then unknown, the others are evaluated exactly.

use cel::common::ast::{operators, EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::extractors::This;
use cel::objects::{Key, Map as CelMap};
use cel::{Context, ExecutionError, Value};
use regex_lite::Regex;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;

/// Longest accepted expression (Envoy AI Gateway's `MaxLength`).
pub const MAX_LEN: usize = 4096;

/// Three-valued outcome of a condition evaluated for a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tri {
    Yes,
    No,
    /// Depends on the call's arguments.
    Maybe,
}

/// A compiled expression.
#[derive(Debug)]
pub struct Expression {
    /// The whole expression, for calls.
    whole: IdedExpr,
    /// Its top-level conjuncts that do not read `request.mcp.params`, for
    /// lists; `reads_params` says whether any conjunct was left out.
    param_free: Vec<IdedExpr>,
    reads_params: bool,
}

/// The evaluation environment: the standard library plus `matches`.
pub struct Env {
    root: Context<'static, 'static>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cel::Env")
    }
}

/// Compiled `matches()` patterns by their source.
type Patterns = Arc<HashMap<String, Regex>>;

impl Env {
    /// Compile `sources` (each with the name used in errors) into
    /// expressions sharing one environment.
    pub fn compile(sources: &[(String, &str)]) -> Result<(Env, Vec<Expression>), (String, String)> {
        let mut patterns: HashMap<String, Regex> = HashMap::new();
        let mut out = Vec::with_capacity(sources.len());
        for (name, src) in sources {
            let e = compile_one(src).map_err(|p| (name.clone(), p))?;
            collect_patterns(&e.whole, &mut patterns).map_err(|p| (name.clone(), p))?;
            out.push(e);
        }
        let patterns: Patterns = Arc::new(patterns);
        let mut root = Context::default();
        root.add_function(
            "matches",
            move |This(this): This<Arc<String>>, re: Arc<String>| -> Result<bool, ExecutionError> {
                match patterns.get(re.as_str()) {
                    Some(r) => Ok(r.is_match(&this)),
                    // Only a pattern computed at run time gets here.
                    None => Regex::new(&re)
                        .map(|r| r.is_match(&this))
                        .map_err(|e| ExecutionError::function_error("matches", e)),
                }
            },
        )
        .map_err(|e| (String::new(), e.to_string()))?;
        Ok((Env { root }, out))
    }

    /// Evaluate for a call: `Ok(bool)`, or the evaluation error (a rule
    /// whose condition fails to evaluate does not match).
    pub fn eval(&self, e: &Expression, request: &Value) -> Result<bool, String> {
        eval_expr(&self.root, &e.whole, request)
    }

    /// Evaluate for a list (arguments unknown).
    pub fn eval_for_list(&self, e: &Expression, request: &Value) -> Tri {
        for c in &e.param_free {
            if eval_expr(&self.root, c, request) != Ok(true) {
                return Tri::No;
            }
        }
        if e.reads_params {
            Tri::Maybe
        } else {
            Tri::Yes
        }
    }
}

impl Expression {
    pub fn reads_params(&self) -> bool {
        self.reads_params
    }

    /// Claims the expression names (`...claims.groups`, `...claims["groups"]`),
    /// which must be read from the token.
    pub fn claim_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        let is_claims = |e: &IdedExpr| matches!(&e.expr, Expr::Select(s) if s.field == "claims");
        walk(&self.whole, &mut |x| {
            match &x.expr {
                Expr::Select(s) if is_claims(&s.operand) => out.push(s.field.clone()),
                Expr::Call(c) if c.func_name == operators::INDEX => {
                    if let (Some(on), Some(Expr::Literal(LiteralValue::String(k)))) =
                        (c.args.first(), c.args.get(1).map(|a| &a.expr))
                    {
                        if is_claims(on) {
                            out.push(k.inner().to_string());
                        }
                    }
                }
                _ => {}
            }
            false
        });
        out
    }
}

fn eval_expr(
    root: &Context<'static, 'static>,
    e: &IdedExpr,
    request: &Value,
) -> Result<bool, String> {
    let mut ctx = root.new_inner_scope();
    ctx.add_variable_from_value("request", request.clone());
    match Value::resolve(e, &ctx) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!(
            "the expression is not a boolean but {:?}",
            other.type_of()
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn compile_one(src: &str) -> Result<Expression, String> {
    let src = src.trim();
    if src.is_empty() {
        return Err("is empty".into());
    }
    if src.len() > MAX_LEN {
        return Err(format!("is longer than {MAX_LEN} characters"));
    }
    let whole = cel::parser::PrattParser::new()
        .max_recursion_depth(64)
        .parse(src)
        .map_err(|e| format!("is not a valid CEL expression: {e}"))?;
    let mut conjuncts = Vec::new();
    split_and(&whole, &mut conjuncts);
    let total = conjuncts.len();
    let param_free: Vec<IdedExpr> = conjuncts
        .into_iter()
        .filter(|c| !reads_params(c))
        .cloned()
        .collect();
    Ok(Expression {
        reads_params: param_free.len() != total,
        param_free,
        whole,
    })
}

fn split_and<'e>(e: &'e IdedExpr, out: &mut Vec<&'e IdedExpr>) {
    match &e.expr {
        Expr::Call(c) if c.func_name == operators::LOGICAL_AND && c.target.is_none() => {
            for a in &c.args {
                split_and(a, out);
            }
        }
        _ => out.push(e),
    }
}

/// Every sub-expression, depth first.
fn walk(e: &IdedExpr, f: &mut dyn FnMut(&IdedExpr) -> bool) -> bool {
    if f(e) {
        return true;
    }
    let mut any = |x: &IdedExpr| walk(x, f);
    match &e.expr {
        Expr::Call(c) => c.target.iter().any(|t| any(t)) || c.args.iter().any(any),
        Expr::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .into_iter()
        .any(any),
        Expr::List(l) => l.elements.iter().any(any),
        Expr::Map(m) => m.entries.iter().any(|en| match &en.expr {
            EntryExpr::MapEntry(me) => any(&me.key) || any(&me.value),
            EntryExpr::StructField(sf) => any(&sf.value),
        }),
        Expr::Struct(s) => s.entries.iter().any(|en| match &en.expr {
            EntryExpr::MapEntry(me) => any(&me.key) || any(&me.value),
            EntryExpr::StructField(sf) => any(&sf.value),
        }),
        Expr::Select(s) => any(&s.operand),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => false,
    }
}

/// Whether `e` may read the call's parameters: a `params` field or key
/// anywhere (conservative: a false "yes" only makes a list longer).
fn reads_params(e: &IdedExpr) -> bool {
    walk(e, &mut |x| match &x.expr {
        Expr::Select(s) => s.field == "params",
        Expr::Literal(LiteralValue::String(s)) => s.inner() == "params",
        _ => false,
    })
}

/// Compile the literal patterns of `matches()` calls.
fn collect_patterns(e: &IdedExpr, out: &mut HashMap<String, Regex>) -> Result<(), String> {
    let mut err = None;
    walk(e, &mut |x| {
        if let Expr::Call(c) = &x.expr {
            if c.func_name == "matches" {
                if let Some(Expr::Literal(LiteralValue::String(p))) = c.args.last().map(|a| &a.expr)
                {
                    let p = p.inner().to_string();
                    if let std::collections::hash_map::Entry::Vacant(slot) = out.entry(p) {
                        match Regex::new(slot.key()) {
                            Ok(r) => {
                                slot.insert(r);
                            }
                            Err(e) => {
                                err =
                                    Some(format!("matches(): invalid regex {:?}: {e}", slot.key()));
                                return true;
                            }
                        }
                    }
                }
            }
        }
        false
    });
    err.map_or(Ok(()), Err)
}

/// JSON as a CEL value (objects become maps with string keys).
pub fn from_json(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(a) => Value::List(Arc::new(a.iter().map(from_json).collect())),
        Json::Object(o) => map(o.iter().map(|(k, v)| (k.as_str(), from_json(v)))),
    }
}

/// A CEL map with string keys.
pub fn map<'k>(entries: impl IntoIterator<Item = (&'k str, Value)>) -> Value {
    let m: HashMap<Key, Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k.to_string())), v))
        .collect();
    Value::Map(CelMap { map: Arc::new(m) })
}

pub fn string(s: &str) -> Value {
    Value::String(Arc::new(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn env(srcs: &[&str]) -> (Env, Vec<Expression>) {
        let named: Vec<(String, &str)> = srcs
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("rules[{i}].cel"), *s))
            .collect();
        Env::compile(&named).unwrap()
    }

    fn request(args: Json) -> Value {
        from_json(&json!({
            "method": "POST",
            "headers": {"x-tenant-id": "t-123"},
            "auth": {"jwt": {"claims": {"sub": "alice", "org": {"dept": ["eng"]}}, "scopes": ["echo"]}},
            "mcp": {"method": "tools/call", "backend": "b", "tool": "echo", "params": {"name": "echo", "arguments": args}}
        }))
    }

    #[test]
    fn evaluates_the_envoy_ai_gateway_examples() {
        let (e, x) = env(&[
            r#"request.mcp.params.arguments.text.matches("^Hello, .*!$") && request.headers["x-tenant-id"] == "t-123""#,
            r#"request.method == "POST""#,
            r#"request.mcp.tool in ["echo", "sum"]"#,
            r#""eng" in request.auth.jwt.claims.org.dept && "echo" in request.auth.jwt.scopes"#,
            r#"request.mcp.params.arguments.n > 3"#,
        ]);
        let hello = request(json!({"text": "Hello, world!", "n": 5}));
        let lower = request(json!({"text": "hello, world!", "n": 1}));
        for (i, c) in x.iter().take(4).enumerate() {
            assert_eq!(e.eval(c, &hello), Ok(true), "{i}");
        }
        assert_eq!(e.eval(&x[0], &lower), Ok(false));
        assert_eq!(e.eval(&x[4], &lower), Ok(false));
        // A missing argument is an evaluation error: the rule does not match.
        assert!(e.eval(&x[0], &request(json!({}))).is_err());
        // For lists: conditions on arguments are unknown, the rest exact.
        assert_eq!(e.eval_for_list(&x[0], &hello), Tri::Maybe);
        assert_eq!(e.eval_for_list(&x[1], &hello), Tri::Yes);
        let other_tenant =
            from_json(&json!({"method": "POST", "headers": {"x-tenant-id": "t-9"}, "mcp": {}}));
        assert_eq!(e.eval_for_list(&x[0], &other_tenant), Tri::No);
        assert!(x[0].reads_params() && !x[1].reads_params());
    }

    #[test]
    fn bad_expressions_are_config_errors_naming_the_rule() {
        fn named(s: &str) -> Vec<(String, &str)> {
            vec![("rules[3].cel".to_string(), s)]
        }
        for bad in ["request.mcp.tool ==", "", "'a'.matches('(')", "(((("] {
            let Err((name, why)) = Env::compile(&named(bad)) else {
                panic!("{bad:?} compiled")
            };
            assert_eq!(name, "rules[3].cel");
            assert!(!why.is_empty());
        }
        let long = "true && ".repeat(600) + "true";
        assert!(Env::compile(&named(&long)).is_err());
        // Not a boolean, or a type error: evaluation errors, never panics.
        let (e, x) = env(&[
            "1 + 1",
            "1 / 0 == 1",
            "request.nope.x == 1",
            "9223372036854775807 + 1 > 0",
        ]);
        for c in &x {
            assert!(e.eval(c, &request(json!({}))).is_err());
        }
    }
}
