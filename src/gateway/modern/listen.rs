//! `subscriptions/listen` (2026-07-28): which backends a client's
//! notification filter needs, what the gateway can honour, and how the
//! frames of a backend's listen stream are rewritten for the client.
//!
//! A filter item (tools, prompts or resources list changes, or updates of a
//! resource URI) is served by the backends that advertise it (`listChanged`,
//! `resources.subscribe`; a URI by the backend its namespace names). The
//! proxy-wasm host cannot merge several upstream streams into one response,
//! so one listen stream follows one backend: the gateway honours the items
//! exactly one backend serves, from the backend that serves most of them,
//! and acknowledges only those (the client sees exactly what it will get).
//! Items several backends serve, or none, are left out of the
//! acknowledgement. With nothing to honour the gateway acknowledges an
//! empty filter and ends the subscription gracefully at once.
//!
//! A host that streams side calls (the dynamic module) merges them
//! (`fanin.rs`): every backend that serves an item is asked for the items it
//! serves ([`plan_each`]), its own acknowledgement is dropped, and the
//! gateway acknowledges once for all, when every backend stream has
//! answered, with what the opened ones were asked for.

use crate::protocol::jsonrpc::{raw_array, raw_str, RawObject};
use serde_json::{json, Map, Value};

/// A notification filter (`SubscriptionFilter`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub tools: bool,
    pub prompts: bool,
    pub resources: bool,
    /// `resourceSubscriptions`, as the client names them.
    pub uris: Vec<String>,
}

impl Filter {
    /// From `params.notifications` (required).
    pub fn parse(params: Option<&RawObject<'_>>) -> Result<Filter, String> {
        let n = params
            .and_then(|p| p.get("notifications"))
            .and_then(|n| RawObject::parse(n).ok())
            .ok_or("Invalid params: subscriptions/listen needs params.notifications (an object)")?;
        let flag = |k: &str| n.get(k).is_some_and(|v| v.get() == "true");
        let uris = match n.get("resourceSubscriptions") {
            None => Vec::new(),
            Some(v) => raw_array(v)
                .ok_or("Invalid params: resourceSubscriptions must be an array of URIs")?
                .into_iter()
                .map(|u| raw_str(u).map(|s| s.into_owned()))
                .collect::<Option<Vec<_>>>()
                .ok_or("Invalid params: resourceSubscriptions must be an array of URIs")?,
        };
        Ok(Filter {
            tools: flag("toolsListChanged"),
            prompts: flag("promptsListChanged"),
            resources: flag("resourcesListChanged"),
            uris,
        })
    }

    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        if self.tools {
            m.insert("toolsListChanged".into(), Value::Bool(true));
        }
        if self.prompts {
            m.insert("promptsListChanged".into(), Value::Bool(true));
        }
        if self.resources {
            m.insert("resourcesListChanged".into(), Value::Bool(true));
        }
        if !self.uris.is_empty() {
            m.insert("resourceSubscriptions".into(), json!(self.uris));
        }
        Value::Object(m)
    }

    pub fn is_empty(&self) -> bool {
        !self.tools && !self.prompts && !self.resources && self.uris.is_empty()
    }

    fn of_value(v: Option<&Value>) -> Filter {
        let flag = |k: &str| v.and_then(|v| v.get(k)).and_then(Value::as_bool) == Some(true);
        Filter {
            tools: flag("toolsListChanged"),
            prompts: flag("promptsListChanged"),
            resources: flag("resourcesListChanged"),
            uris: v
                .and_then(|v| v.get("resourceSubscriptions"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// What a backend can deliver on a listen stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Candidate {
    pub backend: usize,
    pub tools: bool,
    pub prompts: bool,
    pub resources: bool,
    pub subscribe: bool,
}

impl Candidate {
    pub fn of_capabilities(backend: usize, caps: &Map<String, Value>) -> Candidate {
        let flag =
            |cap: &str, f: &str| caps.get(cap).and_then(|c| c.get(f)) == Some(&Value::Bool(true));
        Candidate {
            backend,
            tools: flag("tools", "listChanged"),
            prompts: flag("prompts", "listChanged"),
            resources: flag("resources", "listChanged"),
            subscribe: flag("resources", "subscribe"),
        }
    }
}

/// The stream the gateway opens for a listen request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The backend to listen to; `None`: nothing can be honoured.
    pub backend: Option<usize>,
    /// What the client is told is honoured (its own URIs).
    pub honoured: Filter,
    /// What the backend is asked for (its own URIs).
    pub upstream: Filter,
}

/// Choose the backend and the honoured subset. `owner` maps a client URI to
/// its backend and that backend's own URI.
pub fn plan(
    filter: &Filter,
    candidates: &[Candidate],
    owner: impl Fn(&str) -> Option<(usize, String)>,
) -> Plan {
    // For each backend, the items only it serves.
    let sole = |pick: fn(&Candidate) -> bool| -> Option<usize> {
        match candidates
            .iter()
            .filter(|c| pick(c))
            .collect::<Vec<_>>()
            .as_slice()
        {
            [only] => Some(only.backend),
            _ => None,
        }
    };
    let tools = filter.tools.then(|| sole(|c| c.tools)).flatten();
    let prompts = filter.prompts.then(|| sole(|c| c.prompts)).flatten();
    let resources = filter.resources.then(|| sole(|c| c.resources)).flatten();
    let uris = subscribable_uris(filter, candidates, &owner);
    let mut best: Option<(usize, usize)> = None;
    for c in candidates {
        let b = c.backend;
        let score = [tools, prompts, resources]
            .iter()
            .filter(|t| **t == Some(b))
            .count()
            + uris.iter().filter(|(ub, _, _)| *ub == b).count();
        if score > 0 && best.is_none_or(|(_, s)| score > s) {
            best = Some((b, score));
        }
    }
    let Some((b, _)) = best else {
        return Plan::default();
    };
    let mine: Vec<&(usize, &String, String)> = uris.iter().filter(|(ub, _, _)| *ub == b).collect();
    let honoured = Filter {
        tools: tools == Some(b),
        prompts: prompts == Some(b),
        resources: resources == Some(b),
        uris: mine.iter().map(|(_, u, _)| (*u).clone()).collect(),
    };
    let upstream = Filter {
        uris: mine.iter().map(|(_, _, own)| own.clone()).collect(),
        ..honoured.clone()
    };
    Plan {
        backend: Some(b),
        honoured,
        upstream,
    }
}

/// The filter's URIs whose backend offers subscriptions: (backend, the
/// client's URI, the backend's own).
fn subscribable_uris<'f>(
    filter: &'f Filter,
    candidates: &[Candidate],
    owner: &impl Fn(&str) -> Option<(usize, String)>,
) -> Vec<(usize, &'f String, String)> {
    filter
        .uris
        .iter()
        .filter_map(|u| {
            let (b, own) = owner(u)?;
            candidates
                .iter()
                .any(|c| c.backend == b && c.subscribe)
                .then_some((b, u, own))
        })
        .collect()
}

/// One listen stream per backend that serves any item, for a host that
/// merges streams: each asked for the items it serves (an item several
/// backends serve is asked of each). Empty: nothing can be honoured.
pub fn plan_each(
    filter: &Filter,
    candidates: &[Candidate],
    owner: impl Fn(&str) -> Option<(usize, String)>,
) -> Vec<Plan> {
    let uris = subscribable_uris(filter, candidates, &owner);
    candidates
        .iter()
        .filter_map(|c| {
            let mine: Vec<&(usize, &String, String)> =
                uris.iter().filter(|(b, _, _)| *b == c.backend).collect();
            let honoured = Filter {
                tools: filter.tools && c.tools,
                prompts: filter.prompts && c.prompts,
                resources: filter.resources && c.resources,
                uris: mine.iter().map(|(_, u, _)| (*u).clone()).collect(),
            };
            if honoured.is_empty() {
                return None;
            }
            let upstream = Filter {
                uris: mine.iter().map(|(_, _, own)| own.clone()).collect(),
                ..honoured.clone()
            };
            Some(Plan {
                backend: Some(c.backend),
                honoured,
                upstream,
            })
        })
        .collect()
}

impl Filter {
    /// Everything `self` or `other` asks for (URIs once each).
    pub fn union(&self, other: &Filter) -> Filter {
        let mut uris = self.uris.clone();
        for u in &other.uris {
            if !uris.contains(u) {
                uris.push(u.clone());
            }
        }
        Filter {
            tools: self.tools || other.tools,
            prompts: self.prompts || other.prompts,
            resources: self.resources || other.resources,
            uris,
        }
    }
}

/// A listen stream's identity and promise, for rewriting its frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenCtx {
    /// The listen request's id (raw JSON): every frame's subscription id.
    pub id: String,
    pub honoured: Filter,
    /// One of several merged backend streams: its acknowledgement is
    /// dropped (the gateway acknowledges once for all).
    pub merged: bool,
}

impl ListenCtx {
    fn id_value(&self) -> Value {
        serde_json::from_str(&self.id).unwrap_or(Value::Null)
    }

    /// Rewrite a notification of the backend's listen stream: `None` drops
    /// it (a kind the client was not promised). `expose` maps the backend's
    /// URIs to the client's.
    pub fn notification(
        &self,
        method: &str,
        mut params: Value,
        expose: &dyn Fn(&str) -> String,
    ) -> Option<Value> {
        let h = &self.honoured;
        let keep = match method {
            "notifications/subscriptions/acknowledged" if self.merged => false,
            "notifications/subscriptions/acknowledged" => {
                let theirs = Filter::of_value(params.get("notifications"));
                let theirs_uris: Vec<String> = theirs.uris.iter().map(|u| expose(u)).collect();
                let agreed = Filter {
                    tools: h.tools && theirs.tools,
                    prompts: h.prompts && theirs.prompts,
                    resources: h.resources && theirs.resources,
                    uris: h
                        .uris
                        .iter()
                        .filter(|u| theirs_uris.contains(u))
                        .cloned()
                        .collect(),
                };
                if let Some(p) = params.as_object_mut() {
                    p.insert("notifications".into(), agreed.to_value());
                }
                true
            }
            "notifications/tools/list_changed" => h.tools,
            "notifications/prompts/list_changed" => h.prompts,
            "notifications/resources/list_changed" => h.resources,
            "notifications/resources/updated" => !h.uris.is_empty(),
            // Request-scoped kinds never belong on a listen stream.
            "notifications/message" | "notifications/progress" => false,
            _ => true,
        };
        if !keep {
            return None;
        }
        self.tag(&mut params);
        Some(params)
    }

    /// Put the subscription id in `_meta` of a params or result object.
    pub fn tag(&self, obj: &mut Value) {
        if !obj.is_object() {
            *obj = Value::Object(Map::new());
        }
        if let Some(o) = obj.as_object_mut() {
            let meta = o
                .entry("_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(m) = meta.as_object_mut() {
                m.insert(
                    crate::protocol::modern::meta::SUBSCRIPTION_ID.into(),
                    self.id_value(),
                );
            }
        }
    }

    /// The gateway's own acknowledgement of `honoured`.
    pub fn acknowledgement(&self, honoured: &Filter) -> String {
        let mut ack = json!({"notifications": honoured.to_value()});
        self.tag(&mut ack);
        json!({"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":ack})
            .to_string()
    }

    /// The gateway's own stream when nothing can be honoured: the
    /// acknowledgement (an empty filter), then the graceful end.
    pub fn local_stream(&self) -> (String, String) {
        let mut end = json!({"resultType": "complete"});
        self.tag(&mut end);
        (
            self.acknowledgement(&Filter::default()),
            format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{end}}}",
                self.id
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn filter(json: &str) -> Result<Filter, String> {
        let p = RawObject::parse_str(json).unwrap();
        Filter::parse(Some(&p))
    }

    fn owner(u: &str) -> Option<(usize, String)> {
        let (b, rest) = u.split_once('+')?;
        Some((if b == "a" { 0 } else { 1 }, rest.to_string()))
    }

    fn cand(backend: usize, tools: bool, prompts: bool, subscribe: bool) -> Candidate {
        Candidate {
            backend,
            tools,
            prompts,
            resources: false,
            subscribe,
        }
    }

    #[test]
    fn parse_and_write_filters() {
        let f = filter(r#"{"notifications":{"toolsListChanged":true,"promptsListChanged":false,"resourceSubscriptions":["a+x://1"]}}"#).unwrap();
        assert_eq!(
            f,
            Filter {
                tools: true,
                prompts: false,
                resources: false,
                uris: vec!["a+x://1".into()]
            }
        );
        assert_eq!(
            f.to_value(),
            json!({"toolsListChanged":true,"resourceSubscriptions":["a+x://1"]})
        );
        assert!(filter(r#"{}"#).is_err());
        assert!(filter(r#"{"notifications":{"resourceSubscriptions":[1]}}"#).is_err());
        assert!(filter(r#"{"notifications":{}}"#).unwrap().is_empty());
    }

    #[test]
    fn one_backend_serving_everything_is_followed() {
        let f = Filter {
            tools: true,
            prompts: true,
            resources: false,
            uris: vec!["a+x://1".into(), "b+y://2".into()],
        };
        let p = plan(
            &f,
            &[cand(0, true, true, true), cand(1, false, false, false)],
            owner,
        );
        assert_eq!(p.backend, Some(0));
        assert_eq!(
            p.honoured,
            Filter {
                tools: true,
                prompts: true,
                resources: false,
                uris: vec!["a+x://1".into()]
            }
        );
        assert_eq!(
            p.upstream.uris,
            vec!["x://1".to_string()],
            "the backend gets its own URI"
        );
    }

    #[test]
    fn items_several_backends_serve_are_not_honoured() {
        let f = Filter {
            tools: true,
            prompts: true,
            resources: false,
            uris: vec!["b+y://2".into()],
        };
        // Both serve tools; only b serves prompts and y://2.
        let p = plan(
            &f,
            &[cand(0, true, false, true), cand(1, true, true, true)],
            owner,
        );
        assert_eq!(p.backend, Some(1));
        assert_eq!(
            p.honoured,
            Filter {
                tools: false,
                prompts: true,
                resources: false,
                uris: vec!["b+y://2".into()]
            }
        );
        // Nothing honourable at all.
        let p = plan(
            &Filter {
                tools: true,
                ..Default::default()
            },
            &[cand(0, true, false, false), cand(1, true, false, false)],
            owner,
        );
        assert_eq!(p, Plan::default());
        let p = plan(
            &Filter {
                resources: true,
                ..Default::default()
            },
            &[cand(0, true, true, true)],
            owner,
        );
        assert_eq!(p.backend, None, "no backend sends resource list changes");
    }

    #[test]
    fn frames_are_tagged_filtered_and_mapped() {
        let ctx = ListenCtx {
            id: "\"L1\"".into(),
            honoured: Filter {
                tools: true,
                prompts: false,
                resources: false,
                uris: vec!["a+x://1".into()],
            },
            merged: false,
        };
        let expose = |u: &str| format!("a+{u}");
        let ack = ctx
            .notification(
                "notifications/subscriptions/acknowledged",
                json!({"notifications":{"toolsListChanged":true,"resourceSubscriptions":["x://1"]},"_meta":{"io.modelcontextprotocol/subscriptionId":7}}),
                &expose,
            )
            .unwrap();
        assert_eq!(
            ack["notifications"],
            json!({"toolsListChanged":true,"resourceSubscriptions":["a+x://1"]})
        );
        assert_eq!(ack["_meta"]["io.modelcontextprotocol/subscriptionId"], "L1");
        // The backend honoured less than asked: so does the gateway.
        let ack = ctx
            .notification(
                "notifications/subscriptions/acknowledged",
                json!({"notifications":{}}),
                &expose,
            )
            .unwrap();
        assert_eq!(ack["notifications"], json!({}));
        let tools = ctx
            .notification("notifications/tools/list_changed", json!(null), &expose)
            .unwrap();
        assert_eq!(
            tools["_meta"]["io.modelcontextprotocol/subscriptionId"],
            "L1"
        );
        assert!(ctx
            .notification("notifications/prompts/list_changed", json!({}), &expose)
            .is_none());
        assert!(ctx
            .notification("notifications/message", json!({}), &expose)
            .is_none());
        let (ack, end) = ctx.local_stream();
        let ack: Value = serde_json::from_str(&ack).unwrap();
        let end: Value = serde_json::from_str(&end).unwrap();
        assert_eq!(ack["params"]["notifications"], json!({}));
        assert_eq!(end["id"], "L1");
        assert_eq!(
            end["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
            "L1"
        );
        assert_eq!(end["result"]["resultType"], "complete");
        // Merged with other backends' streams: the gateway acknowledges.
        let merged = ListenCtx {
            merged: true,
            ..ctx.clone()
        };
        assert!(merged
            .notification(
                "notifications/subscriptions/acknowledged",
                json!({"notifications":{"toolsListChanged":true}}),
                &expose,
            )
            .is_none());
        let ack: Value = serde_json::from_str(&merged.acknowledgement(&ctx.honoured)).unwrap();
        assert_eq!(
            ack["params"]["notifications"],
            json!({"toolsListChanged":true,"resourceSubscriptions":["a+x://1"]})
        );
        assert_eq!(
            ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
            "L1"
        );
    }

    #[test]
    fn merged_streams_ask_each_backend_for_what_it_serves() {
        let f = Filter {
            tools: true,
            prompts: true,
            resources: false,
            uris: vec!["a+x://1".into(), "b+y://2".into(), "c+z://3".into()],
        };
        // Both serve tools; only b serves prompts; only a subscriptions.
        let plans = plan_each(
            &f,
            &[cand(0, true, false, true), cand(1, true, true, false)],
            owner,
        );
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].backend, Some(0));
        assert_eq!(
            plans[0].honoured,
            Filter {
                tools: true,
                uris: vec!["a+x://1".into()],
                ..Default::default()
            }
        );
        assert_eq!(plans[0].upstream.uris, vec!["x://1".to_string()]);
        assert_eq!(
            plans[1].honoured,
            Filter {
                tools: true,
                prompts: true,
                ..Default::default()
            },
            "b+y://2: b does not offer subscriptions"
        );
        assert_eq!(
            plans[0].honoured.union(&plans[1].honoured),
            Filter {
                tools: true,
                prompts: true,
                resources: false,
                uris: vec!["a+x://1".into()],
            }
        );
        // A backend serving nothing asked is not asked.
        let plans = plan_each(
            &Filter {
                prompts: true,
                ..Default::default()
            },
            &[cand(0, true, false, true), cand(1, true, true, false)],
            owner,
        );
        assert_eq!(
            plans.iter().map(|p| p.backend).collect::<Vec<_>>(),
            vec![Some(1)]
        );
    }
}
