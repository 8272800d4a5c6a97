//! One stdio server process: started in its own process group, its stdout
//! read as newline-delimited JSON-RPC (lines capped at [`MAX_LINE`]), its
//! stderr copied to mcpgw's log, its memory read from /proc, and stopped the
//! way the MCP spec asks: stdin closed, then SIGTERM, then SIGKILL, each
//! step only if the one before did not end it in time. Signals go to the
//! whole group, so what a launcher (`npx`, `uvx`, a shell) started goes too.

use crate::model::StdioCommand;
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// Longest line read from a server (a longer one is skipped and logged).
pub const MAX_LINE: usize = 32 << 20;
/// How long a server may take to exit once its stdin is closed.
pub const STDIN_GRACE: Duration = Duration::from_secs(2);

pub fn log(name: &str, msg: impl std::fmt::Display) {
    eprintln!("mcpgw: [{name}] {msg}");
}

/// A running server process.
pub struct Proc {
    pub pid: u32,
    stdin: Option<mpsc::UnboundedSender<String>>,
    child: tokio::process::Child,
    pub started: Instant,
}

/// Start `cmd`; its stdout lines arrive on the returned receiver, which
/// ends when the process closes its stdout.
pub fn spawn(
    name: &str,
    cmd: &StdioCommand,
) -> Result<(Proc, mpsc::UnboundedReceiver<String>), String> {
    let mut c = tokio::process::Command::new(&cmd.command);
    c.args(&cmd.args)
        .envs(&cmd.env)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(cwd) = &cmd.cwd {
        c.current_dir(cwd);
    }
    let mut child = c.spawn().map_err(|e| {
        format!(
            "cannot start `{}`: {e} (check \"command\" and \"cwd\" in the servers file)",
            cmd.command
        )
    })?;
    let pid = child.id().unwrap_or_default();
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("the process has no stdio pipes".into());
    };

    let (in_tx, mut in_rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut stdin = stdin;
        while let Some(line) = in_rx.recv().await {
            let ok = stdin.write_all(line.as_bytes()).await.is_ok()
                && stdin.write_all(b"\n").await.is_ok()
                && stdin.flush().await.is_ok();
            if !ok {
                break;
            }
        }
        // Dropping stdin closes the pipe: the server sees end of input.
    });

    let (out_tx, out_rx) = mpsc::unbounded_channel::<String>();
    let who = name.to_string();
    tokio::spawn(async move {
        let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE));
        while let Some(item) = lines.next().await {
            match item {
                Ok(line) => {
                    if line.trim().is_empty() {
                        continue;
                    }
                    if out_tx.send(line).is_err() {
                        break;
                    }
                }
                Err(LinesCodecError::MaxLineLengthExceeded) => log(
                    &who,
                    format!("skipped a message longer than {} MiB", MAX_LINE >> 20),
                ),
                Err(LinesCodecError::Io(e)) => {
                    log(&who, format!("reading its stdout failed: {e}"));
                    break;
                }
            }
        }
    });

    let who = name.to_string();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log(&who, line);
        }
    });

    Ok((
        Proc {
            pid,
            stdin: Some(in_tx),
            child,
            started: Instant::now(),
        },
        out_rx,
    ))
}

fn signal_group(pid: u32, sig: libc::c_int) {
    if let Ok(p) = i32::try_from(pid) {
        if p > 0 {
            // SAFETY: kill(2) with a negative pid signals that process group;
            // the group is the server's own (process_group(0) at spawn).
            unsafe {
                libc::kill(-p, sig);
            }
        }
    }
}

impl Proc {
    /// Write one message; false once the process cannot take input.
    #[cfg(test)]
    pub fn send(&self, line: String) -> bool {
        self.stdin.as_ref().is_some_and(|s| s.send(line).is_ok())
    }

    /// A writer of its stdin (the pipe closes when every writer is gone).
    pub fn input(&self) -> Option<mpsc::UnboundedSender<String>> {
        self.stdin.clone()
    }

    /// Wait for the process to exit.
    pub async fn wait(&mut self) -> String {
        match self.child.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown status ({e})"),
        }
    }

    /// Stop it: close stdin and wait [`STDIN_GRACE`], then SIGTERM to the
    /// group and wait `grace`, then SIGKILL. Says how it ended.
    pub async fn stop(&mut self, grace: Duration) -> String {
        self.stdin = None;
        if let Ok(s) = tokio::time::timeout(STDIN_GRACE, self.child.wait()).await {
            // The leader is gone; whatever it left behind in the group goes too.
            signal_group(self.pid, libc::SIGKILL);
            return format!("exited after its stdin closed ({})", status(s));
        }
        signal_group(self.pid, libc::SIGTERM);
        if let Ok(s) = tokio::time::timeout(grace, self.child.wait()).await {
            signal_group(self.pid, libc::SIGKILL);
            return format!("stopped by SIGTERM ({})", status(s));
        }
        signal_group(self.pid, libc::SIGKILL);
        let _ = self.child.kill().await;
        format!(
            "killed: still running {} ms after SIGTERM",
            grace.as_millis()
        )
    }
}

fn status(s: std::io::Result<std::process::ExitStatus>) -> String {
    match s {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Resident memory of every process in group `pgid`, in bytes (Linux
/// /proc; `None` elsewhere or when the group is gone).
pub fn group_rss(pgid: u32) -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    let mut total = 0u64;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command name in parentheses: state, ppid, pgrp, ... and
        // the resident set (in pages) is the 22nd field from there.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) != Some(pgid) {
            continue;
        }
        if let Some(pages) = fields.get(21).and_then(|r| r.parse::<u64>().ok()) {
            total = total.saturating_add(pages.saturating_mul(page));
            found = true;
        }
    }
    found.then_some(total)
}

/// `41.2 MiB`.
pub fn mib(bytes: u64) -> String {
    // Display only: the precision lost converting to f64 does not matter.
    #[allow(clippy::cast_precision_loss)]
    let m = bytes as f64 / 1_048_576.0;
    format!("{m:.1} MiB")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn rss_of_this_process_group() {
        // SAFETY: getpgrp has no preconditions.
        let pgid = u32::try_from(unsafe { libc::getpgrp() }).unwrap();
        let rss = group_rss(pgid).expect("this test's own group");
        assert!(rss > 1 << 20, "{rss}");
        assert_eq!(mib(3 << 20), "3.0 MiB");
    }

    #[tokio::test]
    async fn a_server_that_ignores_sigterm_is_killed_after_the_grace() {
        let cmd = StdioCommand {
            command: "sh".into(),
            // Ignores SIGTERM (inherited by `sleep`) and does not read stdin.
            args: vec!["-c".into(), "trap '' TERM; exec sleep 30".into()],
            env: Default::default(),
            cwd: None,
            max_processes: None,
            shared: false,
        };
        let (mut p, _out) = spawn("t", &cmd).unwrap();
        let started = Instant::now();
        let how = p.stop(Duration::from_millis(300)).await;
        assert!(how.starts_with("killed"), "{how}");
        assert!(started.elapsed() < STDIN_GRACE + Duration::from_secs(2));
        assert!(group_rss(p.pid).is_none(), "the group is gone");
    }

    #[tokio::test]
    async fn lines_in_and_out() {
        let cmd = StdioCommand {
            command: "sh".into(),
            args: vec!["-c".into(), "read l; echo \"$l\"; echo; echo second".into()],
            env: Default::default(),
            cwd: None,
            max_processes: None,
            shared: false,
        };
        let (mut p, mut out) = spawn("t", &cmd).unwrap();
        assert!(p.send(r#"{"a":1}"#.into()));
        assert_eq!(out.recv().await.unwrap(), r#"{"a":1}"#);
        assert_eq!(out.recv().await.unwrap(), "second");
        assert!(out.recv().await.is_none());
        let how = p.stop(Duration::from_secs(1)).await;
        assert!(how.starts_with("exited"), "{how}");
    }
}
