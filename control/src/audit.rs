//! The audit log: one JSON object per line for every API call and every
//! peer event (key exchanges, rekey requests, releases), saying who did
//! what to which session and how it ended. Written to the file named by
//! `[logging] audit_file` (created mode 0600, appended to) and to stderr
//! through `tracing` (target `audit`), which journald collects under
//! systemd.
//!
//! A record holds identities, uids, addresses and status codes, never a
//! token, a key or a secret: the fields are fixed by [`AuditRecord`] and
//! none of them carries request metadata.

use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use tracing::{info, warn};

/// What happened: an API call, or an event on the peer channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A northbound gRPC call.
    Api,
    /// The peer channel.
    Peer,
}

/// One line of the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// When, RFC 3339 UTC with milliseconds (filled in by [`AuditLog::record`]).
    pub time: String,
    /// API call or peer event.
    pub source: Source,
    /// Who: the authenticated identity for the API (`"-"` when
    /// authentication failed), the peer gateway's name for peer events.
    pub identity: String,
    /// The gRPC method (`req`, `hello`, `update`, `release`, `list`,
    /// `status`) or the peer event (`key_exchange`, `key_offer`,
    /// `key_commit`, `rekey_request`, `release`).
    pub method: String,
    /// The session.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// `PROD` or `CONS`, where known.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// Endpoints named by the call ("ip:port").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Peer events: the key epoch concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// The peer gateway involved.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer: String,
    /// The result: a gRPC status code name (`OK`, `INVALID_ARGUMENT`, ...)
    /// or, for peer events, `OK` or the refusal code.
    pub code: String,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl AuditRecord {
    /// A record for `method` from `source` by `identity`, with code `OK`
    /// and nothing else filled in.
    pub fn new(source: Source, identity: &str, method: &str) -> AuditRecord {
        AuditRecord {
            time: String::new(),
            source,
            identity: identity.to_string(),
            method: method.to_string(),
            uid: String::new(),
            role: String::new(),
            targets: Vec::new(),
            epoch: None,
            peer: String::new(),
            code: "OK".to_string(),
            reason: String::new(),
        }
    }
}

/// Where audit records go.
#[derive(Debug, Default)]
pub struct AuditLog {
    file: Option<(PathBuf, Mutex<File>)>,
}

impl AuditLog {
    /// Opens (creating it, mode 0600) the audit file at `path` for
    /// appending; `None`: records go to stderr only.
    pub fn open(path: Option<&Path>) -> std::io::Result<AuditLog> {
        let Some(path) = path else {
            return Ok(AuditLog::default());
        };
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        // An existing file keeps its mode on open: make it 0600 too.
        file.set_permissions(Permissions::from_mode(0o600))?;
        Ok(AuditLog {
            file: Some((path.to_path_buf(), Mutex::new(file))),
        })
    }

    /// Writes one record, stamped with the current time.
    pub fn record(&self, mut r: AuditRecord) {
        r.time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let line = match serde_json::to_string(&r) {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "audit record not serialisable");
                return;
            }
        };
        info!(target: "audit", "{line}");
        if let Some((path, f)) = &self.file {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            // One write per line, O_APPEND: lines never interleave.
            if let Err(e) = f.write_all(format!("{line}\n").as_bytes()) {
                warn!(file = %path.display(), error = %e, "writing the audit log failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_json_lines_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let log = AuditLog::open(Some(&path)).unwrap();
        let mut r = AuditRecord::new(Source::Api, "alice", "req");
        r.uid = "u1".into();
        r.role = "PROD".into();
        log.record(r);
        let mut r = AuditRecord::new(Source::Peer, "gwb", "key_exchange");
        r.code = "STALE_EPOCH".into();
        r.reason = "epoch 3 is not after 4".into();
        log.record(r);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["identity"], "alice");
        assert_eq!(lines[0]["source"], "api");
        assert_eq!(lines[0]["code"], "OK");
        assert!(
            lines[0].get("targets").is_none(),
            "empty fields are left out"
        );
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines[1]["code"], "STALE_EPOCH");
    }
}
