//! Assertions over a client script's JSON summary: every mismatch is
//! collected so one run reports all of them, with the wire the script
//! recorded.

use serde_json::Value;

/// The recorded exchanges (`summary["wire"]`), one a line, for failure messages.
pub fn wire_lines(summary: &Value) -> String {
    summary["wire"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Collects mismatches so one run reports all of them.
pub struct Checks {
    label: String,
    failures: Vec<String>,
}

impl Checks {
    pub fn new(label: &str) -> Checks {
        Checks {
            label: label.into(),
            failures: Vec::new(),
        }
    }

    pub fn eq(&mut self, what: &str, got: &Value, want: &Value) {
        if got != want {
            self.failures
                .push(format!("{what}:\n      got:  {got}\n      want: {want}"));
        }
    }

    pub fn that(&mut self, what: &str, ok: bool, got: &Value) {
        if !ok {
            self.failures.push(format!("{what}:\n      got: {got}"));
        }
    }

    /// Fail with every mismatch, and the wire of `summary`.
    pub fn finish(self, summary: &Value) {
        assert!(
            self.failures.is_empty(),
            "{}: {} mismatch(es):\n  {}\nwire:\n{}",
            self.label,
            self.failures.len(),
            self.failures.join("\n  "),
            wire_lines(summary)
        );
    }
}
