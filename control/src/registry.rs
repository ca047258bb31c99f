//! The session registry: every stream session `s2cs` holds, persisted in an
//! SQLite database so that a restarted `s2cs` can reattach to its sessions.
//!
//! Only the session's shape is stored (uid, role, peer, key epoch,
//! listeners). Key material never is: keys are renegotiated after a
//! restart while the data plane keeps forwarding on the old ones.
//!
//! The database file is created mode 0600 (its directory 0700 if missing),
//! runs in WAL mode with `synchronous = FULL`, and carries its schema
//! version in `PRAGMA user_version` ([`SCHEMA_VERSION`]) so later versions
//! can migrate it.

use std::fmt;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

/// The schema version this code writes and reads (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 2;

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Version 1 of the schema. `listeners` is a JSON array of [`ListenerSpec`].
const SCHEMA_V1: &str = "
CREATE TABLE sessions (
    uid          TEXT    NOT NULL PRIMARY KEY,
    role         TEXT    NOT NULL CHECK (role IN ('inbound', 'outbound')),
    peer         TEXT    NOT NULL,
    epoch        INTEGER NOT NULL CHECK (epoch >= 0),
    listeners    TEXT    NOT NULL,
    created_unix INTEGER NOT NULL CHECK (created_unix >= 0)
) STRICT;
CREATE INDEX sessions_by_creation ON sessions (created_unix, uid);
";

/// Version 2: the session's policer rate and the identity that created it.
const SCHEMA_V2: &str = "
ALTER TABLE sessions ADD COLUMN rate_bps INTEGER NOT NULL DEFAULT 0 CHECK (rate_bps >= 0);
ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT '';
";

/// Which side of a stream a session is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionRole {
    /// The producer (SciStream `PROD`) side: listeners forward to local targets.
    Inbound,
    /// The consumer (SciStream `CONS`) side: listeners forward to remote listeners.
    Outbound,
}

impl SessionRole {
    /// "inbound" or "outbound", as stored and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionRole::Inbound => "inbound",
            SessionRole::Outbound => "outbound",
        }
    }
}

impl fmt::Display for SessionRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SessionRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "inbound" => Ok(SessionRole::Inbound),
            "outbound" => Ok(SessionRole::Outbound),
            _ => Err(format!(
                "unknown session role `{s}`; expected `inbound` or `outbound`"
            )),
        }
    }
}

/// One listener of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerSpec {
    /// The port the listener has on this gateway (on the LAN address for an
    /// outbound session, on the WAN address for an inbound one).
    pub port: u16,
    /// Outbound sessions: the peer gateway's listener this one forwards to,
    /// once known.
    pub remote: Option<SocketAddr>,
    /// Inbound sessions: the producer application this listener forwards
    /// to, once known.
    pub target: Option<SocketAddr>,
}

/// A session as persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The SciStream session uid (unique).
    pub uid: String,
    /// Which side of the stream this gateway is.
    pub role: SessionRole,
    /// Name of the peer gateway (a `[[peers]]` name).
    pub peer: String,
    /// Key epoch: 0 for the first key exchange, +1 per rekey.
    pub epoch: u64,
    /// The session's listeners, in connection order.
    pub listeners: Vec<ListenerSpec>,
    /// When the session was created, in seconds since the Unix epoch.
    pub created_unix: u64,
    /// Policer rate in bits per second (0: unlimited).
    pub rate_bps: u64,
    /// The identity that created it (empty: the local admin socket).
    pub owner: String,
}

/// Why a registry operation failed. Errors about the database name its path.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The database's directory did not exist and could not be created.
    #[error("session registry {}: cannot create directory {}: {source}", .path.display(), .dir.display())]
    CreateDir {
        /// The database file.
        path: PathBuf,
        /// The directory.
        dir: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The database file could not be created or its mode restricted.
    #[error("session registry {}: cannot {action}: {source}", .path.display())]
    File {
        /// The database file.
        path: PathBuf,
        /// What was being done ("create the file", ...).
        action: &'static str,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The file is not an SQLite database, or is damaged.
    #[error("session registry {}: not a usable SQLite database ({detail}); move the file away to start with an empty registry", .path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The file is an SQLite database, but not a session registry.
    #[error("session registry {}: the database holds tables but no session registry (user_version 0); is this the right file?", .path.display())]
    Foreign {
        /// The database file.
        path: PathBuf,
    },
    /// The database was written by a newer s2cs.
    #[error("session registry {}: schema version {found} is newer than this s2cs supports ({}); upgrade s2cs", .path.display(), SCHEMA_VERSION)]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// An SQLite operation failed.
    #[error("session registry {}: {op}: {source}", .path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// [`Registry::insert`] of a uid that is already registered.
    #[error("session `{0}` is already registered")]
    Duplicate(String),
    /// [`Registry::set_epoch`] of a uid that is not registered.
    #[error("session `{0}` is not registered")]
    NotFound(String),
    /// A value too large for SQLite's signed 64-bit integers.
    #[error("session registry {}: session `{uid}`: {field} {value} is above {}", .path.display(), i64::MAX)]
    OutOfRange {
        /// The database file.
        path: PathBuf,
        /// The session.
        uid: String,
        /// "epoch" or "created_unix".
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// A stored row cannot be decoded (edited by hand, or damaged).
    #[error("session registry {}: session `{uid}`: bad stored row: {reason}", .path.display())]
    BadRow {
        /// The database file.
        path: PathBuf,
        /// The session.
        uid: String,
        /// What is wrong.
        reason: String,
    },
}

/// The persistent set of sessions. One connection, not shared between
/// threads (`Send`, not `Sync`).
pub struct Registry {
    conn: Connection,
    path: PathBuf,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The row columns, in the order [`Registry::decode`] reads them.
const COLUMNS: &str = "uid, role, peer, epoch, listeners, created_unix, rate_bps, owner";

impl Registry {
    /// Opens the registry at `path`, creating the file (mode 0600, and its
    /// directory mode 0700 if missing) and the schema if needed. A file
    /// readable by group or others is restricted to 0600.
    pub fn open(path: &Path) -> Result<Registry, RegistryError> {
        let path_buf = path.to_path_buf();
        create_parent(path)?;
        secure_file(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|source| sql_error(&path_buf, "cannot open the database", source))?;
        let mut reg = Registry {
            conn,
            path: path_buf,
        };
        reg.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| reg.err("setting the busy timeout", e))?;
        // The first statement that reads the file: a non-SQLite file fails here.
        let mode: String = reg
            .conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| reg.err("switching to WAL mode", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %reg.path.display(), mode, "session registry is not in WAL mode");
        }
        reg.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| reg.err("setting synchronous = FULL", e))?;
        reg.migrate()?;
        Ok(reg)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Brings the schema to [`SCHEMA_VERSION`].
    fn migrate(&mut self) -> Result<(), RegistryError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err("reading the schema version", e))?;
        match version {
            SCHEMA_VERSION => Ok(()),
            1 => {
                let tx = self
                    .conn
                    .transaction()
                    .map_err(|e| sql_error(&self.path, "migrating the schema to version 2", e))?;
                tx.execute_batch(SCHEMA_V2)
                    .and_then(|()| tx.pragma_update(None, "user_version", SCHEMA_VERSION))
                    .and_then(|()| tx.commit())
                    .map_err(|e| sql_error(&self.path, "migrating the schema to version 2", e))
            }
            0 => {
                let tables: i64 = self
                    .conn
                    .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                    .map_err(|e| self.err("reading the schema", e))?;
                if tables != 0 {
                    return Err(RegistryError::Foreign {
                        path: self.path.clone(),
                    });
                }
                let tx = self
                    .conn
                    .transaction()
                    .map_err(|e| sql_error(&self.path, "creating the schema", e))?;
                tx.execute_batch(SCHEMA_V1)
                    .and_then(|()| tx.execute_batch(SCHEMA_V2))
                    .and_then(|()| tx.pragma_update(None, "user_version", SCHEMA_VERSION))
                    .and_then(|()| tx.commit())
                    .map_err(|e| sql_error(&self.path, "creating the schema", e))
            }
            v if v > SCHEMA_VERSION => Err(RegistryError::NewerSchema {
                path: self.path.clone(),
                found: v,
            }),
            v => Err(RegistryError::Corrupt {
                path: self.path.clone(),
                detail: format!("invalid schema version {v}"),
            }),
        }
    }

    /// Adds session `s`. A uid already registered is [`RegistryError::Duplicate`].
    pub fn insert(&mut self, s: &SessionRecord) -> Result<(), RegistryError> {
        let epoch = self.to_sql_int(&s.uid, "epoch", s.epoch)?;
        let created = self.to_sql_int(&s.uid, "created_unix", s.created_unix)?;
        let listeners = serde_json::to_string(&s.listeners).map_err(|e| RegistryError::BadRow {
            path: self.path.clone(),
            uid: s.uid.clone(),
            reason: format!("cannot encode listeners: {e}"),
        })?;
        let r = self.conn.execute(
            &format!("INSERT INTO sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                s.uid,
                s.role.as_str(),
                s.peer,
                epoch,
                listeners,
                created,
                self.to_sql_int(&s.uid, "rate_bps", s.rate_bps)?,
                s.owner
            ],
        );
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                Err(RegistryError::Duplicate(s.uid.clone()))
            }
            Err(e) => Err(self.err("inserting a session", e)),
        }
    }

    /// Records key epoch `epoch` for session `uid` ([`RegistryError::NotFound`]
    /// if there is none).
    pub fn set_epoch(&mut self, uid: &str, epoch: u64) -> Result<(), RegistryError> {
        let epoch = self.to_sql_int(uid, "epoch", epoch)?;
        let n = self
            .conn
            .execute(
                "UPDATE sessions SET epoch = ?2 WHERE uid = ?1",
                params![uid, epoch],
            )
            .map_err(|e| self.err("updating a session's epoch", e))?;
        if n == 0 {
            return Err(RegistryError::NotFound(uid.to_owned()));
        }
        Ok(())
    }

    /// Records the peer gateway of session `uid` (bound at its first key exchange).
    pub fn set_peer(&mut self, uid: &str, peer: &str) -> Result<(), RegistryError> {
        let n = self
            .conn
            .execute(
                "UPDATE sessions SET peer = ?2 WHERE uid = ?1",
                params![uid, peer],
            )
            .map_err(|e| self.err("updating a session's peer", e))?;
        match n {
            0 => Err(RegistryError::NotFound(uid.to_owned())),
            _ => Ok(()),
        }
    }

    /// Replaces the listeners of session `uid` (their targets or remotes
    /// arrive after the ports are reserved).
    pub fn set_listeners(
        &mut self,
        uid: &str,
        listeners: &[ListenerSpec],
    ) -> Result<(), RegistryError> {
        let json = serde_json::to_string(listeners).map_err(|e| RegistryError::BadRow {
            path: self.path.clone(),
            uid: uid.to_owned(),
            reason: format!("cannot encode listeners: {e}"),
        })?;
        let n = self
            .conn
            .execute(
                "UPDATE sessions SET listeners = ?2 WHERE uid = ?1",
                params![uid, json],
            )
            .map_err(|e| self.err("updating a session's listeners", e))?;
        match n {
            0 => Err(RegistryError::NotFound(uid.to_owned())),
            _ => Ok(()),
        }
    }

    /// Removes session `uid`; false if there was none.
    pub fn remove(&mut self, uid: &str) -> Result<bool, RegistryError> {
        let n = self
            .conn
            .execute("DELETE FROM sessions WHERE uid = ?1", params![uid])
            .map_err(|e| self.err("removing a session", e))?;
        Ok(n > 0)
    }

    /// Every session, oldest first (ties by uid).
    pub fn load_all(&self) -> Result<Vec<SessionRecord>, RegistryError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM sessions ORDER BY created_unix, uid"
            ))
            .map_err(|e| self.err("listing sessions", e))?;
        let rows = stmt
            .query_map([], raw_row)
            .map_err(|e| self.err("listing sessions", e))?;
        let mut out = Vec::new();
        for row in rows {
            let row = row.map_err(|e| self.err("listing sessions", e))?;
            out.push(self.decode(row)?);
        }
        Ok(out)
    }

    /// The session `uid`, if registered.
    pub fn get(&self, uid: &str) -> Result<Option<SessionRecord>, RegistryError> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM sessions WHERE uid = ?1"),
                params![uid],
                raw_row,
            )
            .optional()
            .map_err(|e| self.err("reading a session", e))?;
        row.map(|r| self.decode(r)).transpose()
    }

    /// Turns a stored row into a record.
    fn decode(&self, r: RawRow) -> Result<SessionRecord, RegistryError> {
        let bad = |reason: String| RegistryError::BadRow {
            path: self.path.clone(),
            uid: r.uid.clone(),
            reason,
        };
        let role = r.role.parse().map_err(bad)?;
        let epoch =
            u64::try_from(r.epoch).map_err(|_| bad(format!("negative epoch {}", r.epoch)))?;
        let created_unix = u64::try_from(r.created_unix)
            .map_err(|_| bad(format!("negative created_unix {}", r.created_unix)))?;
        let listeners = serde_json::from_str(&r.listeners)
            .map_err(|e| bad(format!("listeners are not valid JSON: {e}")))?;
        let rate_bps =
            u64::try_from(r.rate_bps).map_err(|_| bad(format!("negative rate {}", r.rate_bps)))?;
        Ok(SessionRecord {
            uid: r.uid.clone(),
            role,
            peer: r.peer,
            epoch,
            listeners,
            created_unix,
            rate_bps,
            owner: r.owner,
        })
    }

    /// `v` as an SQLite integer, or [`RegistryError::OutOfRange`].
    fn to_sql_int(&self, uid: &str, field: &'static str, v: u64) -> Result<i64, RegistryError> {
        i64::try_from(v).map_err(|_| RegistryError::OutOfRange {
            path: self.path.clone(),
            uid: uid.to_owned(),
            field,
            value: v,
        })
    }

    fn err(&self, op: &'static str, e: rusqlite::Error) -> RegistryError {
        sql_error(&self.path, op, e)
    }
}

/// A row as SQLite returns it, before decoding.
struct RawRow {
    uid: String,
    role: String,
    peer: String,
    epoch: i64,
    listeners: String,
    created_unix: i64,
    rate_bps: i64,
    owner: String,
}

fn raw_row(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        uid: r.get(0)?,
        role: r.get(1)?,
        peer: r.get(2)?,
        epoch: r.get(3)?,
        listeners: r.get(4)?,
        created_unix: r.get(5)?,
        rate_bps: r.get(6)?,
        owner: r.get(7)?,
    })
}

/// Classifies an SQLite error: a file that is not a database, or a damaged
/// one, is [`RegistryError::Corrupt`].
fn sql_error(path: &Path, op: &'static str, source: rusqlite::Error) -> RegistryError {
    if let rusqlite::Error::SqliteFailure(e, msg) = &source {
        if matches!(e.code, ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) {
            return RegistryError::Corrupt {
                path: path.to_path_buf(),
                detail: msg.clone().unwrap_or_else(|| e.to_string()),
            };
        }
    }
    RegistryError::Sqlite {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Creates the database's directory, mode 0700, if it is missing.
fn create_parent(path: &Path) -> Result<(), RegistryError> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| RegistryError::CreateDir {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            source,
        })
}

/// Creates the database file mode 0600 if absent (SQLite gives its WAL and
/// shared-memory files the same mode), or restricts an existing one to 0600
/// if group or others may read it.
fn secure_file(path: &Path) -> Result<(), RegistryError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|source| RegistryError::File {
            path: path.to_path_buf(),
            action: "create or open the file",
            source,
        })?;
    let meta = file.metadata().map_err(|source| RegistryError::File {
        path: path.to_path_buf(),
        action: "stat the file",
        source,
    })?;
    if !meta.is_file() {
        return Err(RegistryError::File {
            path: path.to_path_buf(),
            action: "use it",
            source: io::Error::other("not a regular file"),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{mode:04o}"),
            "session registry was readable by group or others; restricting it to 0600"
        );
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(|source| RegistryError::File {
                path: path.to_path_buf(),
                action: "restrict the file to mode 0600",
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn record(uid: &str, created: u64) -> SessionRecord {
        SessionRecord {
            uid: uid.to_owned(),
            role: SessionRole::Outbound,
            peer: "gwb".to_owned(),
            epoch: 0,
            listeners: vec![
                ListenerSpec {
                    port: 5100,
                    remote: Some(SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::new(10, 10, 200, 1)),
                        5150,
                    )),
                    target: None,
                },
                ListenerSpec {
                    port: 5101,
                    remote: None,
                    target: None,
                },
            ],
            created_unix: created,
            rate_bps: 0,
            owner: String::new(),
        }
    }

    fn fresh() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("reg.db");
        (dir, path)
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn round_trip() {
        let (_d, path) = fresh();
        let mut reg = Registry::open(&path).expect("open");
        let mut a = record("a", 20);
        a.role = SessionRole::Inbound;
        a.listeners[0] = ListenerSpec {
            port: 5199,
            remote: None,
            target: Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 10, 1, 10)),
                9000,
            )),
        };
        let b = record("b", 10);
        let c = record("c", 20);
        for r in [&c, &a, &b] {
            reg.insert(r).expect("insert");
        }
        assert_eq!(reg.get("a").expect("get"), Some(a.clone()));
        assert_eq!(reg.get("zz").expect("get"), None);
        // Oldest first, ties by uid.
        assert_eq!(
            reg.load_all().expect("load"),
            vec![b.clone(), a.clone(), c.clone()]
        );
        reg.set_epoch("a", 7).expect("epoch");
        assert_eq!(reg.get("a").expect("get").expect("present").epoch, 7);
        assert!(reg.remove("b").expect("remove"));
        assert!(!reg.remove("b").expect("remove again"));
        let uids: Vec<_> = reg
            .load_all()
            .expect("load")
            .into_iter()
            .map(|r| r.uid)
            .collect();
        assert_eq!(uids, ["a", "c"]);
    }

    #[test]
    fn duplicate_and_not_found() {
        let (_d, path) = fresh();
        let mut reg = Registry::open(&path).expect("open");
        reg.insert(&record("a", 1)).expect("insert");
        let mut again = record("a", 2);
        again.peer = "other".into();
        match reg.insert(&again) {
            Err(RegistryError::Duplicate(uid)) => assert_eq!(uid, "a"),
            other => panic!("expected Duplicate, got {other:?}"),
        }
        // The first record is untouched.
        assert_eq!(reg.get("a").expect("get").expect("present").peer, "gwb");
        match reg.set_epoch("nope", 1) {
            Err(RegistryError::NotFound(uid)) => assert_eq!(uid, "nope"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        let e = reg.set_epoch("a", u64::MAX).expect_err("too big");
        assert!(matches!(
            e,
            RegistryError::OutOfRange { field: "epoch", .. }
        ));
        assert!(e.to_string().contains("reg.db"), "{e}");
    }

    #[test]
    fn survives_reopen() {
        let (_d, path) = fresh();
        {
            let mut reg = Registry::open(&path).expect("open");
            reg.insert(&record("x", 5)).expect("insert");
            reg.set_epoch("x", 3).expect("epoch");
        }
        let reg = Registry::open(&path).expect("reopen");
        let mut want = record("x", 5);
        want.epoch = 3;
        assert_eq!(reg.load_all().expect("load"), vec![want]);
        let version: i64 = reg
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        let journal: String = reg
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("journal mode");
        assert_eq!(journal, "wal");
    }

    #[test]
    fn file_and_directory_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new/sub/reg.db");
        let mut reg = Registry::open(&path).expect("open");
        reg.insert(&record("a", 1)).expect("insert");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("new")), 0o700);
        assert_eq!(mode(&dir.path().join("new/sub")), 0o700);
        let wal = dir.path().join("new/sub/reg.db-wal");
        assert!(wal.exists(), "WAL mode keeps a -wal file while open");
        assert_eq!(mode(&wal), 0o600);
        drop(reg);

        // An existing, too-open database is restricted on open.
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).expect("chmod");
        let reg = Registry::open(&path).expect("reopen");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(reg.load_all().expect("load").len(), 1);
    }

    #[test]
    fn non_sqlite_file_is_rejected_clearly() {
        let (_d, path) = fresh();
        std::fs::write(&path, vec![b'x'; 4096]).expect("write");
        let e = Registry::open(&path).expect_err("not a database");
        assert!(matches!(e, RegistryError::Corrupt { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "session registry {}: not a usable SQLite database",
                path.display()
            )),
            "{msg}"
        );
    }

    #[test]
    fn foreign_database_and_newer_schema_are_rejected() {
        let (_d, path) = fresh();
        {
            let c = Connection::open(&path).expect("open");
            c.execute_batch("CREATE TABLE other (x INTEGER);")
                .expect("create");
        }
        let e = Registry::open(&path).expect_err("foreign");
        assert!(matches!(e, RegistryError::Foreign { .. }), "{e:?}");

        let (_d2, path) = fresh();
        drop(Registry::open(&path).expect("open"));
        {
            let c = Connection::open(&path).expect("open");
            c.pragma_update(None, "user_version", 99).expect("bump");
        }
        let e = Registry::open(&path).expect_err("newer");
        assert!(
            matches!(e, RegistryError::NewerSchema { found: 99, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("upgrade s2cs"), "{e}");
    }

    #[test]
    fn bad_rows_are_reported_not_panicked() {
        let (_d, path) = fresh();
        let mut reg = Registry::open(&path).expect("open");
        reg.insert(&record("a", 1)).expect("insert");
        reg.conn
            .execute(
                "UPDATE sessions SET listeners = 'not json' WHERE uid = 'a'",
                [],
            )
            .expect("damage");
        let e = reg.get("a").expect_err("bad row");
        assert!(
            matches!(&e, RegistryError::BadRow { uid, .. } if uid == "a"),
            "{e:?}"
        );
        assert!(reg.load_all().is_err());
    }

    #[test]
    fn listener_json_is_stable() {
        let l = ListenerSpec {
            port: 5100,
            remote: Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 10, 200, 1)),
                5150,
            )),
            target: None,
        };
        assert_eq!(
            serde_json::to_string(&[l]).expect("json"),
            r#"[{"port":5100,"remote":"10.10.200.1:5150","target":null}]"#
        );
        assert_eq!("inbound".parse(), Ok(SessionRole::Inbound));
        assert!("sideways".parse::<SessionRole>().is_err());
    }

    #[test]
    fn a_version_1_registry_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(SCHEMA_V1).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute(
                "INSERT INTO sessions (uid, role, peer, epoch, listeners, created_unix) \
                 VALUES ('old', 'inbound', 'gwb', 3, '[]', 7)",
                [],
            )
            .unwrap();
        }
        std::fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        let mut r = Registry::open(&path).unwrap();
        let old = r.get("old").unwrap().unwrap();
        assert_eq!((old.epoch, old.rate_bps, old.owner.as_str()), (3, 0, ""));
        let mut new = record("new", 8);
        new.rate_bps = 1_000_000;
        new.owner = "alice".into();
        r.insert(&new).unwrap();
        r.set_peer("new", "gwc").unwrap();
        let back = r.get("new").unwrap().unwrap();
        assert_eq!(
            (back.rate_bps, back.owner.as_str(), back.peer.as_str()),
            (1_000_000, "alice", "gwc")
        );
    }
}
