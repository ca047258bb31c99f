//! One `check-host` line: a status, what was checked, what was found, and
//! the command that fixes it.

use std::fmt;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// As it should be.
    Ok,
    /// Works, but not as well or as safely as it could.
    Warn,
    /// `s2ds run` will fail (or lose packets) until it is fixed.
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        })
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// OK, WARN or FAIL.
    pub status: Status,
    /// What was checked ("hugepages", "nic 0000:00:04.0", ...).
    pub what: String,
    /// What was found.
    pub detail: String,
    /// The command (or step) that fixes it; None when there is nothing to fix.
    pub fix: Option<String>,
}

impl Finding {
    /// An OK finding.
    pub fn ok(what: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            status: Status::Ok,
            what: what.into(),
            detail: detail.into(),
            fix: None,
        }
    }

    /// A WARN or FAIL finding with its fix.
    pub fn bad(
        status: Status,
        what: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            status,
            what: what.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The screen: one line per finding (`STATUS what: detail`), the fix
/// indented under it.
pub fn render(findings: &[Finding]) -> String {
    let width = findings.iter().map(|f| f.what.len()).max().unwrap_or(0);
    let mut s = String::new();
    for f in findings {
        s.push_str(&format!(
            "{:<4}  {:<width$}  {}\n",
            f.status.to_string(),
            f.what,
            f.detail
        ));
        if let Some(fix) = &f.fix {
            s.push_str(&format!("      {:<width$}  fix: {fix}\n", ""));
        }
    }
    s
}
