//! What the benchmark reads from the system: a process's CPU time and
//! resident memory (`/proc`), and the machine facts printed with the results.

use std::process::Command;

/// User + system CPU time of process `pid` (all its threads), in microseconds.
pub fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count fields after ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': field 3 (state) is index 0, so utime (14) is 11, stime (15) is 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / clock_ticks())
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Resident set size of process `pid` (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Facts about the machine and the build under test.
#[derive(Debug, Clone, Default)]
pub struct MachineInfo {
    pub cores: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
    pub envoy_version: String,
    pub date: String,
    pub git_commit: String,
    pub wasm: String,
    pub load_start: f64,
}

impl MachineInfo {
    /// `builds`: the filter builds under test (named in the report).
    pub fn collect(envoy: &std::path::Path, builds: &[&std::path::Path]) -> MachineInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
            .unwrap_or_default();
        let envoy_version = run(&envoy.display().to_string(), &["--version"])
            .map(|v| {
                // "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
                v.rsplit("version:").next().unwrap_or(&v).trim().to_string()
            })
            .unwrap_or_else(|| "unknown".into());
        let root = crate::envoy::workspace_root();
        let root_s = root.display().to_string();
        let commit = run("git", &["-C", &root_s, "rev-parse", "--short=12", "HEAD"])
            .unwrap_or_else(|| "unknown".into());
        let dirty =
            run("git", &["-C", &root_s, "status", "--porcelain"]).is_some_and(|s| !s.is_empty());
        let wasm_desc = builds
            .iter()
            .map(|b| match std::fs::metadata(b) {
                Ok(m) => format!("{} ({} bytes)", b.display(), m.len()),
                Err(_) => format!("{} (missing)", b.display()),
            })
            .collect::<Vec<_>>()
            .join(", ");
        MachineInfo {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model,
            memory,
            kernel: run("uname", &["-sr"]).unwrap_or_default(),
            envoy_version,
            date: run("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]).unwrap_or_default(),
            git_commit: if dirty {
                format!("{commit} (with uncommitted changes)")
            } else {
                commit
            },
            wasm: wasm_desc,
            load_start: loadavg(),
        }
    }
}
