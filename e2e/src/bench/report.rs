//! The benchmark report: per-round measurements in, a Markdown document out
//! (medians over rounds; ratios are medians of the per-round ratios, since the
//! variants of one round ran back to back under the same machine load).

use super::run::Options;
use super::sys::MachineInfo;
use std::fmt::Write;
use std::time::Duration;

/// One measured run of one variant in one round.
#[derive(Debug, Clone)]
pub struct Row {
    pub variant: String,
    /// Connections (tools/call) or backends (fan-out).
    pub key: usize,
    pub round: usize,
    pub rps: f64,
    pub p50: f64,
    pub p99: f64,
    /// Envoy CPU µs per request.
    pub envoy_cpu: Option<f64>,
    /// Backends' CPU µs per request.
    pub backend_cpu: Option<f64>,
    /// Mean answer size.
    pub bytes: u64,
    pub errors: u64,
}

#[derive(Debug, Clone)]
pub struct Memory {
    /// (sessions so far, Envoy RSS KiB)
    pub points: Vec<(u64, u64)>,
    pub warm: u64,
    pub target: u64,
    /// Sessions per second after warm-up.
    pub rate: f64,
    pub errors: u64,
}

pub struct Report {
    info: MachineInfo,
    quick: bool,
    concurrency: usize,
    rounds: usize,
    measure: Duration,
    measure_short: Duration,
    delay_ms: u64,
    note: Option<String>,
    args: String,
    pub call: Vec<Row>,
    pub fanout: Vec<(Row, f64)>,
    pub list: Vec<Row>,
    /// Tools and bytes of mcpgw's merged large list.
    pub list_tools: (usize, usize),
    pub memory: Option<Memory>,
    errors: Vec<String>,
    elapsed: Duration,
    load_end: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match (v.get(n / 2), v.get((n.saturating_sub(1)) / 2)) {
        (Some(a), Some(b)) => (a + b) / 2.0,
        _ => f64::NAN,
    }
}

/// `a` as one shell word.
fn shell_quote(a: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=,:@+".contains(c);
    if !a.is_empty() && a.chars().all(plain) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// The variants present, in a fixed order (extra builds last).
fn variants(rows: &[Row]) -> Vec<String> {
    let rank = |v: &str| match v {
        "direct" => 0,
        "plain" => 1,
        "wasm-idle" => 2,
        "native" => 3,
        "mcpgw" => 4,
        _ => 5,
    };
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if !out.contains(&r.variant) {
            out.push(r.variant.clone());
        }
    }
    out.sort_by_key(|v| rank(v));
    out
}

fn f(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "-".into()
    }
}

/// Met / missed against a target, for the table.
fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "**MISSED**",
        None => "not measured",
    }
}

impl Report {
    pub fn new(info: MachineInfo, o: &Options) -> Report {
        let args: Vec<String> = std::env::args().skip(1).map(|a| shell_quote(&a)).collect();
        Report {
            info,
            quick: o.quick,
            concurrency: o.envoy_concurrency,
            rounds: o.rounds,
            measure: o.measure,
            measure_short: o.measure_short,
            delay_ms: o.delay_ms,
            note: o.note.clone(),
            args: args.join(" "),
            call: Vec::new(),
            fanout: Vec::new(),
            list: Vec::new(),
            list_tools: (0, 0),
            memory: None,
            errors: Vec::new(),
            elapsed: Duration::ZERO,
            load_end: 0.0,
        }
    }

    pub fn error(&mut self, e: String) {
        self.errors.push(e);
    }

    pub fn finish(&mut self, elapsed: Duration, load_end: f64) {
        self.elapsed = elapsed;
        self.load_end = load_end;
    }

    fn rows<'a>(rows: &'a [Row], variant: &'a str, key: usize) -> impl Iterator<Item = &'a Row> {
        rows.iter()
            .filter(move |r| r.variant == variant && r.key == key)
    }

    fn med(rows: &[Row], variant: &str, key: usize, m: impl Fn(&Row) -> Option<f64>) -> f64 {
        median(Self::rows(rows, variant, key).filter_map(m).collect())
    }

    /// Median over rounds of `m(a) / m(b)`.
    fn ratio(rows: &[Row], a: &str, b: &str, key: usize, m: impl Fn(&Row) -> Option<f64>) -> f64 {
        let mut v = Vec::new();
        for ra in Self::rows(rows, a, key) {
            if let Some(rb) = Self::rows(rows, b, key).find(|r| r.round == ra.round) {
                if let (Some(x), Some(y)) = (m(ra), m(rb)) {
                    if y > 0.0 {
                        v.push(x / y);
                    }
                }
            }
        }
        median(v)
    }

    fn has(rows: &[Row], variant: &str) -> bool {
        rows.iter().any(|r| r.variant == variant)
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let i = &self.info;
        let _ = writeln!(s, "# mcpgw benchmark results\n");
        // Only the load before the run counts: at the end the 1-minute
        // average is the benchmark's own closed-loop load.
        let busy = i.load_start > 0.25 * i.cores as f64;
        let mut warnings = Vec::new();
        if let Some(n) = &self.note {
            warnings.push(n.clone());
        }
        if self.quick {
            warnings.push("Quick mode (`--quick`): short windows and few rounds; this checks the harness, the figures are indicative only.".into());
        }
        if busy {
            warnings.push(format!(
                "The machine was busy when the run started: load average {:.2} on {} cores ({:.2} at the end, which includes the benchmark's own load). Other processes took CPU from Envoy, the backends and the load generator, so absolute figures are noisy; ratios within a round are more robust, CPU time per request the most.",
                i.load_start, i.cores, self.load_end
            ));
        }
        if !self.errors.is_empty() {
            warnings.push(format!(
                "{} run(s) reported errors (listed at the end): their figures are suspect.",
                self.errors.len()
            ));
        }
        if !warnings.is_empty() {
            let _ = writeln!(s, "> **PRELIMINARY**\n>");
            for w in &warnings {
                let _ = writeln!(s, "> - {w}");
            }
            let _ = writeln!(s);
        }
        let cmd = if self.args.is_empty() {
            "cargo run --release -p mcpgw-e2e --bin bench".to_string()
        } else {
            format!(
                "cargo run --release -p mcpgw-e2e --bin bench -- {}",
                self.args
            )
        };
        machine_rows(
            &mut s,
            i,
            &format!("`--concurrency {}`", self.concurrency),
            self.load_end,
        );
        let _ = writeln!(
            s,
            "| Run | {} mode, {} rounds, tools/call windows {:.1} s, fan-out/list windows {:.1} s, took {:.0} s |",
            if self.quick { "quick" } else { "full" },
            self.rounds,
            self.measure.as_secs_f64(),
            self.measure_short.as_secs_f64(),
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(s, "| Command | `{cmd}` |\n");

        self.targets(&mut s);
        self.call_section(&mut s);
        self.fanout_section(&mut s);
        self.list_section(&mut s);
        self.memory_section(&mut s);

        if !self.errors.is_empty() {
            let _ = writeln!(s, "## Errors\n");
            for e in &self.errors {
                let _ = writeln!(s, "- {}", e.replace('\n', " "));
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "## Method\n");
        let _ = writeln!(
            s,
            "- Everything runs on 127.0.0.1: the benchmark's own backend (`bench-backend`: hyper, canned JSON-RPC answers, `TCP_NODELAY`), Envoy ({} worker(s), no access log, warn logging), and a closed-loop load generator on HTTP/1.1 keep-alive connections (hyper, one thread). Each connection first opens an MCP session (`initialize`, `notifications/initialized`) and then repeats its request with that `Mcp-Session-Id`.",
            self.concurrency
        );
        let _ = writeln!(s, "- Variants: **direct** (client to backend), **plain** (Envoy's HTTP router to one backend), **native** (Envoy's `envoy.filters.http.mcp` + `envoy.filters.http.mcp_router`, 2 backends, tools called as `b0__echo`/`b1__echo`), **mcpgw** (the wasm filter + router, 2 backends, same tool names), **mcpgw-quiet** (the same with `observability` off: no per-request stats or access-log fields), **mcpgw-2026** (MCP 2026-07-28 clients: no session, every POST with `Mcp-Method`/`Mcp-Name`, `echo` of an unprefixed backend that speaks 2026-07-28, so the call is routed from the headers without reading the body), **wasm-idle** (mcpgw.wasm loaded in front of the plain route but configured for another path, so it only looks at the headers: the cost of any proxy-wasm filter in V8), and **mcpgw@LABEL** (another build of the filter, `--wasm-variant`). Connection *i* calls the tool of backend *i* mod 2. The native filters' configuration is checked with `envoy --mode validate` first.");
        let _ = writeln!(s, "- Each round runs every variant back to back (the order rotates per round); a run is a warm-up, then a measured window in which only requests that complete count. Figures are medians over rounds; ratios are medians of per-round ratios.");
        let _ = writeln!(s, "- Envoy CPU per request: utime+stime of the Envoy process (`/proc/<pid>/stat`, all threads) over the window, divided by the requests completed in it; the backends' likewise. p50/p99 are client-side latencies.");
        let _ = writeln!(s, "- MB is 10^6 bytes. Fan-out backends answer after a fixed {} ms; the reference is the slowest of the backends' own p50 measured directly in the same round.", self.delay_ms);
        s
    }

    fn call_ratio(&self, a: &str, b: &str, key: usize) -> f64 {
        Self::ratio(&self.call, a, b, key, |r| Some(r.rps))
    }

    fn targets(&self, s: &mut String) {
        let _ = writeln!(s, "## Targets (issue 5)\n");
        let _ = writeln!(s, "| Target | Measured | Result |\n|---|---|---|");
        if !self.call.is_empty() {
            for conns in [1usize, 16] {
                let r = self.call_ratio("mcpgw", "plain", conns);
                let ok = r.is_finite().then_some(r >= 0.85);
                let _ = writeln!(
                    s,
                    "| tools/call, {conns} connection(s): mcpgw ≥ 0.85× plain Envoy req/s | {}× | {} |",
                    f(r, 2),
                    verdict(ok)
                );
                let r = self.call_ratio("mcpgw", "native", conns);
                let ok = r.is_finite().then_some(r >= 1.0);
                let _ = writeln!(
                    s,
                    "| tools/call, {conns} connection(s): mcpgw ≥ 1.0× native mcp_router req/s | {}× | {} |",
                    f(r, 2),
                    verdict(ok)
                );
            }
        }
        if !self.fanout.is_empty() {
            for n in [1usize, 2, 4, 8] {
                let r = self.fanout_ratio("mcpgw", n);
                let ok = r.is_finite().then_some(r <= 1.2);
                let _ = writeln!(
                    s,
                    "| tools/list fan-out over {n}: mcpgw p50 ≤ 1.2× slowest backend | {}× | {} |",
                    f(r, 2),
                    verdict(ok)
                );
            }
        }
        if !self.list.is_empty() {
            let mbps = self.list_mbps("mcpgw");
            let ok = mbps.is_finite().then_some(mbps >= 200.0);
            let _ = writeln!(
                s,
                "| large tools/list through mcpgw ≥ 200 MB/s (merged bytes / p50 latency, end to end) | {} MB/s | {} |",
                f(mbps, 0),
                verdict(ok)
            );
        }
        if let Some(m) = &self.memory {
            let (grows, text) = m.verdict();
            let _ = writeln!(
                s,
                "| Envoy RSS does not grow with sessions | {text} | {} |",
                verdict(Some(!grows))
            );
        }
        let _ = writeln!(s);
    }

    fn call_section(&self, s: &mut String) {
        if self.call.is_empty() {
            return;
        }
        let _ = writeln!(s, "## 1. tools/call\n");
        let _ = writeln!(s, "| Variant | Conns | req/s | p50 ms | p99 ms | Envoy CPU µs/req | Backends CPU µs/req | req/s vs plain | Errors |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for conns in [1usize, 16] {
            for v in variants(&self.call) {
                let v = v.as_str();
                let c = &self.call;
                let errors: u64 = Self::rows(c, v, conns).map(|r| r.errors).sum();
                let vs = if Self::has(c, "plain") {
                    format!("{}×", f(self.call_ratio(v, "plain", conns), 2))
                } else {
                    "-".into()
                };
                let _ = writeln!(
                    s,
                    "| {v} | {conns} | {} | {} | {} | {} | {} | {vs} | {errors} |",
                    f(Self::med(c, v, conns, |r| Some(r.rps)), 0),
                    f(Self::med(c, v, conns, |r| Some(r.p50)), 3),
                    f(Self::med(c, v, conns, |r| Some(r.p99)), 3),
                    f(Self::med(c, v, conns, |r| r.envoy_cpu), 0),
                    f(Self::med(c, v, conns, |r| r.backend_cpu), 0),
                );
            }
        }
        let _ = writeln!(s);
        if Self::has(&self.call, "mcpgw") && Self::has(&self.call, "plain") {
            let _ = writeln!(
                s,
                "| Ratio (median of per-round ratios) | 1 conn | 16 conns |\n|---|---:|---:|"
            );
            let mut line = |name: &str, m: &dyn Fn(usize) -> f64, d: usize, unit: &str| {
                let _ = writeln!(
                    s,
                    "| {name} | {}{unit} | {}{unit} |",
                    f(m(1), d),
                    f(m(16), d)
                );
            };
            line(
                "mcpgw / plain Envoy, req/s",
                &|k| self.call_ratio("mcpgw", "plain", k),
                2,
                "×",
            );
            line(
                "mcpgw / native mcp_router, req/s",
                &|k| self.call_ratio("mcpgw", "native", k),
                2,
                "×",
            );
            line(
                "native mcp_router / plain Envoy, req/s",
                &|k| self.call_ratio("native", "plain", k),
                2,
                "×",
            );
            line(
                "mcpgw / plain Envoy, Envoy CPU per request",
                &|k| Self::ratio(&self.call, "mcpgw", "plain", k, |r| r.envoy_cpu),
                2,
                "×",
            );
            line(
                "mcpgw / native mcp_router, Envoy CPU per request",
                &|k| Self::ratio(&self.call, "mcpgw", "native", k, |r| r.envoy_cpu),
                2,
                "×",
            );
            let extra = |a: &'static str, b: &'static str| {
                move |k| {
                    Self::med(&self.call, a, k, |r| r.envoy_cpu)
                        - Self::med(&self.call, b, k, |r| r.envoy_cpu)
                }
            };
            line(
                "mcpgw's extra Envoy CPU over plain (µs/req)",
                &extra("mcpgw", "plain"),
                0,
                "",
            );
            if Self::has(&self.call, "wasm-idle") {
                line(
                    "of which: any wasm filter in V8 (wasm-idle − plain, µs/req)",
                    &extra("wasm-idle", "plain"),
                    0,
                    "",
                );
                line(
                    "of which: mcpgw's own work (mcpgw − wasm-idle, µs/req)",
                    &extra("mcpgw", "wasm-idle"),
                    0,
                    "",
                );
            }
            if Self::has(&self.call, "mcpgw-quiet") {
                line(
                    "of which: stats and access-log fields (mcpgw − mcpgw-quiet, µs/req)",
                    &extra("mcpgw", "mcpgw-quiet"),
                    0,
                    "",
                );
                line(
                    "mcpgw-quiet / plain Envoy, req/s",
                    &|k| self.call_ratio("mcpgw-quiet", "plain", k),
                    2,
                    "×",
                );
                line(
                    "mcpgw-quiet / native mcp_router, req/s",
                    &|k| self.call_ratio("mcpgw-quiet", "native", k),
                    2,
                    "×",
                );
            }
            if Self::has(&self.call, "mcpgw-2026") {
                line(
                    "mcpgw-2026 (header-routed) / mcpgw (sessions), req/s",
                    &|k| self.call_ratio("mcpgw-2026", "mcpgw", k),
                    2,
                    "×",
                );
                line(
                    "mcpgw-2026 / plain Envoy, req/s",
                    &|k| self.call_ratio("mcpgw-2026", "plain", k),
                    2,
                    "×",
                );
            }
            for v in variants(&self.call) {
                if !v.starts_with("mcpgw@") {
                    continue;
                }
                line(
                    &format!("{v} / mcpgw, req/s"),
                    &|k| self.call_ratio(&v, "mcpgw", k),
                    2,
                    "×",
                );
                line(
                    &format!("{v} / mcpgw, Envoy CPU per request"),
                    &|k| Self::ratio(&self.call, &v, "mcpgw", k, |r| r.envoy_cpu),
                    2,
                    "×",
                );
                line(
                    &format!("{v} / plain Envoy, req/s"),
                    &|k| self.call_ratio(&v, "plain", k),
                    2,
                    "×",
                );
            }
            let _ = writeln!(s);
        }
    }

    fn fanout_ratio(&self, v: &str, n: usize) -> f64 {
        median(
            self.fanout
                .iter()
                .filter(|(r, _)| r.variant == v && r.key == n)
                .map(|(r, slow)| r.p50 / slow)
                .collect(),
        )
    }

    fn fanout_section(&self, s: &mut String) {
        if self.fanout.is_empty() {
            return;
        }
        let _ = writeln!(
            s,
            "## 2. tools/list fan-out (each backend delays {} ms)\n",
            self.delay_ms
        );
        let _ = writeln!(s, "| Backends | Slowest backend p50 ms | mcpgw p50 ms | mcpgw p99 ms | mcpgw / slowest | native p50 ms | native p99 ms | native / slowest |");
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|");
        let rows: Vec<Row> = self.fanout.iter().map(|(r, _)| r.clone()).collect();
        for n in [1usize, 2, 4, 8] {
            let slow = median(
                self.fanout
                    .iter()
                    .filter(|(r, _)| r.variant == "mcpgw" && r.key == n)
                    .map(|(_, s)| *s)
                    .collect(),
            );
            let _ = writeln!(
                s,
                "| {n} | {} | {} | {} | {}× | {} | {} | {}× |",
                f(slow, 2),
                f(Self::med(&rows, "mcpgw", n, |r| Some(r.p50)), 2),
                f(Self::med(&rows, "mcpgw", n, |r| Some(r.p99)), 2),
                f(self.fanout_ratio("mcpgw", n), 2),
                f(Self::med(&rows, "native", n, |r| Some(r.p50)), 2),
                f(Self::med(&rows, "native", n, |r| Some(r.p99)), 2),
                f(self.fanout_ratio("native", n), 2),
            );
        }
        let _ = writeln!(s);
    }

    fn list_mbps(&self, v: &str) -> f64 {
        Self::med(&self.list, v, 1, |r| Some(r.bytes as f64 / r.p50 / 1000.0))
    }

    fn list_section(&self, s: &mut String) {
        if self.list.is_empty() {
            return;
        }
        let _ = writeln!(s, "## 3. A large tools/list (2,000 tools of about 1 KB; mcpgw hides 10 % and prefixes the rest)\n");
        let _ = writeln!(s, "| Variant | Answer bytes | p50 ms | p99 ms | MB/s (bytes / p50) | Envoy CPU ms/req | MB per Envoy CPU second |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
        for v in variants(&self.list) {
            let v = v.as_str();
            let l = &self.list;
            let bytes = Self::med(l, v, 1, |r| Some(r.bytes as f64));
            let cpu = Self::med(l, v, 1, |r| r.envoy_cpu);
            let _ = writeln!(
                s,
                "| {v} | {} | {} | {} | {} | {} | {} |",
                f(bytes, 0),
                f(Self::med(l, v, 1, |r| Some(r.p50)), 2),
                f(Self::med(l, v, 1, |r| Some(r.p99)), 2),
                f(self.list_mbps(v), 0),
                f(cpu / 1000.0, 2),
                f(bytes / cpu, 0),
            );
        }
        let _ = writeln!(s);
        if Self::has(&self.list, "mcpgw") && Self::has(&self.list, "plain") {
            let l = &self.list;
            let bytes = Self::med(l, "mcpgw", 1, |r| Some(r.bytes as f64));
            let extra_ms = Self::med(l, "mcpgw", 1, |r| Some(r.p50))
                - Self::med(l, "plain", 1, |r| Some(r.p50));
            let extra_cpu = Self::med(l, "mcpgw", 1, |r| r.envoy_cpu)
                - Self::med(l, "plain", 1, |r| r.envoy_cpu);
            let _ = writeln!(
                s,
                "The filter's own share (mcpgw minus plain Envoy, same list): {} ms more latency ({} MB/s of merged answer over that time) and {} ms more Envoy CPU per list ({} MB per CPU second). mcpgw's answer: {} tools, {} bytes.\n",
                f(extra_ms, 2),
                f(bytes / extra_ms / 1000.0, 0),
                f(extra_cpu / 1000.0, 2),
                f(bytes / extra_cpu, 0),
                self.list_tools.0,
                self.list_tools.1,
            );
        }
    }

    fn memory_section(&self, s: &mut String) {
        let Some(m) = &self.memory else { return };
        let _ = writeln!(s, "## 4. Envoy memory over sessions (mcpgw, 2 backends; each session: initialize + one tools/call)\n");
        let _ = writeln!(s, "| Sessions | Envoy RSS MiB |\n|---:|---:|");
        for (n, kib) in &m.points {
            let what = if *n == 0 {
                " (idle, after start)".to_string()
            } else if *n == m.warm {
                " (after warm-up)".to_string()
            } else {
                String::new()
            };
            let _ = writeln!(s, "| {n}{what} | {:.1} |", *kib as f64 / 1024.0);
        }
        let (_, text) = m.verdict();
        let _ = writeln!(
            s,
            "\n{text}. {} sessions/s after warm-up; {} errors (target {} sessions).\n",
            f(m.rate, 0),
            m.errors,
            m.target
        );
    }
}

impl Memory {
    /// Whether RSS grows with sessions, and the figures saying so. Growth is
    /// judged after warm-up (pools, JIT and allocator arenas fill first): over
    /// the second half of the sessions, more than 4 MiB plus 2 % counts.
    pub fn verdict(&self) -> (bool, String) {
        let after_warm: Vec<&(u64, u64)> = self
            .points
            .iter()
            .filter(|(n, _)| *n >= self.warm)
            .collect();
        let (Some(first), Some(last)) = (after_warm.first(), after_warm.last()) else {
            return (false, "not enough points".into());
        };
        let mid = after_warm
            .get(after_warm.len() / 2)
            .copied()
            .unwrap_or(first);
        let sessions = last.0.saturating_sub(first.0).max(1);
        let delta_kib = last.1 as i64 - first.1 as i64;
        let per_session = delta_kib as f64 * 1024.0 / sessions as f64;
        let late_delta = last.1 as i64 - mid.1 as i64;
        let grows = late_delta > 4096 + (mid.1 as i64) / 50;
        (
            grows,
            format!(
                "{:+.1} MiB over {} sessions after warm-up ({:+.1} bytes/session; {:+.1} MiB over the second half)",
                delta_kib as f64 / 1024.0,
                sessions,
                per_session,
                late_delta as f64 / 1024.0
            ),
        )
    }
}

/// The opening rows of a report's "Machine and run" table (with its heading):
/// date, CPU, memory, kernel, Envoy (`envoy_note` in brackets), mcpgw, load.
pub fn machine_rows(s: &mut String, i: &MachineInfo, envoy_note: &str, load_end: f64) {
    let _ = writeln!(s, "## Machine and run\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| Date | {} |", i.date);
    let _ = writeln!(s, "| CPU | {} × {} |", i.cores, i.cpu_model);
    let _ = writeln!(s, "| Memory | {} |", i.memory);
    let _ = writeln!(s, "| Kernel | {} |", i.kernel);
    let _ = writeln!(s, "| Envoy | {} ({envoy_note}) |", i.envoy_version);
    let _ = writeln!(s, "| mcpgw | commit {}, {} |", i.git_commit, i.wasm);
    let _ = writeln!(
        s,
        "| Load average (1 min) | {:.2} at start, {:.2} at end |",
        i.load_start, load_end
    );
}
