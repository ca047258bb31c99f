//! [`KeyPath`]: the dotted name of a key in the document (`ports.lan.mtu`,
//! `routes[1].via`), as shown in error messages.

use std::fmt;

/// One step of a [`KeyPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A key of a table.
    Key(String),
    /// An element of an array (array of tables or inline array).
    Index(usize),
}

/// A path from the document root to a key or array element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Seg>);

impl KeyPath {
    /// The document root (the top-level table).
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// A path from dotted keys, e.g. `KeyPath::of(&["ports", "lan"])`.
    pub fn of(keys: &[&str]) -> Self {
        KeyPath(keys.iter().map(|k| Seg::Key((*k).to_owned())).collect())
    }

    /// This path extended by table key `k`.
    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_owned()));
        p
    }

    /// This path extended by array index `i`.
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// Appends one step in place.
    pub(crate) fn push(&mut self, s: Seg) {
        self.0.push(s);
    }

    /// Removes the last step.
    pub(crate) fn pop(&mut self) -> Option<Seg> {
        self.0.pop()
    }

    /// The steps.
    pub fn segs(&self) -> &[Seg] {
        &self.0
    }

    /// Number of steps.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the document root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path without its last step (the root stays the root).
    pub fn parent(&self) -> Self {
        let mut p = self.clone();
        p.0.pop();
        p
    }

    /// Where a key of the table at this path sits, for messages:
    /// "in [ports.lan]", "in routes[1]", or "at the top level".
    pub fn location_phrase(&self) -> String {
        match self.0.last() {
            None => "at the top level".to_owned(),
            Some(Seg::Index(_)) => format!("in {self}"),
            Some(Seg::Key(_)) => format!("in [{self}]"),
        }
    }
}

/// True if `k` can be written as a TOML bare key.
fn is_bare(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if is_bare(k) {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_dotted_paths() {
        assert_eq!(
            KeyPath::of(&["ports", "lan", "mtu"]).to_string(),
            "ports.lan.mtu"
        );
        assert_eq!(
            KeyPath::root()
                .key("routes")
                .index(1)
                .key("via")
                .to_string(),
            "routes[1].via"
        );
        assert_eq!(
            KeyPath::of(&["workers", "cores"]).index(0).to_string(),
            "workers.cores[0]"
        );
        assert_eq!(KeyPath::of(&["ports", "a.b"]).to_string(), "ports.\"a.b\"");
        assert_eq!(KeyPath::root().to_string(), "");
        assert_eq!(KeyPath::root().location_phrase(), "at the top level");
        assert_eq!(
            KeyPath::of(&["ports", "wan"]).location_phrase(),
            "in [ports.wan]"
        );
        assert_eq!(
            KeyPath::of(&["routes"]).index(2).location_phrase(),
            "in routes[2]"
        );
        assert_eq!(KeyPath::of(&["a", "b"]).parent(), KeyPath::of(&["a"]));
    }
}
