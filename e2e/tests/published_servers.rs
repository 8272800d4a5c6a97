//! The published reference servers, unmodified, through `mcpgw run` exactly
//! as directly.
//!
//! One `mcpgw run --mcp-config` fronts, from an ordinary servers file:
//! `@modelcontextprotocol/server-everything` as a stdio server and again in
//! its `streamableHttp` mode as an HTTP server, `server-memory` and
//! `server-filesystem` (stdio, npm), `mcp-server-time` (stdio, PyPI,
//! written with the Python SDK; one shared process), and a small Python SDK
//! server (`e2e/python/features_server.py`) for what the Python SDK sends
//! from inside a tool (progress, sampling, elicitation, roots, logs), which
//! the time server does not, and the rmcp test server (progress, sampling and
//! roots from an rmcp child). Three official clients
//! run the same journey (`e2e/python/published_journey.py` in `legacy` and
//! in `auto` mode, `e2e/node/published_journey.mjs` with the TypeScript SDK)
//! directly against each server (stdio or its URL) and through mcpgw (one
//! multiplexed session): every tool kind of server-everything (text, image,
//! annotations, structured output, resource links, embedded resources, a
//! long-running tool with progress, sampling, elicitation, roots), resources
//! and templates read back, prompts with arguments, completion, logging,
//! subscriptions and their updates, `list_changed`, cancellation; the memory
//! server's graph within one session; the filesystem server reading and
//! writing a temporary directory; the time server's tools.
//!
//! Every check must pass through mcpgw, and wherever it passed directly it
//! must have seen the same thing (names and URIs un-prefixed). A check that
//! fails directly is reported, not failed: the TypeScript SDK drops a
//! progress notification that arrives in the same stdio read as the result,
//! and in `auto` mode the Python client speaks 2026-07-28 directly with the
//! Python SDK servers, where a tool has no back-channel for sampling,
//! elicitation or roots. Through mcpgw the `auto` client speaks 2026-07-28
//! (mcpgw answers its `server/discover`) while directly it falls back to the
//! handshake with server-everything: what 2026-07-28 does not have is
//! checked for the documented answer instead (see [`era_bound`]).
//! Clients run one after another (each one's direct and gateway journeys in
//! parallel): the memory server keeps its graph in one file per gateway, and
//! concurrent writers would race.

use mcpgw_e2e::envoy::{free_port, workspace_root};
use mcpgw_e2e::mcpgw_run::Gateway;
use mcpgw_e2e::peers::{node_bin, node_package, python_bin, run_script, venv_program};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// One journey's bound (a passing one takes 10-20 s).
const JOURNEY_TIMEOUT: Duration = Duration::from_secs(240);

/// The servers: gateway name, journey kind.
const SERVERS: [(&str, &str); 7] = [
    ("everything", "everything"),
    ("everyhttp", "everything"),
    ("memory", "memory"),
    ("filesystem", "filesystem"),
    ("time", "time"),
    ("pyfeatures", "pyfeatures"),
    ("rmcp", "rmcp"),
];

/// server-everything in streamableHttp mode on a free port.
struct HttpEverything {
    _child: tokio::process::Child,
    port: u16,
}

async fn start_http_everything() -> HttpEverything {
    let port = free_port();
    let child = tokio::process::Command::new(node_bin())
        .arg(node_package(
            "@modelcontextprotocol/server-everything/dist/index.js",
        ))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start server-everything streamableHttp");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "server-everything did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    HttpEverything {
        _child: child,
        port,
    }
}

/// How each stdio server is started (the same for mcpgw and for the direct
/// clients), given its memory file.
fn stdio_command(server: &str, root: &Path, memory_file: &Path) -> Value {
    let node = node_bin().display().to_string();
    let pkg = |p: &str| node_package(p).display().to_string();
    match server {
        "everything" => {
            json!({"command": node, "args": [pkg("@modelcontextprotocol/server-everything/dist/index.js"), "stdio"]})
        }
        "memory" => {
            json!({"command": node, "args": [pkg("@modelcontextprotocol/server-memory/dist/index.js")],
                           "env": {"MEMORY_FILE_PATH": memory_file.display().to_string()}})
        }
        "filesystem" => {
            json!({"command": node, "args": [pkg("@modelcontextprotocol/server-filesystem/dist/index.js"), root.display().to_string()]})
        }
        "time" => json!({"command": venv_program("mcp-server-time").display().to_string()}),
        "rmcp" => json!({"command": env!("CARGO_BIN_EXE_mcp-stdio-server")}),
        "pyfeatures" => json!({"command": python_bin().display().to_string(),
                               "args": [workspace_root().join("e2e/python/features_server.py").display().to_string()]}),
        other => panic!("no stdio server {other}"),
    }
}

/// Checks of what the 2026-07-28 revision does not have: requests from a
/// server to the client (sampling, elicitation, roots), `logging/setLevel`,
/// `resources/subscribe`, and change notifications outside
/// `subscriptions/listen`, which reaches 2026-07-28 backends only. The
/// `auto` client speaks 2026-07-28 through mcpgw to these 2025-era servers
/// (README, "Each backend in its own era"), so they cannot pass there (the
/// rmcp server's sampling and roots are refused for it, as directly).
const ERA_BOUND: [&str; 6] = [
    "sampling",
    "elicitation",
    "roots",
    "logging",
    "subscriptions",
    "list_changed",
];

/// Whether `check` is one of [`ERA_BOUND`] for a 2026-07-28 client.
fn era_bound(client: &Client, check: &str) -> bool {
    client.mode == "auto"
        && ["everything.", "everyhttp.", "pyfeatures.", "rmcp."]
            .iter()
            .any(|s| check.starts_with(s))
        && ERA_BOUND
            .iter()
            .any(|c| check.strip_suffix(c).is_some_and(|p| p.ends_with('.')))
}

/// server-everything lists these only to a client that declared sampling,
/// elicitation or roots; the session mcpgw holds with it for 2026-07-28
/// clients declares none (they answer input requests only through MRTR).
const CAPABILITY_GATED: [&str; 4] = [
    "get-roots-list",
    "trigger-elicitation-request",
    "trigger-sampling-request",
    "trigger-url-elicitation",
];

/// What `check` must show through mcpgw, given what it showed directly.
fn through_expected(client: &Client, check: &str, direct: &Value) -> Value {
    let held = client.mode == "auto" && ["everything.tools", "everyhttp.tools"].contains(&check);
    match direct.as_array() {
        Some(tools) if held => Value::Array(
            tools
                .iter()
                .filter(|t| !t.as_str().is_some_and(|t| CAPABILITY_GATED.contains(&t)))
                .cloned()
                .collect(),
        ),
        _ => direct.clone(),
    }
}

struct Client {
    label: &'static str,
    program: PathBuf,
    script: &'static str,
    mode: &'static str,
}

fn clients() -> Vec<Client> {
    vec![
        Client {
            label: "py-legacy",
            program: python_bin(),
            script: "e2e/python/published_journey.py",
            mode: "legacy",
        },
        Client {
            label: "py-auto",
            program: python_bin(),
            script: "e2e/python/published_journey.py",
            mode: "auto",
        },
        Client {
            label: "node",
            program: node_bin(),
            script: "e2e/node/published_journey.mjs",
            mode: "legacy",
        },
    ]
}

/// Runs one journey and returns its checks.
async fn journey(client: &Client, spec: Value) -> serde_json::Map<String, Value> {
    let what = format!("{} {}", client.label, spec["via"]);
    let run = run_script(
        &client.program,
        client.script,
        &[spec.to_string()],
        JOURNEY_TIMEOUT,
    )
    .await;
    assert!(
        run.summary.get("fatal").is_none() && run.status.success(),
        "{what}: {}\n{}",
        run.summary["fatal"],
        run.stderr
    );
    run.summary["checks"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn published_servers_through_mcpgw_as_directly() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("files");
    std::fs::create_dir(&root).expect("files dir");
    let http = start_http_everything().await;
    let http_url = format!("http://127.0.0.1:{}/mcp", http.port);

    // The servers file a user would write.
    let gateway_memory = dir.path().join("memory-gateway.jsonl");
    let mut servers = serde_json::Map::new();
    for (name, _) in SERVERS {
        let entry = if name == "everyhttp" {
            json!({"type": "http", "url": http_url})
        } else {
            let mut e = stdio_command(name, &root, &gateway_memory);
            if name == "time" {
                e["sharedProcess"] = json!(true);
            }
            e
        };
        servers.insert(name.to_string(), entry);
    }
    let cfg = dir.path().join("mcp-servers.json");
    std::fs::write(&cfg, json!({"mcpServers": servers}).to_string()).expect("write");
    let cfg = cfg.display().to_string();
    let gw = tokio::task::spawn_blocking(move || Gateway::start(&["--mcp-config", &cfg], &[]))
        .await
        .expect("start mcpgw");

    let mut failures = Vec::new();
    let mut direct_failures = Vec::new();
    for client in clients() {
        let view = |name: &str, kind: &str, prefixed: bool| {
            json!({"name": name, "kind": kind,
                   "prefix": if prefixed { format!("{name}__") } else { String::new() },
                   "uri_prefix": if prefixed { format!("{name}+") } else { String::new() }})
        };
        let direct_memory = dir.path().join(format!("memory-{}.jsonl", client.label));
        let direct_sessions: Vec<Value> = SERVERS
            .iter()
            .map(|(name, kind)| {
                let connect = if *name == "everyhttp" {
                    json!({"url": http_url})
                } else {
                    stdio_command(name, &root, &direct_memory)
                };
                json!({"connect": connect, "servers": [view(name, kind, false)]})
            })
            .collect();
        let spec = |via: &str, sessions: Value| {
            json!({"label": client.label, "mode": client.mode, "via": via,
                   "root": root.display().to_string(), "sessions": sessions})
        };
        let gateway_session = json!([{"connect": {"url": gw.url()},
            "servers": SERVERS.iter().map(|(n, k)| view(n, k, true)).collect::<Vec<_>>()}]);
        let (direct, through) = tokio::join!(
            journey(&client, spec("direct", json!(direct_sessions))),
            journey(&client, spec("gateway", gateway_session)),
        );

        for (name, got) in &through {
            if era_bound(&client, name) {
                // The documented answers: a method 2026-07-28 does not have.
                let removed = name.ends_with(".logging") || name.ends_with(".subscriptions");
                if removed
                    && name.starts_with("every")
                    && !got["value"].to_string().contains("2026-07-28")
                {
                    failures.push(format!(
                        "{} {name}: through mcpgw (2026-07-28) saw {}",
                        client.label, got["value"]
                    ));
                }
                continue;
            }
            if got["ok"] != true {
                failures.push(format!(
                    "{} {name}: fails through mcpgw: {}",
                    client.label, got["value"]
                ));
            }
        }
        for (name, want) in &direct {
            if era_bound(&client, name) {
                if !through.contains_key(name) {
                    failures.push(format!(
                        "{} {name}: did not run through mcpgw",
                        client.label
                    ));
                }
                continue;
            }
            if want["ok"] != true {
                direct_failures.push(format!("{} {name}: {}", client.label, want["value"]));
                continue;
            }
            match through.get(name) {
                None => failures.push(format!(
                    "{} {name}: passes directly, missing through mcpgw",
                    client.label
                )),
                Some(got) if got["value"] != through_expected(&client, name, &want["value"]) => {
                    failures.push(format!(
                        "{} {name}: through mcpgw saw\n      {}\n    directly\n      {}",
                        client.label, got["value"], want["value"]
                    ))
                }
                Some(_) => {}
            }
        }
        // Every server's checks ran (a journey that stopped early would
        // compare nothing).
        for (server, _) in SERVERS {
            for (via, checks) in [("directly", &direct), ("through mcpgw", &through)] {
                if !checks
                    .keys()
                    .any(|k| k.starts_with(&format!("{server}.")) && !k.ends_with(".tools"))
                {
                    failures.push(format!("{} {server}: no checks ran {via}", client.label));
                }
            }
        }
        // The filesystem server wrote where it was told.
        let written = root.join(format!("{}-gateway.txt", client.label));
        let text = std::fs::read_to_string(&written).unwrap_or_default();
        if text != format!("hello from {}", client.label) {
            failures.push(format!(
                "{}: {} holds {text:?}",
                client.label,
                written.display()
            ));
        }
    }
    for f in &direct_failures {
        eprintln!("note: fails directly (not compared): {f}");
    }
    assert!(
        failures.is_empty(),
        "{} mismatch(es):\n  {}\n---- mcpgw log (tail) ----\n{}",
        failures.len(),
        failures.join("\n  "),
        tail(&gw.log(), 60)
    );
    // One time process served every session; the others had one each.
    let log = gw.log();
    assert_eq!(log.matches("[time] pid ").count(), 1, "{log}");
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
