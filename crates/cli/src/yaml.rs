//! A tiny ordered YAML builder for the generated files (key order as
//! written, so the output reads like a hand-written config).

use serde_norway::{Mapping, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Y {
    Str(String),
    Int(i64),
    Bool(bool),
    Seq(Vec<Y>),
    Map(Vec<(String, Y)>),
}

pub fn s(v: impl AsRef<str>) -> Y {
    Y::Str(v.as_ref().to_string())
}

pub fn m(pairs: Vec<(&str, Y)>) -> Y {
    Y::Map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

pub fn seq(items: impl IntoIterator<Item = Y>) -> Y {
    Y::Seq(items.into_iter().collect())
}

impl Y {
    fn to_value(&self) -> Value {
        match self {
            Y::Str(x) => Value::String(x.clone()),
            Y::Int(i) => Value::Number((*i).into()),
            Y::Bool(b) => Value::Bool(*b),
            Y::Seq(items) => Value::Sequence(items.iter().map(Y::to_value).collect()),
            Y::Map(pairs) => {
                let mut map = Mapping::new();
                for (k, v) in pairs {
                    map.insert(Value::String(k.clone()), v.to_value());
                }
                Value::Mapping(map)
            }
        }
    }
}

pub fn to_string(y: &Y) -> String {
    serde_norway::to_string(&y.to_value()).unwrap_or_default()
}
