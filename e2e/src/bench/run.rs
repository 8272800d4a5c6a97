//! The benchmark scenarios, run in one invocation with the variants
//! interleaved round by round, summarised as medians and ratios.

use super::backend;
use super::client::{self, Op, RunResult, Spec, Target};
use super::procs::{mcpgw_plugin, render, Backend, Envoy, Proxy};
use super::report::{Report, Row};
use super::sys;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What to run and for how long.
#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub out: PathBuf,
    pub envoy: PathBuf,
    pub wasm: PathBuf,
    pub rounds: usize,
    pub warmup: Duration,
    /// Measured window of one tools/call run.
    pub measure: Duration,
    /// Measured window of one fan-out or large-list run.
    pub measure_short: Duration,
    pub envoy_concurrency: usize,
    pub delay_ms: u64,
    pub sessions: u64,
    pub session_conns: usize,
    /// The sessions scenario stops here even if not all sessions were made.
    pub sessions_cap: Duration,
    pub scenarios: Vec<Scenario>,
    /// Limit scenario 1 to these variants (all when empty).
    pub variants: Vec<String>,
    /// Other builds of the filter, run as extra variants `mcpgw@LABEL`
    /// (before/after comparisons in one invocation).
    pub extra_wasm: Vec<(String, PathBuf)>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Call,
    Fanout,
    List,
    Memory,
}

impl Scenario {
    pub fn parse(s: &str) -> Result<Scenario, String> {
        Ok(match s {
            "call" | "1" => Scenario::Call,
            "fanout" | "2" => Scenario::Fanout,
            "list" | "3" => Scenario::List,
            "memory" | "4" => Scenario::Memory,
            _ => {
                return Err(format!(
                    "unknown scenario {s:?} (call, fanout, list, memory)"
                ))
            }
        })
    }
}

pub const USAGE: &str = "bench [--quick] [--out bench/results.md] [options]

Benchmarks mcpgw against a direct connection, a plain Envoy router and Envoy's
native mcp + mcp_router filters, on 127.0.0.1 only, and writes a Markdown
report. Envoy: $ENVOY_BIN, else <repo>/.venv/bin/envoy. Filter:
target/wasm32-wasip1/release/mcpgw.wasm (./build.sh wasm).

  --quick                 short runs (about 2 minutes) to check the harness
  --out PATH              report file (default bench/results.md)
  --only LIST             scenarios: call,fanout,list,memory (default all)
  --variants LIST         scenario 1 only these: direct,plain,wasm-idle,native,mcpgw,mcpgw-quiet,mcpgw-2026,mcpgw@LABEL
  --wasm-variant L=PATH   also run another build of the filter as variant mcpgw@L
                          (scenarios 1 and 3; repeatable; for before/after figures)
  --rounds N              rounds of interleaved variants (default 5, quick 2)
  --measure SECS          measured window of a tools/call run (default 5, quick 1.5)
  --envoy-concurrency N   Envoy worker threads (default 1)
  --delay-ms MS           backend delay in the fan-out scenario (default 20)
  --sessions N            sessions in the memory scenario (default 100000, quick 5000)
  --wasm PATH             another build of the filter (before/after comparisons)
  --note TEXT             a note printed at the top of the report";

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let root = crate::envoy::workspace_root();
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Options {
            quick,
            out: root.join("bench/results.md"),
            envoy: std::env::var_os("ENVOY_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join(".venv/bin/envoy")),
            wasm: root.join("target/wasm32-wasip1/release/mcpgw.wasm"),
            rounds: if quick { 2 } else { 5 },
            warmup: Duration::from_millis(if quick { 300 } else { 1000 }),
            measure: Duration::from_millis(if quick { 1500 } else { 5000 }),
            measure_short: Duration::from_millis(if quick { 1000 } else { 2500 }),
            envoy_concurrency: 1,
            delay_ms: 20,
            sessions: if quick { 5_000 } else { 100_000 },
            session_conns: 16,
            sessions_cap: Duration::from_secs(if quick { 60 } else { 300 }),
            scenarios: vec![
                Scenario::Call,
                Scenario::Fanout,
                Scenario::List,
                Scenario::Memory,
            ],
            variants: Vec::new(),
            extra_wasm: Vec::new(),
            note: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{a} needs a value"))
            };
            match a.as_str() {
                "--quick" => {}
                "--out" => o.out = PathBuf::from(val()?),
                "--only" => {
                    o.scenarios = val()?
                        .split(',')
                        .map(Scenario::parse)
                        .collect::<Result<_, _>>()?
                }
                "--variants" => {
                    o.variants = val()?.split(',').map(str::to_string).collect();
                    for v in &o.variants {
                        let known = [
                            "direct",
                            "plain",
                            "wasm-idle",
                            "native",
                            "mcpgw",
                            "mcpgw-quiet",
                            "mcpgw-2026",
                        ];
                        if !known.contains(&v.as_str()) && !v.starts_with("mcpgw@") {
                            return Err(format!("unknown variant {v:?}"));
                        }
                    }
                }
                "--rounds" => o.rounds = num::<usize>(&val()?)?.max(1),
                "--measure" => o.measure = Duration::from_secs_f64(num(&val()?)?),
                "--envoy-concurrency" => o.envoy_concurrency = num::<usize>(&val()?)?.max(1),
                "--delay-ms" => o.delay_ms = num(&val()?)?,
                "--sessions" => o.sessions = num(&val()?)?,
                "--wasm" => o.wasm = PathBuf::from(val()?),
                "--wasm-variant" => {
                    let v = val()?;
                    let (label, path) = v
                        .split_once('=')
                        .ok_or_else(|| format!("--wasm-variant wants LABEL=PATH, not {v:?}"))?;
                    o.extra_wasm.push((label.to_string(), PathBuf::from(path)));
                }
                "--note" => o.note = Some(val()?),
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown option {other:?}\n\n{USAGE}")),
            }
        }
        Ok(o)
    }
}

fn num<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

/// Run everything asked for and write the report. Must run inside a `LocalSet`.
pub async fn run(o: Options) -> Result<(), String> {
    if !o.envoy.exists() {
        return Err(format!(
            "no Envoy at {} (set ENVOY_BIN or run ./build.sh envoy)",
            o.envoy.display()
        ));
    }
    if !o.wasm.exists() {
        return Err(format!(
            "{} is missing (run ./build.sh wasm)",
            o.wasm.display()
        ));
    }
    for (label, w) in &o.extra_wasm {
        if !w.exists() {
            return Err(format!(
                "--wasm-variant {label}: {} is missing",
                w.display()
            ));
        }
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let info = sys::MachineInfo::collect(&o.envoy, &o.wasm);
    progress(&format!(
        "{} cores ({}), Envoy {}, load average {:.2}",
        info.cores, info.cpu_model, info.envoy_version, info.load_start
    ));
    let mut report = Report::new(info, &o);
    let t0 = Instant::now();
    for s in &o.scenarios {
        match s {
            Scenario::Call => scenario_call(&o, &exe, &mut report).await?,
            Scenario::Fanout => scenario_fanout(&o, &exe, &mut report).await?,
            Scenario::List => scenario_list(&o, &exe, &mut report).await?,
            Scenario::Memory => scenario_memory(&o, &exe, &mut report).await?,
        }
    }
    report.finish(t0.elapsed(), sys::loadavg());
    let text = report.markdown();
    println!("{text}");
    if let Some(dir) = o.out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&o.out, &text).map_err(|e| format!("{}: {e}", o.out.display()))?;
    progress(&format!("wrote {}", o.out.display()));
    Ok(())
}

fn start_backend(
    exe: &Path,
    name: &str,
    f: impl FnOnce(&mut backend::Options),
) -> Result<Backend, String> {
    let mut opts = backend::Options {
        name: name.into(),
        ..Default::default()
    };
    f(&mut opts);
    Backend::start(exe, &opts)
}

fn start_envoy(
    o: &Options,
    label: &str,
    proxy: &Proxy,
    backends: &[&Backend],
) -> Result<Envoy, String> {
    start_envoy_with(o, label, proxy, backends, &o.wasm)
}

fn start_envoy_with(
    o: &Options,
    label: &str,
    proxy: &Proxy,
    backends: &[&Backend],
    wasm: &Path,
) -> Result<Envoy, String> {
    let yaml = render(proxy, backends, wasm);
    if matches!(proxy, Proxy::Native) {
        // The native filters' config is checked by Envoy itself first.
        Envoy::validate(&o.envoy, &yaml)
            .map_err(|e| format!("envoy --mode validate rejected the {label} config:\n{e}"))?;
    }
    let e = Envoy::start(&o.envoy, label, &yaml, o.envoy_concurrency)?;
    progress(&format!(
        "started Envoy {label}: pid {}, port {}, admin {}",
        e.pid(),
        e.port,
        e.admin_port
    ));
    Ok(e)
}

/// Check that the 2026-07-28 clients' tools answer (no session, no list:
/// they are called by name, routed from the headers).
async fn check_modern_tools(port: u16, want: &[String], label: &str) -> Result<(), String> {
    let mut c = client::Conn::open(&Target::modern(port)).await?;
    for w in want {
        c.call_tool(w).await.map_err(|e| format!("{label}: {e}"))?;
    }
    Ok(())
}

/// Check that a gateway lists the tools the run will call.
async fn check_tools(port: u16, want: &[String], label: &str) -> Result<(), String> {
    let mut c = client::Conn::open(&Target::new(port)).await?;
    c.initialize().await.map_err(|e| format!("{label}: {e}"))?;
    let (names, _) = c.tool_names().await.map_err(|e| format!("{label}: {e}"))?;
    for w in want {
        if !names.contains(w) {
            return Err(format!(
                "{label}: tools/list has no {w:?} (it lists {:?}...)",
                &names[..names.len().min(8)]
            ));
        }
    }
    for w in want {
        c.call_tool(w).await.map_err(|e| format!("{label}: {e}"))?;
    }
    Ok(())
}

fn failed(label: &str, r: &RunResult) -> Option<String> {
    r.first_error
        .as_ref()
        .map(|e| format!("{label}: {} error(s), first: {e}", r.errors))
}

// ----- scenario 1: tools/call ------------------------------------------------

async fn scenario_call(o: &Options, exe: &Path, report: &mut Report) -> Result<(), String> {
    progress("scenario 1: tools/call throughput and latency");
    let b0 = start_backend(exe, "b0", |_| {})?;
    let b1 = start_backend(exe, "b1", |_| {})?;
    let plain = start_envoy(o, "plain", &Proxy::Plain, &[&b0])?;
    let native = start_envoy(o, "native", &Proxy::Native, &[&b0, &b1])?;
    let plugin = mcpgw_plugin(&[&b0, &b1], &json!({}), &json!({}));
    let mcpgw = start_envoy(
        o,
        "mcpgw",
        &Proxy::Mcpgw {
            plugin: plugin.clone(),
        },
        &[&b0, &b1],
    )?;
    // The same with its per-request stats and access-log fields off: what
    // observability costs.
    let quiet_plugin = mcpgw_plugin(
        &[&b0, &b1],
        &json!({}),
        &json!({"observability": {"metrics": false, "access_log_fields": false}}),
    );
    let quiet = start_envoy(
        o,
        "mcpgw-quiet",
        &Proxy::Mcpgw {
            plugin: quiet_plugin,
        },
        &[&b0, &b1],
    )?;
    // 2026-07-28 clients, routed from the headers alone: b0 unprefixed
    // (`echo`), b1 prefixed (`b1__echo`), both speak 2026-07-28.
    let modern_plugin = {
        let mut p: serde_json::Value =
            serde_json::from_str(&mcpgw_plugin(&[&b0, &b1], &json!({}), &json!({})))
                .map_err(|e| e.to_string())?;
        p["backends"][0]["prefix"] = json!("never");
        p["backends"][1]["prefix"] = json!("always");
        p.to_string()
    };
    let modern = start_envoy(
        o,
        "mcpgw-2026",
        &Proxy::Mcpgw {
            plugin: modern_plugin,
        },
        &[&b0, &b1],
    )?;
    let idle_plugin = mcpgw_plugin(&[&b0, &b1], &json!({}), &json!({"path": "/not-mcp"}));
    let idle = start_envoy(
        o,
        "wasm-idle",
        &Proxy::WasmIdle {
            plugin: idle_plugin,
        },
        &[&b0],
    )?;
    let mut extras = Vec::new();
    for (label, wasm) in &o.extra_wasm {
        let name = format!("mcpgw@{label}");
        let proxy = Proxy::Mcpgw {
            plugin: plugin.clone(),
        };
        extras.push((
            name.clone(),
            start_envoy_with(o, &name, &proxy, &[&b0, &b1], wasm)?,
        ));
    }
    let gw_tools = vec!["b0__echo".to_string(), "b1__echo".to_string()];
    let modern_tools = vec!["echo".to_string()];
    let bare = vec!["echo".to_string()];
    check_tools(b0.port, &bare, "direct").await?;
    check_tools(plain.port, &bare, "plain Envoy").await?;
    check_tools(idle.port, &bare, "wasm-idle").await?;
    check_tools(native.port, &gw_tools, "native mcp_router").await?;
    check_tools(mcpgw.port, &gw_tools, "mcpgw").await?;
    check_tools(quiet.port, &gw_tools, "mcpgw-quiet").await?;
    check_modern_tools(modern.port, &modern_tools, "mcpgw-2026").await?;
    for (name, e) in &extras {
        check_tools(e.port, &gw_tools, name).await?;
    }
    // (label, target, tools, envoy pid)
    let mut all: Vec<(String, Target, &Vec<String>, Option<u32>)> = vec![
        ("direct".into(), Target::new(b0.port), &bare, None),
        (
            "plain".into(),
            Target::new(plain.port),
            &bare,
            Some(plain.pid()),
        ),
        (
            "wasm-idle".into(),
            Target::new(idle.port),
            &bare,
            Some(idle.pid()),
        ),
        (
            "native".into(),
            Target::new(native.port),
            &gw_tools,
            Some(native.pid()),
        ),
        (
            "mcpgw".into(),
            Target::new(mcpgw.port),
            &gw_tools,
            Some(mcpgw.pid()),
        ),
        (
            "mcpgw-quiet".into(),
            Target::new(quiet.port),
            &gw_tools,
            Some(quiet.pid()),
        ),
        (
            "mcpgw-2026".into(),
            Target::modern(modern.port),
            &modern_tools,
            Some(modern.pid()),
        ),
    ];
    for (name, e) in &extras {
        all.push((name.clone(), Target::new(e.port), &gw_tools, Some(e.pid())));
    }
    let variants: Vec<_> = all
        .into_iter()
        .filter(|v| o.variants.is_empty() || o.variants.contains(&v.0))
        .collect();
    let backend_pids = [b0.pid(), b1.pid()];
    for round in 0..o.rounds {
        for k in 0..variants.len() {
            // Rotate the order every round so no variant always goes first.
            let Some((label, target, tools, pid)) = variants.get((k + round) % variants.len())
            else {
                continue;
            };
            for conns in [1usize, 16] {
                let mut watch = vec![pid.unwrap_or(0)];
                watch.extend_from_slice(&backend_pids);
                let spec = Spec {
                    conns,
                    warmup: o.warmup,
                    measure: o.measure,
                    timeout: Duration::from_secs(5),
                    session: true,
                };
                let r = client::closed_loop(target, &Op::CallTool((*tools).clone()), spec, &watch)
                    .await;
                progress(&format!(
                    "  round {}/{} {label:>9} x{conns:<2}: {:>8.0} req/s  p50 {:.3} ms  p99 {:.3} ms  Envoy {} µs/req{}",
                    round + 1,
                    o.rounds,
                    r.rps(),
                    r.percentile_ms(0.5),
                    r.percentile_ms(0.99),
                    pid.and_then(|_| r.cpu_per_req(&[0]))
                        .map_or("-".into(), |c| format!("{c:.0}")),
                    failed("", &r).unwrap_or_default()
                ));
                if let Some(e) = failed(&format!("tools/call {label} x{conns}"), &r) {
                    report.error(e);
                }
                report.call.push(Row {
                    variant: label.clone(),
                    key: conns,
                    round,
                    rps: r.rps(),
                    p50: r.percentile_ms(0.5),
                    p99: r.percentile_ms(0.99),
                    envoy_cpu: pid.and_then(|_| r.cpu_per_req(&[0])),
                    backend_cpu: r.cpu_per_req(&[1, 2]),
                    bytes: r.bytes.checked_div(r.completed).unwrap_or(0),
                    errors: r.errors,
                });
            }
        }
    }
    Ok(())
}

// ----- scenario 2: fan-out ------------------------------------------------------

async fn scenario_fanout(o: &Options, exe: &Path, report: &mut Report) -> Result<(), String> {
    progress(&format!(
        "scenario 2: tools/list fan-out, backends delayed {} ms",
        o.delay_ms
    ));
    let mut backends = Vec::new();
    for i in 0..8 {
        backends.push(start_backend(exe, &format!("d{i}"), |b| {
            b.delay_ms = o.delay_ms;
        })?);
    }
    let refs: Vec<&Backend> = backends.iter().collect();
    let mut gateways = Vec::new();
    for n in [1usize, 2, 4, 8] {
        let Some(set) = refs.get(..n) else { continue };
        let plugin = mcpgw_plugin(set, &json!({}), &json!({}));
        let m = start_envoy(o, &format!("mcpgw-{n}"), &Proxy::Mcpgw { plugin }, set)?;
        let nat = start_envoy(o, &format!("native-{n}"), &Proxy::Native, set)?;
        gateways.push((n, "mcpgw", m));
        gateways.push((n, "native", nat));
    }
    let spec = |measure| Spec {
        conns: 1,
        warmup: Duration::from_millis(200),
        measure,
        timeout: Duration::from_secs(10),
        session: true,
    };
    for round in 0..o.rounds {
        // The backends alone: the slowest one's p50 is the reference.
        let mut direct = Vec::new();
        for b in &backends {
            let r = client::closed_loop(
                &Target::new(b.port),
                &Op::ListTools,
                spec(o.measure_short / 3),
                &[],
            )
            .await;
            if let Some(e) = failed(&format!("tools/list direct {}", b.name), &r) {
                report.error(e);
            }
            direct.push(r.percentile_ms(0.5));
        }
        for k in 0..gateways.len() {
            let Some((n, label, envoy)) = gateways.get((k + round) % gateways.len()) else {
                continue;
            };
            let r = client::closed_loop(
                &Target::new(envoy.port),
                &Op::ListTools,
                spec(o.measure_short),
                &[envoy.pid()],
            )
            .await;
            let slowest = direct
                .get(..*n)
                .unwrap_or(&[])
                .iter()
                .copied()
                .fold(f64::NAN, f64::max);
            progress(&format!(
                "  round {}/{} {label:>9} over {n}: p50 {:.2} ms (slowest backend {:.2} ms) p99 {:.2} ms",
                round + 1,
                o.rounds,
                r.percentile_ms(0.5),
                slowest,
                r.percentile_ms(0.99)
            ));
            if let Some(e) = failed(&format!("tools/list {label} over {n}"), &r) {
                report.error(e);
            }
            report.fanout.push((
                Row {
                    variant: label.to_string(),
                    key: *n,
                    round,
                    rps: r.rps(),
                    p50: r.percentile_ms(0.5),
                    p99: r.percentile_ms(0.99),
                    envoy_cpu: r.cpu_per_req(&[0]),
                    backend_cpu: None,
                    bytes: r.bytes.checked_div(r.completed).unwrap_or(0),
                    errors: r.errors,
                },
                slowest,
            ));
        }
    }
    Ok(())
}

// ----- scenario 3: a large tools/list -----------------------------------------

async fn scenario_list(o: &Options, exe: &Path, report: &mut Report) -> Result<(), String> {
    progress("scenario 3: a large tools/list (2,000 tools, about 2 MB)");
    let big = start_backend(exe, "big", |b| {
        b.tools = 2000;
        b.tool_bytes = 1000;
    })?;
    let plain = start_envoy(o, "plain-big", &Proxy::Plain, &[&big])?;
    // Filtered (every tool whose number ends in 7 is hidden: 10 %) and prefixed.
    let plugin = mcpgw_plugin(
        &[&big],
        &json!({"tools": {"exclude_regex": ["7$"]}}),
        &json!({"prefix": "always"}),
    );
    let mcpgw = start_envoy(
        o,
        "mcpgw-big",
        &Proxy::Mcpgw {
            plugin: plugin.clone(),
        },
        &[&big],
    )?;
    let native = start_envoy(o, "native-big", &Proxy::Native, &[&big])?;
    let mut extras = Vec::new();
    for (label, wasm) in &o.extra_wasm {
        let name = format!("mcpgw@{label}");
        let proxy = Proxy::Mcpgw {
            plugin: plugin.clone(),
        };
        extras.push((
            name.clone(),
            start_envoy_with(o, &name, &proxy, &[&big], wasm)?,
        ));
    }
    // Check the filter really filtered and prefixed.
    {
        let mut c = client::Conn::open(&Target::new(mcpgw.port)).await?;
        c.initialize().await?;
        let (names, bytes) = c.tool_names().await?;
        let ok = names.len() == 1800
            && names
                .iter()
                .all(|n| n.starts_with("big__") && !n.ends_with('7'));
        if !ok {
            return Err(format!(
                "mcpgw large list: {} tools, expected 1800 prefixed and filtered ({:?}...)",
                names.len(),
                &names[..names.len().min(3)]
            ));
        }
        report.list_tools = (names.len(), bytes);
    }
    let mut variants = vec![
        ("direct".to_string(), big.port, None),
        ("plain".to_string(), plain.port, Some(plain.pid())),
        ("mcpgw".to_string(), mcpgw.port, Some(mcpgw.pid())),
        ("native".to_string(), native.port, Some(native.pid())),
    ];
    for (name, e) in &extras {
        variants.push((name.clone(), e.port, Some(e.pid())));
    }
    for round in 0..o.rounds {
        for k in 0..variants.len() {
            let Some((label, port, pid)) = variants.get((k + round) % variants.len()) else {
                continue;
            };
            let spec = Spec {
                conns: 1,
                warmup: Duration::from_millis(300),
                measure: o.measure_short,
                timeout: Duration::from_secs(10),
                session: true,
            };
            let r = client::closed_loop(
                &Target::new(*port),
                &Op::ListTools,
                spec,
                &[pid.unwrap_or(0)],
            )
            .await;
            let bytes = r.bytes.checked_div(r.completed).unwrap_or(0);
            progress(&format!(
                "  round {}/{} {label:>9}: {bytes} bytes, p50 {:.2} ms, {:.0} MB/s",
                round + 1,
                o.rounds,
                r.percentile_ms(0.5),
                bytes as f64 / r.percentile_ms(0.5) / 1000.0
            ));
            if let Some(e) = failed(&format!("large tools/list {label}"), &r) {
                report.error(e);
            }
            report.list.push(Row {
                variant: label.clone(),
                key: 1,
                round,
                rps: r.rps(),
                p50: r.percentile_ms(0.5),
                p99: r.percentile_ms(0.99),
                envoy_cpu: pid.and_then(|_| r.cpu_per_req(&[0])),
                backend_cpu: None,
                bytes,
                errors: r.errors,
            });
        }
    }
    Ok(())
}

// ----- scenario 4: memory over many sessions ---------------------------------

async fn scenario_memory(o: &Options, exe: &Path, report: &mut Report) -> Result<(), String> {
    progress(&format!(
        "scenario 4: Envoy RSS over {} sessions (initialize + tools/call each)",
        o.sessions
    ));
    let b0 = start_backend(exe, "b0", |_| {})?;
    let b1 = start_backend(exe, "b1", |_| {})?;
    let plugin = mcpgw_plugin(&[&b0, &b1], &json!({}), &json!({}));
    let envoy = start_envoy(o, "mcpgw-memory", &Proxy::Mcpgw { plugin }, &[&b0, &b1])?;
    let pid = envoy.pid();
    let target = Target::new(envoy.port);
    let deadline = Instant::now() + o.sessions_cap;
    let rss = || sys::rss_kib(pid).unwrap_or(0);
    let mut points = vec![(0u64, rss())];
    let warm = (o.sessions / 50).max(200).min(o.sessions);
    let mut plan = vec![warm];
    for q in 1..=4u64 {
        plan.push(warm + (o.sessions - warm) * q / 4);
    }
    let mut done = 0u64;
    let mut seconds = 0.0;
    let mut errors = 0u64;
    for goal in plan {
        if goal <= done {
            continue;
        }
        let r = client::sessions(&target, "b0__echo", goal - done, o.session_conns, deadline).await;
        done += r.done;
        errors += r.errors;
        if done > warm {
            seconds += r.seconds;
        }
        if let Some(e) = &r.first_error {
            report.error(format!("sessions: {} error(s), first: {e}", r.errors));
        }
        // Let Envoy settle (deferred deletes, stats flush) before reading RSS.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let kib = rss();
        progress(&format!(
            "  {done} sessions: Envoy RSS {:.1} MiB ({:.0} sessions/s)",
            kib as f64 / 1024.0,
            r.done as f64 / r.seconds.max(1e-9)
        ));
        points.push((done, kib));
        if Instant::now() >= deadline || r.errors > 100 {
            if done < o.sessions {
                report.error(format!(
                    "sessions: stopped after {done} of {} (time cap {:?} or errors)",
                    o.sessions, o.sessions_cap
                ));
            }
            break;
        }
    }
    report.memory = Some(super::report::Memory {
        points,
        warm,
        target: o.sessions,
        rate: (done.saturating_sub(warm)) as f64 / seconds.max(1e-9),
        errors,
    });
    Ok(())
}
