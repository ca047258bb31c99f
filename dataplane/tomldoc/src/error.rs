//! [`ConfigError`]: every way a configuration can be rejected, located at a
//! file, line, column and key.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A position in a configuration file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as given by the caller (used verbatim in messages).
    pub file: PathBuf,
    /// Line number, starting at 1.
    pub line: usize,
    /// Column in characters (not bytes), starting at 1.
    pub column: usize,
}

impl Location {
    /// The location of byte offset `offset` in `text` (clamped to the text,
    /// and to a character boundary).
    pub fn at_offset(file: &Path, text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            file: file.to_path_buf(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// The class of a located configuration error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file is not valid TOML.
    Syntax,
    /// A key the schema does not know (or one not allowed for the port's backend).
    UnknownKey,
    /// A required key or table is absent.
    MissingKey,
    /// A value of the wrong TOML type (a string where an integer belongs, ...).
    WrongType,
    /// A value of the right type that is malformed or out of range
    /// (bad IP address, bad MAC, MTU out of range, unknown enum word, ...).
    BadValue,
    /// A rule that relates several keys is broken (overlapping prefixes,
    /// duplicate routes, unreachable next hop, mixed backends, ...).
    Conflict,
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The file was read but its contents are rejected.
    #[error("{location}: {}{message}", KeyPrefix(.key.as_deref()))]
    Invalid {
        /// Where the problem is.
        location: Location,
        /// Dotted path of the offending key (`ports.lan.mtu`, `routes[1].via`),
        /// when one can be named.
        key: Option<String>,
        /// The class of problem.
        kind: ErrorKind,
        /// What is wrong, for an operator.
        message: String,
    },
}

/// Renders "key `k`: " or nothing.
struct KeyPrefix<'a>(Option<&'a str>);

impl fmt::Display for KeyPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(k) => write!(f, "key `{k}`: "),
            None => Ok(()),
        }
    }
}

impl ConfigError {
    /// Builds a located error for byte range `span` of `text`.
    pub(crate) fn at(
        origin: &Path,
        text: &str,
        span: Range<usize>,
        key: Option<String>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            location: Location::at_offset(origin, text, span.start),
            key,
            kind,
            message: message.into(),
        }
    }

    /// The 1-based line of the error, if it has one (not for unreadable files).
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { location, .. } => Some(location.line),
        }
    }

    /// The 1-based column (in characters) of the error, if it has one.
    pub fn column(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { location, .. } => Some(location.column),
        }
    }

    /// The dotted path of the offending key (`ports.lan.colour`, `routes[1].via`).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { key, .. } => key.as_deref(),
        }
    }

    /// The class of a located error; `None` for an unreadable file.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { kind, .. } => Some(*kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_line_and_column() {
        let text = "a = 1\nbé = 2\n\nc";
        let f = Path::new("x.toml");
        let at = |o| {
            let l = Location::at_offset(f, text, o);
            (l.line, l.column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(4), (1, 5));
        assert_eq!(at(6), (2, 1));
        // 'é' is two bytes but one column; offset 9 is the space after it.
        assert_eq!(at(9), (2, 3));
        // Inside 'é' (offset 8) rounds down to its start.
        assert_eq!(at(8), (2, 2));
        assert_eq!(at(14), (3, 1));
        assert_eq!(at(15), (4, 1));
        assert_eq!(at(999), (4, 2));
    }

    #[test]
    fn display_formats() {
        let e = ConfigError::at(
            Path::new("gw.toml"),
            "x\ny = 1\n",
            2..3,
            Some("ports.lan.y".into()),
            ErrorKind::UnknownKey,
            "boom",
        );
        assert_eq!(e.to_string(), "gw.toml:2:1: key `ports.lan.y`: boom");
        assert_eq!(e.line(), Some(2));
        assert_eq!(e.key(), Some("ports.lan.y"));
        let e = ConfigError::at(
            Path::new("gw.toml"),
            "x",
            0..0,
            None,
            ErrorKind::Syntax,
            "bad",
        );
        assert_eq!(e.to_string(), "gw.toml:1:1: bad");
        let e = ConfigError::Read {
            path: "/nope.toml".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert_eq!(e.to_string(), "/nope.toml: cannot read: entity not found");
        assert_eq!(e.line(), None);
    }
}
