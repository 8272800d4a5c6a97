//! The benchmark scenarios, run in one invocation with the variants
//! interleaved round by round, summarised as medians and ratios.

use super::backend;
use super::client::{self, EventSink, Op, RunResult, Spec, Target};
use super::procs::{mcpgw_plugin, render, Backend, Envoy, Proxy};
use super::report::{CgRow, Report, Row, StreamRow};
use super::sys;
use crate::envoy::Engine;
use serde_json::json;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The variant label of mcpgw in each build.
pub fn label(engine: Engine) -> &'static str {
    match engine {
        Engine::Module => "mcpgw-module",
        Engine::Wasm => "mcpgw-wasm",
    }
}

/// The label of mcpgw loaded but idle, per build.
pub fn idle_label(engine: Engine) -> &'static str {
    match engine {
        Engine::Module => "module-idle",
        Engine::Wasm => "wasm-idle",
    }
}

/// What to run and for how long.
#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub out: PathBuf,
    pub envoy: PathBuf,
    pub wasm: PathBuf,
    pub module: PathBuf,
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
    /// Other builds of the filter, run as extra variants
    /// `mcpgw-wasm@LABEL` / `mcpgw-module@LABEL` (before/after comparisons
    /// in one invocation).
    pub extra: Vec<(String, Engine, PathBuf)>,
    /// Merged-streams scenario: client streams, backends, event interval,
    /// measured window.
    pub streams: usize,
    pub stream_backends: usize,
    pub event_ms: u64,
    pub stream_measure: Duration,
    /// Requests per variant under callgrind.
    pub cg_requests: u64,
    /// Keep each callgrind dump here (for `callgrind_annotate`).
    pub cg_keep: Option<PathBuf>,
    pub note: Option<String>,
}

impl Options {
    /// The build of mcpgw each engine loads.
    pub fn code(&self, engine: Engine) -> &Path {
        match engine {
            Engine::Module => &self.module,
            Engine::Wasm => &self.wasm,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Call,
    Fanout,
    List,
    Memory,
    Streams,
    Callgrind,
}

impl Scenario {
    pub fn parse(s: &str) -> Result<Scenario, String> {
        Ok(match s {
            "call" | "1" => Scenario::Call,
            "fanout" | "2" => Scenario::Fanout,
            "list" | "3" => Scenario::List,
            "memory" | "4" => Scenario::Memory,
            "streams" | "5" => Scenario::Streams,
            "callgrind" | "6" => Scenario::Callgrind,
            _ => {
                return Err(format!(
                    "unknown scenario {s:?} (call, fanout, list, memory, streams, callgrind)"
                ))
            }
        })
    }
}

pub const USAGE: &str = "bench [--quick] [--out bench/results.md] [options]

Benchmarks mcpgw (the dynamic module and the wasm filter) against a direct
connection, a plain Envoy router and Envoy's native mcp + mcp_router filters,
on 127.0.0.1 only, and writes a Markdown report. Envoy: $ENVOY_BIN, else
<repo>/.venv/bin/envoy. Filters: target/dynamic-module/libmcpgw.so
(./build.sh module) and target/wasm32-wasip1/release/mcpgw.wasm (./build.sh wasm).

  --quick                 short runs (about 3 minutes) to check the harness
  --out PATH              report file (default bench/results.md)
  --only LIST             scenarios: call,fanout,list,memory,streams,callgrind
                          (default all but callgrind)
  --variants LIST         scenario 1 only these: direct,plain,wasm-idle,module-idle,native,
                          mcpgw-wasm,mcpgw-wasm-quiet,mcpgw-module,mcpgw-2026,
                          mcpgw-wasm@LABEL,...
  --wasm-variant L=PATH   also run another build of the wasm filter as variant
                          mcpgw-wasm@L (scenarios 1, 3 and 6; repeatable)
  --module-variant L=PATH the same for another build of the module (mcpgw-module@L)
  --rounds N              rounds of interleaved variants (default 5, quick 2)
  --measure SECS          measured window of a tools/call run (default 5, quick 1.5)
  --envoy-concurrency N   Envoy worker threads (default 1)
  --delay-ms MS           backend delay in the fan-out scenario (default 20)
  --sessions N            sessions in the memory scenario (default 100000, quick 5000)
  --streams N             client streams in the merged-streams scenario (default 500, quick 100)
  --event-ms MS           each backend stream's event interval there (default 1000)
  --cg-requests N         tools/call requests per variant under callgrind (default 2000, quick 300)
  --cg-keep DIR           keep each callgrind dump there as callgrind.<variant>.<request>
                          (read it with callgrind_annotate)
  --wasm PATH             another build of the wasm filter
  --module PATH           another build of the dynamic module
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
            module: root.join("target/dynamic-module/libmcpgw.so"),
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
                Scenario::Streams,
            ],
            variants: Vec::new(),
            extra: Vec::new(),
            streams: if quick { 100 } else { 500 },
            stream_backends: 4,
            event_ms: 1000,
            stream_measure: Duration::from_millis(if quick { 3000 } else { 10_000 }),
            cg_requests: if quick { 300 } else { 2000 },
            cg_keep: None,
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
                            "module-idle",
                            "native",
                            "mcpgw-wasm",
                            "mcpgw-wasm-quiet",
                            "mcpgw-module",
                            "mcpgw-2026",
                        ];
                        if !known.contains(&v.as_str()) && !v.contains('@') {
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
                "--module" => o.module = PathBuf::from(val()?),
                "--streams" => o.streams = num::<usize>(&val()?)?.max(1),
                "--event-ms" => o.event_ms = num::<u64>(&val()?)?.max(10),
                "--cg-requests" => o.cg_requests = num::<u64>(&val()?)?.max(10),
                "--cg-keep" => o.cg_keep = Some(PathBuf::from(val()?)),
                "--wasm-variant" | "--module-variant" => {
                    let engine = if a == "--wasm-variant" {
                        Engine::Wasm
                    } else {
                        Engine::Module
                    };
                    let v = val()?;
                    let (label, path) = v
                        .split_once('=')
                        .ok_or_else(|| format!("{a} wants LABEL=PATH, not {v:?}"))?;
                    o.extra
                        .push((label.to_string(), engine, PathBuf::from(path)));
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
    for (path, build) in [(&o.wasm, "wasm"), (&o.module, "module")] {
        if !path.exists() {
            return Err(format!(
                "{} is missing (run ./build.sh {build})",
                path.display()
            ));
        }
    }
    for (label, _, w) in &o.extra {
        if !w.exists() {
            return Err(format!("variant {label}: {} is missing", w.display()));
        }
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let info = sys::MachineInfo::collect(&o.envoy, &[&o.module, &o.wasm]);
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
            Scenario::Streams => scenario_streams(&o, &exe, &mut report).await?,
            Scenario::Callgrind => scenario_callgrind(&o, &exe, &mut report).await?,
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
    let code = proxy.engine().map_or(&o.wasm as &Path, |e| o.code(e));
    start_envoy_with(o, label, proxy, backends, code)
}

fn start_envoy_with(
    o: &Options,
    label: &str,
    proxy: &Proxy,
    backends: &[&Backend],
    code: &Path,
) -> Result<Envoy, String> {
    let yaml = render(proxy, backends, code);
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
    let plugin = mcpgw_plugin(&[&b0, &b1], &json!({}), &json!({}));
    // The same with its per-request stats and access-log fields off: what
    // observability costs.
    let quiet_plugin = mcpgw_plugin(
        &[&b0, &b1],
        &json!({}),
        &json!({"observability": {"metrics": false, "access_log_fields": false}}),
    );
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
    let idle_plugin = mcpgw_plugin(&[&b0, &b1], &json!({}), &json!({"path": "/not-mcp"}));
    let gw = |engine, plugin: &String| Proxy::Mcpgw {
        engine,
        plugin: plugin.clone(),
    };
    let idle = |engine| Proxy::Idle {
        engine,
        plugin: idle_plugin.clone(),
    };
    let gw_tools = vec!["b0__echo".to_string(), "b1__echo".to_string()];
    let modern_tools = vec!["echo".to_string()];
    let bare = vec!["echo".to_string()];
    // (label, proxy, backends, tools, build); "direct" has no proxy.
    type Plan<'a> = (
        String,
        Option<Proxy>,
        Vec<&'a Backend>,
        &'a Vec<String>,
        Option<&'a Path>,
    );
    let mut plan: Vec<Plan<'_>> = vec![
        ("direct".into(), None, vec![&b0], &bare, None),
        ("plain".into(), Some(Proxy::Plain), vec![&b0], &bare, None),
        (
            "wasm-idle".into(),
            Some(idle(Engine::Wasm)),
            vec![&b0],
            &bare,
            None,
        ),
        (
            "module-idle".into(),
            Some(idle(Engine::Module)),
            vec![&b0],
            &bare,
            None,
        ),
        (
            "native".into(),
            Some(Proxy::Native),
            vec![&b0, &b1],
            &gw_tools,
            None,
        ),
        (
            label(Engine::Module).into(),
            Some(gw(Engine::Module, &plugin)),
            vec![&b0, &b1],
            &gw_tools,
            None,
        ),
        (
            label(Engine::Wasm).into(),
            Some(gw(Engine::Wasm, &plugin)),
            vec![&b0, &b1],
            &gw_tools,
            None,
        ),
        (
            "mcpgw-wasm-quiet".into(),
            Some(gw(Engine::Wasm, &quiet_plugin)),
            vec![&b0, &b1],
            &gw_tools,
            None,
        ),
        (
            "mcpgw-2026".into(),
            Some(gw(Engine::Module, &modern_plugin)),
            vec![&b0, &b1],
            &modern_tools,
            None,
        ),
    ];
    for (l, engine, path) in &o.extra {
        plan.push((
            format!("{}@{l}", label(*engine)),
            Some(gw(*engine, &plugin)),
            vec![&b0, &b1],
            &gw_tools,
            Some(path.as_path()),
        ));
    }
    plan.retain(|v| o.variants.is_empty() || o.variants.contains(&v.0));
    // (label, port, tools, envoy)
    let mut running: Vec<(String, u16, &Vec<String>, Option<Envoy>)> = Vec::new();
    for (name, proxy, backends, tools, code) in plan {
        let envoy = match (&proxy, code) {
            (None, _) => None,
            (Some(p), Some(code)) => Some(start_envoy_with(o, &name, p, &backends, code)?),
            (Some(p), None) => Some(start_envoy(o, &name, p, &backends)?),
        };
        let port = envoy.as_ref().map_or(b0.port, |e| e.port);
        if name == "mcpgw-2026" {
            check_modern_tools(port, tools, &name).await?;
        } else {
            check_tools(port, tools, &name).await?;
        }
        running.push((name, port, tools, envoy));
    }
    let variants: Vec<(String, Target, &Vec<String>, Option<u32>)> = running
        .iter()
        .map(|(n, port, tools, e)| {
            let target = if n == "mcpgw-2026" {
                Target::modern(*port)
            } else {
                Target::new(*port)
            };
            (n.clone(), target, *tools, e.as_ref().map(Envoy::pid))
        })
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
        for engine in [Engine::Module, Engine::Wasm] {
            let proxy = Proxy::Mcpgw {
                engine,
                plugin: plugin.clone(),
            };
            let m = start_envoy(o, &format!("{}-{n}", label(engine)), &proxy, set)?;
            gateways.push((n, label(engine), m));
        }
        let nat = start_envoy(o, &format!("native-{n}"), &Proxy::Native, set)?;
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
    let gw = |engine| Proxy::Mcpgw {
        engine,
        plugin: plugin.clone(),
    };
    let native = start_envoy(o, "native-big", &Proxy::Native, &[&big])?;
    let mut gateways = Vec::new();
    for engine in [Engine::Module, Engine::Wasm] {
        let name = label(engine).to_string();
        let e = start_envoy(o, &format!("{name}-big"), &gw(engine), &[&big])?;
        gateways.push((name, e));
    }
    for (l, engine, path) in &o.extra {
        let name = format!("{}@{l}", label(*engine));
        let e = start_envoy_with(o, &name, &gw(*engine), &[&big], path)?;
        gateways.push((name, e));
    }
    // Check each filter really filtered and prefixed.
    for (name, e) in &gateways {
        let mut c = client::Conn::open(&Target::new(e.port)).await?;
        c.initialize().await?;
        let (names, bytes) = c.tool_names().await?;
        let ok = names.len() == 1800
            && names
                .iter()
                .all(|n| n.starts_with("big__") && !n.ends_with('7'));
        if !ok {
            return Err(format!(
                "{name} large list: {} tools, expected 1800 prefixed and filtered ({:?}...)",
                names.len(),
                &names[..names.len().min(3)]
            ));
        }
        report.list_tools = (names.len(), bytes);
    }
    let mut variants = vec![
        ("direct".to_string(), big.port, None),
        ("plain".to_string(), plain.port, Some(plain.pid())),
        ("native".to_string(), native.port, Some(native.pid())),
    ];
    for (name, e) in &gateways {
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
    for engine in [Engine::Module, Engine::Wasm] {
        memory_of(o, exe, engine, report).await?;
    }
    Ok(())
}

async fn memory_of(
    o: &Options,
    exe: &Path,
    engine: Engine,
    report: &mut Report,
) -> Result<(), String> {
    let name = label(engine);
    progress(&format!(
        "scenario 4: Envoy RSS over {} sessions (initialize + tools/call each), {name}",
        o.sessions
    ));
    let b0 = start_backend(exe, "b0", |_| {})?;
    let b1 = start_backend(exe, "b1", |_| {})?;
    let plugin = mcpgw_plugin(&[&b0, &b1], &json!({}), &json!({}));
    let envoy = start_envoy(
        o,
        &format!("{name}-memory"),
        &Proxy::Mcpgw { engine, plugin },
        &[&b0, &b1],
    )?;
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
            report.error(format!(
                "sessions ({name}): {} error(s), first: {e}",
                r.errors
            ));
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
                    "sessions ({name}): stopped after {done} of {} (time cap {:?} or errors)",
                    o.sessions, o.sessions_cap
                ));
            }
            break;
        }
    }
    report.memory.push((
        name.to_string(),
        super::report::Memory {
            points,
            warm,
            target: o.sessions,
            rate: (done.saturating_sub(warm)) as f64 / seconds.max(1e-9),
            errors,
        },
    ));
    Ok(())
}

// ----- scenario 5: merged GET streams -------------------------------------------

/// The streams of one side of the merged-streams scenario, open.
struct OpenStreams {
    /// The connections (dropped to close the streams).
    conns: Vec<client::Conn>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl OpenStreams {
    fn close(self) {
        for r in &self.readers {
            r.abort();
        }
        drop(self.conns);
    }
}

/// `n` client streams: merged through `gateway` (a session each, then its
/// `GET`), or, without a gateway, the client's own stream to every backend
/// (the same events, with no gateway between).
async fn open_streams(
    n: usize,
    gateway: Option<u16>,
    backends: &[&Backend],
    sink: &Rc<RefCell<EventSink>>,
) -> Result<OpenStreams, String> {
    let mut out = OpenStreams {
        conns: Vec::new(),
        readers: Vec::new(),
    };
    let ports: Vec<u16> = match gateway {
        Some(p) => vec![p],
        None => backends.iter().map(|b| b.port).collect(),
    };
    for i in 0..n {
        for port in &ports {
            let one = async {
                let mut c = client::Conn::open(&Target::new(*port)).await?;
                if gateway.is_some() {
                    c.initialize().await?;
                }
                let body = c.open_event_stream().await?;
                Ok::<_, String>((c, body))
            };
            let (c, body) = tokio::time::timeout(Duration::from_secs(20), one)
                .await
                .map_err(|_| format!("stream {i}: not open within 20 s"))?
                .map_err(|e| format!("stream {i}: {e}"))?;
            out.conns.push(c);
            out.readers
                .push(tokio::task::spawn_local(client::read_events(
                    body,
                    Rc::clone(sink),
                )));
        }
    }
    Ok(out)
}

async fn scenario_streams(o: &Options, exe: &Path, report: &mut Report) -> Result<(), String> {
    let n = o.streams;
    let nb = o.stream_backends;
    progress(&format!(
        "scenario 5: merged GET streams, {n} client streams over {nb} backends, an event every {} ms from each",
        o.event_ms
    ));
    let mut backends = Vec::new();
    for i in 0..nb {
        backends.push(start_backend(exe, &format!("s{i}"), |b| {
            b.events = true;
            b.ping_ms = o.event_ms;
        })?);
    }
    let refs: Vec<&Backend> = backends.iter().collect();
    let plugin = mcpgw_plugin(&refs, &json!({}), &json!({}));
    let name = label(Engine::Module);
    let proxy = Proxy::Mcpgw {
        engine: Engine::Module,
        plugin,
    };
    let rounds = o.rounds.min(3);
    let sides = [("direct", false), (name, true)];
    for round in 0..rounds {
        for k in 0..sides.len() {
            let Some((variant, gw)) = sides.get((k + round) % sides.len()) else {
                continue;
            };
            // A fresh Envoy per round: memory figures from the same start
            // (Envoy's allocator keeps what an earlier round freed).
            let envoy = match gw {
                true => Some(start_envoy(o, &format!("{name}-streams"), &proxy, &refs)?),
                false => None,
            };
            let pid = envoy.as_ref().map_or(0, Envoy::pid);
            let heap = || envoy.as_ref().and_then(heap_allocated);
            if envoy.is_some() {
                // Let the new Envoy settle (workers, first stats flush).
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
            let sink = Rc::new(RefCell::new(EventSink::default()));
            let (rss0, heap0) = (sys::rss_kib(pid), heap());
            let t_open = Instant::now();
            let open = match open_streams(n, envoy.as_ref().map(|e| e.port), &refs, &sink).await {
                Ok(s) => s,
                Err(e) => {
                    report.error(format!("streams {variant}: {e}"));
                    continue;
                }
            };
            let opened_in = t_open.elapsed();
            // Every stream has had an event or two before the window.
            tokio::time::sleep(Duration::from_millis(o.event_ms.max(500) + 500)).await;
            let (rss1, heap1) = (sys::rss_kib(pid), heap());
            let cpu0 = sys::cpu_us(pid);
            sink.borrow_mut().recording = true;
            tokio::time::sleep(o.stream_measure).await;
            sink.borrow_mut().recording = false;
            let cpu1 = sys::cpu_us(pid);
            open.close();
            // Envoy closes the upstream streams; what is left once it has.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let (rss2, heap2) = (sys::rss_kib(pid), heap());
            let mut s = std::mem::take(&mut *sink.borrow_mut());
            s.lat_us.sort_unstable();
            let pct = |p: f64| {
                let len = s.lat_us.len();
                if len == 0 {
                    return f64::NAN;
                }
                let i = ((len as f64 - 1.0) * p).round() as usize;
                f64::from(s.lat_us[i.min(len - 1)])
            };
            let expected =
                (n * nb) as f64 * o.stream_measure.as_secs_f64() * 1000.0 / o.event_ms as f64;
            let gw = *gw;
            // KiB from `a` to `b` (`unit` bytes each), with the gateway only.
            let grew = |a: Option<u64>, b: Option<u64>, unit: f64| match (gw, a, b) {
                (true, Some(a), Some(b)) => Some((b as f64 - a as f64) * unit / 1024.0),
                _ => None,
            };
            let per_stream = |kib: Option<f64>| kib.map(|k| k / n as f64);
            let row = StreamRow {
                variant: variant.to_string(),
                round,
                streams: n,
                events: s.events,
                expected,
                p50_us: pct(0.5),
                p99_us: pct(0.99),
                rss_per_stream_kib: per_stream(grew(rss0, rss1, 1024.0)),
                rss_after_close_kib: grew(rss0, rss2, 1024.0),
                heap_per_stream_kib: per_stream(grew(heap0, heap1, 1.0)),
                heap_after_close_kib: grew(heap0, heap2, 1.0),
                envoy_cpu_per_event: match (gw, cpu0, cpu1) {
                    (true, Some(a), Some(b)) if s.events > 0 => {
                        Some(b.saturating_sub(a) as f64 / s.events as f64)
                    }
                    _ => None,
                },
                opened_in,
                ended: s.ended,
            };
            progress(&format!(
                "  round {}/{rounds} {variant:>12}: {} events ({:.0} expected), late by p50 {:.0} µs p99 {:.0} µs; opened in {:.1} s{}{}",
                round + 1,
                row.events,
                row.expected,
                row.p50_us,
                row.p99_us,
                opened_in.as_secs_f64(),
                row.rss_per_stream_kib
                    .map_or(String::new(), |k| format!("; Envoy RSS {k:.1} KiB per stream")),
                if s.ended > 0 {
                    format!("; {} stream(s) ended early: {}", s.ended, s.first_error.unwrap_or_default())
                } else {
                    String::new()
                }
            ));
            if row.ended > 0 {
                report.error(format!(
                    "streams {variant} round {}: {} stream(s) ended while measured",
                    round + 1,
                    row.ended
                ));
            }
            report.streams.push(row);
        }
    }
    Ok(())
}

/// Envoy's heap in use now (tcmalloc's `allocated` from the admin `/memory`
/// endpoint, read live; the `server.memory_allocated` stat lags until the
/// next stats flush), bytes.
fn heap_allocated(envoy: &Envoy) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(&envoy.admin_get("/memory")?).ok()?;
    // Envoy prints the uint64 fields as JSON strings.
    match &v["allocated"] {
        serde_json::Value::String(s) => s.parse().ok(),
        n => n.as_u64(),
    }
}

// ----- scenario 6: instructions per request (callgrind) -------------------------

/// `tools/call` of `tool`, or `tools/list` without one.
async fn one_request(c: &mut client::Conn, tool: Option<&str>) -> Result<(), String> {
    match tool {
        Some(t) => c.call_tool(t).await.map(|_| ()),
        None => c.list_tools().await.map(|_| ()),
    }
}

/// Run `requests` of `op` on one connection (after a warm-up) with Envoy's
/// instrumentation on, and read the instructions Envoy executed.
async fn callgrind_one(
    envoy: &Envoy,
    op: &Op,
    warmup: u64,
    requests: u64,
    out: &Path,
    keep: Option<&Path>,
) -> Result<u64, String> {
    let mut c = client::Conn::open(&Target::new(envoy.port)).await?;
    c.initialize().await?;
    let tool = match op {
        Op::CallTool(t) => t.first().cloned(),
        Op::ListTools => None,
    };
    for _ in 0..warmup {
        one_request(&mut c, tool.as_deref()).await?;
    }
    let ctl = |arg: &str| {
        std::process::Command::new("callgrind_control")
            .args([arg, &envoy.pid().to_string()])
            .output()
            .map_err(|e| format!("callgrind_control: {e}"))
            .and_then(|o| {
                o.status.success().then_some(()).ok_or_else(|| {
                    format!(
                        "callgrind_control {arg}: {}",
                        String::from_utf8_lossy(&o.stderr)
                    )
                })
            })
    };
    ctl("--instr=on")?;
    for _ in 0..requests {
        one_request(&mut c, tool.as_deref()).await?;
    }
    ctl("--instr=off")?;
    ctl("--dump")?;
    // The dump is the newest file next to `out` (callgrind numbers them);
    // Valgrind takes the dump when Envoy next runs code, which an idle Envoy
    // may not do for a long time: poke its admin port while waiting
    // (bounded) for the totals. Instrumentation is already off.
    let dir = out.parent().ok_or("no callgrind dir")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let dump = newest_dump(dir)?;
        let counted = dump.as_ref().and_then(|(_, text)| dump_total(text));
        match (dump, counted) {
            (Some((_, text)), Some(n)) => {
                if let Some(keep) = keep {
                    std::fs::create_dir_all(keep.parent().unwrap_or(Path::new(".")))
                        .and_then(|()| std::fs::write(keep, &text))
                        .map_err(|e| format!("{}: {e}", keep.display()))?;
                }
                return Ok(n);
            }
            (dump, _) if std::time::Instant::now() > deadline => {
                return Err(match dump {
                    Some((file, _)) => format!("{}: no instructions counted", file.display()),
                    None => "callgrind wrote no dump".into(),
                });
            }
            _ => {
                let _ = envoy.admin_get("/ready");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The newest `callgrind.out*` file in `dir` and its text.
fn newest_dump(dir: &Path) -> Result<Option<(PathBuf, String)>, String> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for e in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let p = e.path();
        let is_out = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("callgrind.out"));
        if let (true, Ok(m)) = (is_out, e.metadata().and_then(|m| m.modified())) {
            if newest.as_ref().is_none_or(|(t, _)| m > *t) {
                newest = Some((m, p));
            }
        }
    }
    Ok(newest.map(|(_, p)| {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        (p, text)
    }))
}

/// A dump's instruction count: `totals:` is this dump's cost (`summary:`
/// can be 0 when the instrumentation was off at the start).
fn dump_total(text: &str) -> Option<u64> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    field("totals:")
        .or_else(|| field("summary:"))
        .filter(|n| *n > 0)
}

async fn scenario_callgrind(o: &Options, exe: &Path, report: &mut Report) -> Result<(), String> {
    // Valgrind does not follow a launcher script into the real binary.
    let head = std::fs::read(&o.envoy).map_err(|e| format!("{}: {e}", o.envoy.display()))?;
    if head.starts_with(b"#!") {
        return Err(format!(
            "{} is a script: callgrind needs Envoy's binary (set ENVOY_BIN, as ./build.sh bench does)",
            o.envoy.display()
        ));
    }
    progress(&format!(
        "scenario 6: instructions Envoy executes per request (valgrind --tool=callgrind, {} tools/call)",
        o.cg_requests
    ));
    let b0 = start_backend(exe, "b0", |_| {})?;
    let b1 = start_backend(exe, "b1", |_| {})?;
    let big = start_backend(exe, "big", |b| {
        b.tools = 2000;
        b.tool_bytes = 1000;
    })?;
    let plugin = mcpgw_plugin(&[&b0, &b1], &json!({}), &json!({}));
    let idle_plugin = mcpgw_plugin(&[&b0, &b1], &json!({}), &json!({"path": "/not-mcp"}));
    let big_plugin = mcpgw_plugin(
        &[&big],
        &json!({"tools": {"exclude_regex": ["7$"]}}),
        &json!({"prefix": "always"}),
    );
    let gw = |engine, plugin: &String| Proxy::Mcpgw {
        engine,
        plugin: plugin.clone(),
    };
    let gw_tools = vec!["b0__echo".to_string()];
    let bare = vec!["echo".to_string()];
    let call = |t: &Vec<String>| Op::CallTool(t.clone());
    // (label, what, proxy, backends, op, build)
    type Plan<'a> = (
        String,
        &'a str,
        Proxy,
        Vec<&'a Backend>,
        Op,
        Option<&'a Path>,
    );
    let mut plan: Vec<Plan<'_>> = vec![
        (
            "plain".into(),
            "tools/call",
            Proxy::Plain,
            vec![&b0],
            call(&bare),
            None,
        ),
        (
            "native".into(),
            "tools/call",
            Proxy::Native,
            vec![&b0, &b1],
            call(&gw_tools),
            None,
        ),
    ];
    for engine in [Engine::Module, Engine::Wasm] {
        plan.push((
            idle_label(engine).into(),
            "tools/call",
            Proxy::Idle {
                engine,
                plugin: idle_plugin.clone(),
            },
            vec![&b0],
            call(&bare),
            None,
        ));
        plan.push((
            label(engine).into(),
            "tools/call",
            gw(engine, &plugin),
            vec![&b0, &b1],
            call(&gw_tools),
            None,
        ));
    }
    for (l, engine, path) in &o.extra {
        plan.push((
            format!("{}@{l}", label(*engine)),
            "tools/call",
            gw(*engine, &plugin),
            vec![&b0, &b1],
            call(&gw_tools),
            Some(path.as_path()),
        ));
    }
    plan.push((
        "plain".into(),
        "tools/list",
        Proxy::Plain,
        vec![&big],
        Op::ListTools,
        None,
    ));
    for engine in [Engine::Module, Engine::Wasm] {
        plan.push((
            label(engine).into(),
            "tools/list",
            gw(engine, &big_plugin),
            vec![&big],
            Op::ListTools,
            None,
        ));
    }
    for (l, engine, path) in &o.extra {
        plan.push((
            format!("{}@{l}", label(*engine)),
            "tools/list",
            gw(*engine, &big_plugin),
            vec![&big],
            Op::ListTools,
            Some(path.as_path()),
        ));
    }
    for (name, what, proxy, backends, op, build) in plan {
        let code = build.unwrap_or_else(|| proxy.engine().map_or(&o.wasm as &Path, |e| o.code(e)));
        let yaml = render(&proxy, &backends, code);
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = dir.path().join("callgrind.out");
        let wrapper: Vec<String> = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("--callgrind-out-file={}", out.display())])
            .collect();
        let envoy = Envoy::start_with(
            &o.envoy,
            &name,
            &yaml,
            1,
            &wrapper,
            Duration::from_secs(600),
        )?;
        progress(&format!(
            "  {name} {what}: Envoy under callgrind, pid {}",
            envoy.pid()
        ));
        let (warmup, requests) = match op {
            Op::ListTools => (3, (o.cg_requests / 100).max(3)),
            Op::CallTool(_) => (200.min(o.cg_requests), o.cg_requests),
        };
        let keep = o
            .cg_keep
            .as_ref()
            .map(|d| d.join(format!("callgrind.{name}.{}", what.replace('/', "-"))));
        let ir = match callgrind_one(&envoy, &op, warmup, requests, &out, keep.as_deref()).await {
            Ok(ir) => ir,
            Err(e) => {
                report.error(format!("callgrind {name} {what}: {e}"));
                continue;
            }
        };
        let per = ir as f64 / requests as f64;
        progress(&format!(
            "  {name} {what}: {per:.0} instructions per request"
        ));
        report.callgrind.push(CgRow {
            variant: name,
            what: what.to_string(),
            ir_per_req: per,
            requests,
        });
    }
    Ok(())
}
