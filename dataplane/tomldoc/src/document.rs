//! [`Document`]: a parsed file kept with its text and spans, so that errors
//! found at any later stage are located.
//!
//! ```
//! # use std::path::Path;
//! # use scistream_tomldoc::Document;
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Raw { port: i64 }
//!
//! let text = "# comment\nport = 99999\n";
//! let doc = Document::parse(text, Path::new("x.toml")).unwrap();
//! let raw: Raw = doc.deserialize().unwrap();
//! assert!(raw.port > 65535);
//! let e = doc.bad_value("port", "99999 is out of range; expected 1 to 65535");
//! assert_eq!(e.to_string(), "x.toml:2:8: key `port`: 99999 is out of range; expected 1 to 65535");
//! ```

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::de::DeTable;
use toml::Spanned;

use crate::de_error::{schema_error, semantic_error, syntax_error, Anchor};
use crate::error::{ConfigError, ErrorKind, Location};
use crate::keypath::KeyPath;
use crate::locate::Doc;

/// A key an error is about: a dotted string such as `gateway.name`,
/// `peers[1].ca` or `ports.listener_range[0]` (quote a key containing
/// dots: `a."b.c"`), or a [`KeyPath`] built step by step.
pub trait Key {
    /// The path, or `None` if a string does not parse as one.
    fn path(&self) -> Option<KeyPath>;
    /// The key as given, for an error about a path that does not parse.
    fn shown(&self) -> String;
}

impl Key for &str {
    fn path(&self) -> Option<KeyPath> {
        parse_key(self)
    }
    fn shown(&self) -> String {
        (*self).to_owned()
    }
}

impl Key for &String {
    fn path(&self) -> Option<KeyPath> {
        parse_key(self)
    }
    fn shown(&self) -> String {
        (*self).clone()
    }
}

impl Key for &KeyPath {
    fn path(&self) -> Option<KeyPath> {
        Some((*self).clone())
    }
    fn shown(&self) -> String {
        self.to_string()
    }
}

impl Key for KeyPath {
    fn path(&self) -> Option<KeyPath> {
        Some(self.clone())
    }
    fn shown(&self) -> String {
        self.to_string()
    }
}

/// A parsed TOML file, kept with its text and spans so that errors found
/// at any later stage can be located.
pub struct Document<'t> {
    origin: PathBuf,
    text: &'t str,
    /// The parse tree handed to serde (consumed by a clone each time).
    tree: Spanned<DeTable<'t>>,
    /// The same tree, indexed for locating keys.
    doc: Doc<'t>,
}

impl<'t> Document<'t> {
    /// Parses `text`; `origin` names it in errors (used verbatim). A syntax
    /// error is reported at its position, with the key being parsed when it
    /// can be told.
    pub fn parse(text: &'t str, origin: &Path) -> Result<Self, ConfigError> {
        let tree = DeTable::parse(text).map_err(|e| {
            let (recovered, _) = DeTable::parse_recoverable(text);
            syntax_error(origin, text, &e, &Doc::new(recovered))
        })?;
        Ok(Document {
            origin: origin.to_path_buf(),
            text,
            doc: Doc::new(tree.clone()),
            tree,
        })
    }

    /// Deserializes the whole document into `T`. Unknown keys (with
    /// `deny_unknown_fields`), missing keys, wrong types and unknown enum
    /// words are located at the offending key or table.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        T::deserialize(toml::de::Deserializer::from(self.tree.clone()))
            .map_err(|e| schema_error(&self.origin, self.text, &e, &self.doc))
    }

    /// The name errors give the file (as passed to [`Document::parse`]).
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The text of the file.
    pub fn text(&self) -> &'t str {
        self.text
    }

    /// An error of class `kind` about `key` ([`Key`]: a dotted string or a
    /// [`KeyPath`]). It points at the key's value; a key absent from the
    /// file is reported at the header of its nearest enclosing table. A
    /// string that does not parse as a path is reported at the start of
    /// the file, still naming the key as given.
    pub fn error(&self, key: impl Key, kind: ErrorKind, message: impl Into<String>) -> ConfigError {
        self.error_anchored(key, Anchor::Value, kind, message)
    }

    /// Like [`Document::error`], pointing at the key itself rather than its
    /// value (for a key that should not be there, or whose name is wrong).
    pub fn error_at_key(
        &self,
        key: impl Key,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> ConfigError {
        self.error_anchored(key, Anchor::Key, kind, message)
    }

    fn error_anchored(
        &self,
        key: impl Key,
        anchor: Anchor,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> ConfigError {
        let message = message.into();
        match key.path().filter(|p| !p.is_root()) {
            Some(path) => semantic_error(
                &self.origin,
                self.text,
                &self.doc,
                &path,
                anchor,
                kind,
                message,
            ),
            None => ConfigError::at(
                &self.origin,
                self.text,
                0..0,
                Some(key.shown()),
                kind,
                message,
            ),
        }
    }

    /// A malformed or out-of-range value at `key` ([`ErrorKind::BadValue`]).
    pub fn bad_value(&self, key: impl Key, message: impl Into<String>) -> ConfigError {
        self.error(key, ErrorKind::BadValue, message)
    }

    /// A rule relating several keys, broken at `key` ([`ErrorKind::Conflict`]).
    pub fn conflict(&self, key: impl Key, message: impl Into<String>) -> ConfigError {
        self.error(key, ErrorKind::Conflict, message)
    }

    /// A required key that is absent ([`ErrorKind::MissingKey`]), reported
    /// at the header of its table.
    pub fn missing(&self, key: impl Key, message: impl Into<String>) -> ConfigError {
        self.error(key, ErrorKind::MissingKey, message)
    }

    /// The integer `v` at `key` as a `T`, if it lies in `lo..=hi`; else a
    /// [`ErrorKind::BadValue`] saying the range.
    pub fn in_range<T>(&self, key: impl Key, v: i64, lo: T, hi: T) -> Result<T, ConfigError>
    where
        T: TryFrom<i64> + Into<i128> + Copy + std::fmt::Display,
    {
        let fits = i128::from(v) >= lo.into() && i128::from(v) <= hi.into();
        match T::try_from(v) {
            Ok(t) if fits => Ok(t),
            _ => Err(self.bad_value(key, format!("{v} is out of range; expected {lo} to {hi}"))),
        }
    }

    /// True if `key` is written in the file.
    pub fn contains(&self, key: impl Key) -> bool {
        key.path()
            .is_some_and(|p| !p.is_root() && self.doc.lookup(&p).is_some())
    }

    /// The 1-based line where `key` is written, or where its nearest
    /// enclosing table starts if it is absent; for cross-references in
    /// messages ("also used at line 12").
    pub fn line_of(&self, key: impl Key) -> usize {
        let span = match key.path() {
            Some(p) => self
                .doc
                .lookup(&p)
                .map_or_else(|| self.doc.header_of(&p), |s| s.key),
            None => 0..0,
        };
        Location::at_offset(&self.origin, self.text, span.start).line
    }
}

/// Parses a dotted key path: bare or double-quoted keys separated by `.`,
/// each optionally followed by `[index]` steps. `None` if malformed.
fn parse_key(s: &str) -> Option<KeyPath> {
    let mut path = KeyPath::root();
    let mut rest = s;
    let mut first = true;
    while !rest.is_empty() {
        if !first {
            rest = rest.strip_prefix('.')?;
        }
        first = false;
        let key_len = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"')?;
            path = path.key(&quoted[..end]);
            end + 2
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let k = &rest[..end];
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return None;
            }
            path = path.key(k);
            end
        };
        rest = &rest[key_len..];
        while let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            path = path.index(after[..end].parse().ok()?);
            rest = &after[end + 1..];
        }
    }
    (!path.is_root()).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // fields are read through Debug/asserts only
    struct Raw {
        server: RawServer,
        #[serde(default)]
        peers: Vec<RawPeer>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawServer {
        name: String,
        port: i64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawPeer {
        name: String,
        ca: Option<String>,
    }

    const TEXT: &str = "\
[server]
name = \"a\"
port = 5000

[[peers]]
name = \"b\"
ca = \"ca.pem\"

[[peers]]
name = \"c\"
";

    fn origin() -> &'static Path {
        Path::new("c.toml")
    }

    fn doc(text: &str) -> Document<'_> {
        Document::parse(text, origin()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn schema_err(text: &str) -> ConfigError {
        doc(text)
            .deserialize::<Raw>()
            .expect_err("must be rejected")
    }

    #[test]
    fn parses_and_deserializes() {
        let d = doc(TEXT);
        let raw: Raw = d.deserialize().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(raw.server.name, "a");
        assert_eq!(raw.server.port, 5000);
        assert_eq!(raw.peers.len(), 2);
        assert_eq!(raw.peers[0].ca.as_deref(), Some("ca.pem"));
        assert_eq!(raw.peers[1].name, "c");
        assert_eq!(d.origin(), origin());
        assert_eq!(d.text(), TEXT);
        // Deserializing twice works (the tree is cloned each time).
        let again: Raw = d.deserialize().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.peers.len(), 2);
    }

    #[test]
    fn syntax_errors_are_located() {
        let text = TEXT.replace("port = 5000", "port = 50 00");
        let e = Document::parse(&text, origin())
            .err()
            .expect("must be rejected");
        assert_eq!(e.kind(), Some(ErrorKind::Syntax));
        assert_eq!(e.line(), Some(3));
        assert_eq!(e.key(), Some("server.port"));
        assert!(e.to_string().starts_with("c.toml:3:"), "{e}");
    }

    #[test]
    fn schema_errors_are_located() {
        let e = schema_err(&TEXT.replace("ca = \"ca.pem\"", "cx = \"ca.pem\""));
        assert_eq!(e.kind(), Some(ErrorKind::UnknownKey));
        assert_eq!((e.line(), e.key()), (Some(7), Some("peers[0].cx")));
        assert!(
            e.to_string()
                .contains("unknown key `cx` in peers[0]; expected one of `name`, `ca`"),
            "{e}"
        );

        let e = schema_err(&TEXT.replace("port = 5000", "port = \"5000\""));
        assert_eq!(e.kind(), Some(ErrorKind::WrongType));
        assert_eq!((e.line(), e.key()), (Some(3), Some("server.port")));

        let e = schema_err(&TEXT.replace("name = \"c\"", "ca = \"x\""));
        assert_eq!(e.kind(), Some(ErrorKind::MissingKey));
        assert_eq!((e.line(), e.key()), (Some(9), Some("peers[1].name")));

        let e = schema_err("[[peers]]\nname = \"b\"\n");
        assert_eq!(e.kind(), Some(ErrorKind::MissingKey));
        assert_eq!((e.line(), e.key()), (Some(1), Some("server")));
    }

    #[test]
    fn validation_errors_point_at_the_key() {
        let d = doc(TEXT);
        let e = d.bad_value("server.port", "too small");
        assert_eq!(e.to_string(), "c.toml:3:8: key `server.port`: too small");
        assert_eq!(e.kind(), Some(ErrorKind::BadValue));

        let e = d.conflict("peers[0].ca", "clash");
        assert_eq!(e.to_string(), "c.toml:7:6: key `peers[0].ca`: clash");
        assert_eq!(e.kind(), Some(ErrorKind::Conflict));

        // An absent key is reported at its table's header.
        let e = d.missing("peers[1].ca", "needs a CA");
        assert_eq!((e.line(), e.column()), (Some(9), Some(1)));
        assert_eq!(e.key(), Some("peers[1].ca"));
        let e = d.missing("logging.level", "absent");
        assert_eq!((e.line(), e.key()), (Some(1), Some("logging.level")));

        // Malformed paths still produce an error naming the key.
        let e = d.error("peers[x]", ErrorKind::BadValue, "m");
        assert_eq!((e.line(), e.key()), (Some(1), Some("peers[x]")));
    }

    #[test]
    fn lines_and_presence() {
        let d = doc(TEXT);
        assert_eq!(d.line_of("peers[1].name"), 10);
        assert_eq!(d.line_of("peers[1]"), 9);
        assert_eq!(d.line_of("peers[1].ca"), 9);
        assert!(d.contains("peers[0].ca"));
        assert!(!d.contains("peers[1].ca"));
        assert!(!d.contains("peers[2]"));
        assert!(!d.contains(""));
    }

    #[test]
    fn key_paths_parse() {
        let p = |s: &str| parse_key(s).map(|k| k.to_string());
        assert_eq!(p("a.b[1].c").as_deref(), Some("a.b[1].c"));
        assert_eq!(p("a[0][2]").as_deref(), Some("a[0][2]"));
        assert_eq!(p("a.\"b.c\".d").as_deref(), Some("a.\"b.c\".d"));
        assert_eq!(
            p("ports.listener_range[1]").as_deref(),
            Some("ports.listener_range[1]")
        );
        for bad in ["", ".a", "a.", "a..b", "a[", "a[x]", "a b", "a.\"b"] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }
}
