//! The audit log: one JSON line per mutating call, allowed or not, and per refused call —
//! who, what, on what, and the outcome. Lines go to the audit file (`--audit-log`), written
//! as they happen so a crash loses none, and to the log (target `corral::audit`: refusals at
//! INFO, the rest at DEBUG).

use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;

/// How a call ended at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Allowed,
    Denied,
    Unauthenticated,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Unauthenticated => "unauthenticated",
        }
    }
}

/// One line of the audit log.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    /// The principal, or what the caller claimed to be (`-` when nothing).
    pub principal: &'a str,
    pub action: &'a str,
    /// What the action is on (`-` when nothing).
    pub object: &'a str,
    pub outcome: Outcome,
    /// Why, for a refusal.
    pub reason: &'a str,
}

#[derive(Debug, Default)]
pub(crate) struct AuditLog {
    file: Option<Mutex<std::fs::File>>,
}

impl AuditLog {
    /// Appends to `path` (created readable by its owner only), or logs only.
    pub(crate) fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(path) => {
                let mut options = std::fs::OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                Some(Mutex::new(options.open(path)?))
            }
            None => None,
        };
        Ok(Self { file })
    }

    pub(crate) fn record(&self, line: &Line<'_>) {
        let Line {
            principal,
            action,
            object,
            outcome,
            reason,
        } = *line;
        if outcome == Outcome::Allowed {
            tracing::debug!(target: "corral::audit", principal, action, object, outcome = outcome.as_str());
        } else {
            tracing::info!(target: "corral::audit", principal, action, object, outcome = outcome.as_str(), reason);
        }
        let Some(file) = &self.file else { return };
        let mut json = serde_json::json!({
            "time": jiff::Timestamp::now().to_string(),
            "principal": principal,
            "action": action,
            "object": object,
            "outcome": outcome.as_str(),
        });
        if !reason.is_empty() {
            json["reason"] = reason.into();
        }
        let mut text = json.to_string();
        text.push('\n');
        // One write per line: lines of concurrent calls never interleave.
        let written = match file.lock() {
            Ok(mut f) => f.write_all(text.as_bytes()),
            Err(poisoned) => poisoned.into_inner().write_all(text.as_bytes()),
        };
        if let Err(error) = written {
            tracing::error!(%error, "cannot write the audit log");
        }
    }
}
