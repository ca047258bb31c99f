//! Finding keys in the parsed document: byte span -> key path (for errors the
//! TOML deserializer reports) and key path -> byte span (for errors found by
//! validation after deserialization).

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::keypath::{KeyPath, Seg};

/// What part of an entry a span matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hit {
    /// The key itself (e.g. an unknown key).
    Key,
    /// The value, or for a table its header (e.g. a bad value, a missing key in that table).
    Value,
    /// Nothing below the root matched.
    Root,
}

/// The spans of one entry of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntrySpans {
    /// The key; for an array element, the element itself (`[[routes]]` header).
    pub key: Range<usize>,
    /// The value; for a table defined by a header, the header.
    pub value: Range<usize>,
}

/// A parsed document, kept for locating keys.
pub(crate) struct Doc<'i> {
    root: Spanned<DeTable<'i>>,
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

impl<'i> Doc<'i> {
    /// Wraps a parsed (possibly partially recovered) document.
    pub(crate) fn new(root: Spanned<DeTable<'i>>) -> Self {
        Doc { root }
    }

    /// The key path whose key or value `span` designates, preferring the
    /// deepest match. An empty span matches only a value span exactly equal
    /// to it (the deserializer reports a missing key at the table's own span;
    /// the root's span is empty).
    pub(crate) fn path_at(&self, span: &Range<usize>) -> (KeyPath, Hit) {
        let mut best = (KeyPath::root(), Hit::Root);
        let mut cur = KeyPath::root();
        search_table(self.root.get_ref(), span, &mut cur, &mut best);
        best
    }

    /// The table whose value span is exactly `span`, the shallowest if
    /// several are (used to place a "missing key" error on its table).
    pub(crate) fn table_with_span(&self, span: &Range<usize>) -> Option<KeyPath> {
        fn walk(t: &DeTable<'_>, span: &Range<usize>, cur: &mut KeyPath) -> Option<KeyPath> {
            for (k, v) in t.iter() {
                if let DeValue::Table(inner) = v.get_ref() {
                    cur.push(Seg::Key(k.get_ref().to_string()));
                    let found = if v.span() == *span {
                        Some(cur.clone())
                    } else {
                        walk(inner, span, cur)
                    };
                    cur.pop();
                    if found.is_some() {
                        return found;
                    }
                }
            }
            None
        }
        walk(self.root.get_ref(), span, &mut KeyPath::root())
    }

    /// The deepest path whose key or value covers byte `offset`, counting a
    /// value's end as covered (a syntax error is often reported just past a
    /// truncated value). Used to name the key of a syntax error.
    pub(crate) fn path_near(&self, offset: usize) -> Option<KeyPath> {
        let mut best: Option<KeyPath> = None;
        let mut cur = KeyPath::root();
        near_table(self.root.get_ref(), offset, &mut cur, &mut best);
        best
    }

    /// The table (by header) or array-of-tables element most recently opened
    /// before byte `offset`, i.e. the table a line at `offset` belongs to.
    pub(crate) fn table_before(&self, offset: usize, text: &str) -> KeyPath {
        let mut best = (0usize, KeyPath::root());
        let mut cur = KeyPath::root();
        headers_before(self.root.get_ref(), offset, text, &mut cur, &mut best);
        best.1
    }

    /// The spans of the entry at `path`, if it exists. The root has none.
    pub(crate) fn lookup(&self, path: &KeyPath) -> Option<EntrySpans> {
        let mut table: Option<&DeTable<'i>> = Some(self.root.get_ref());
        let mut array: Option<&[Spanned<DeValue<'i>>]> = None;
        let mut found = None;
        for seg in path.segs() {
            let v = match seg {
                Seg::Key(k) => {
                    let (ks, v) = table?.iter().find(|(key, _)| key.get_ref() == k)?;
                    found = Some(EntrySpans {
                        key: ks.span(),
                        value: v.span(),
                    });
                    v
                }
                Seg::Index(i) => {
                    let v = array?.get(*i)?;
                    found = Some(EntrySpans {
                        key: v.span(),
                        value: v.span(),
                    });
                    v
                }
            };
            table = None;
            array = None;
            match v.get_ref() {
                DeValue::Table(t) => table = Some(t),
                DeValue::Array(a) => array = Some(a),
                _ => {}
            }
        }
        found
    }

    /// Where to report a problem with `path` when it should point at a table
    /// header: the value span of the deepest existing prefix of `path` (the
    /// header of a `[table]`, the `{` of an inline table), or the start of the
    /// file for the root.
    pub(crate) fn header_of(&self, path: &KeyPath) -> Range<usize> {
        let mut p = path.clone();
        loop {
            if p.is_root() {
                return 0..0;
            }
            if let Some(s) = self.lookup(&p) {
                return s.value;
            }
            p.pop();
        }
    }
}

fn search_table(
    t: &DeTable<'_>,
    span: &Range<usize>,
    cur: &mut KeyPath,
    best: &mut (KeyPath, Hit),
) {
    for (k, v) in t.iter() {
        cur.push(Seg::Key(k.get_ref().to_string()));
        if !span.is_empty() && contains(&k.span(), span) && cur.len() >= best.0.len() {
            *best = (cur.clone(), Hit::Key);
        }
        search_value(v, span, cur, best);
        cur.pop();
    }
}

fn search_value(
    v: &Spanned<DeValue<'_>>,
    span: &Range<usize>,
    cur: &mut KeyPath,
    best: &mut (KeyPath, Hit),
) {
    let vs = v.span();
    let hit = if span.is_empty() {
        vs == *span
    } else {
        contains(&vs, span)
    };
    if hit && cur.len() >= best.0.len() && !(best.1 == Hit::Key && best.0 == *cur) {
        *best = (cur.clone(), Hit::Value);
    }
    match v.get_ref() {
        DeValue::Table(t) => search_table(t, span, cur, best),
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                cur.push(Seg::Index(i));
                search_value(e, span, cur, best);
                cur.pop();
            }
        }
        _ => {}
    }
}

fn near_table(t: &DeTable<'_>, offset: usize, cur: &mut KeyPath, best: &mut Option<KeyPath>) {
    for (k, v) in t.iter() {
        cur.push(Seg::Key(k.get_ref().to_string()));
        let ks = k.span();
        let vs = v.span();
        let covers = |r: &Range<usize>| r.start <= offset && offset <= r.end && !r.is_empty();
        if (covers(&ks) || covers(&vs)) && best.as_ref().is_none_or(|b| cur.len() >= b.len()) {
            *best = Some(cur.clone());
        }
        match v.get_ref() {
            DeValue::Table(t) => near_table(t, offset, cur, best),
            DeValue::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    cur.push(Seg::Index(i));
                    if let DeValue::Table(t) = e.get_ref() {
                        near_table(t, offset, cur, best);
                    }
                    cur.pop();
                }
            }
            _ => {}
        }
        cur.pop();
    }
}

fn headers_before(
    t: &DeTable<'_>,
    offset: usize,
    text: &str,
    cur: &mut KeyPath,
    best: &mut (usize, KeyPath),
) {
    let is_header = |r: &Range<usize>| text.get(r.clone()).is_some_and(|s| s.starts_with('['));
    for (k, v) in t.iter() {
        cur.push(Seg::Key(k.get_ref().to_string()));
        match v.get_ref() {
            DeValue::Table(inner) => {
                let vs = v.span();
                if is_header(&vs) && vs.start < offset && vs.start >= best.0 {
                    *best = (vs.start, cur.clone());
                }
                headers_before(inner, offset, text, cur, best);
            }
            DeValue::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    cur.push(Seg::Index(i));
                    if let DeValue::Table(inner) = e.get_ref() {
                        let es = e.span();
                        if is_header(&es) && es.start < offset && es.start >= best.0 {
                            *best = (es.start, cur.clone());
                        }
                        headers_before(inner, offset, text, cur, best);
                    }
                    cur.pop();
                }
            }
            _ => {}
        }
        cur.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
[gateway]
name = \"gw\"

[ports.lan]
mtu = 1500
opts = { a = 1, b = [1, 2] }

[[routes]]
via = \"1.1.1.1\"

[[routes]]
via = \"2.2.2.2\"
";

    fn doc() -> Doc<'static> {
        Doc::new(DeTable::parse(DOC).expect("valid"))
    }

    fn span_of(needle: &str, nth: usize) -> Range<usize> {
        let start = DOC.match_indices(needle).nth(nth).expect("present").0;
        start..start + needle.len()
    }

    #[test]
    fn span_to_path() {
        let d = doc();
        let (p, h) = d.path_at(&span_of("mtu", 0));
        assert_eq!((p.to_string(), h), ("ports.lan.mtu".into(), Hit::Key));
        let (p, h) = d.path_at(&span_of("1500", 0));
        assert_eq!((p.to_string(), h), ("ports.lan.mtu".into(), Hit::Value));
        let (p, _) = d.path_at(&span_of("\"2.2.2.2\"", 0));
        assert_eq!(p.to_string(), "routes[1].via");
        let (p, h) = d.path_at(&span_of("[ports.lan]", 0));
        assert_eq!((p.to_string(), h), ("ports.lan".into(), Hit::Value));
        let two = span_of("2]", 0).start;
        let (p, _) = d.path_at(&(two..two + 1));
        assert_eq!(p.to_string(), "ports.lan.opts.b[1]");
        let (p, h) = d.path_at(&(0..0));
        assert_eq!((p.to_string(), h), (String::new(), Hit::Root));
    }

    #[test]
    fn path_to_span() {
        let d = doc();
        let s = d
            .lookup(&KeyPath::of(&["ports", "lan", "mtu"]))
            .expect("exists");
        assert_eq!(&DOC[s.key], "mtu");
        assert_eq!(&DOC[s.value], "1500");
        let s = d
            .lookup(&KeyPath::of(&["routes"]).index(1))
            .expect("exists");
        assert_eq!(s.key, span_of("[[routes]]", 1));
        let s = d
            .lookup(&KeyPath::of(&["routes"]).index(1).key("via"))
            .expect("exists");
        assert_eq!(&DOC[s.value], "\"2.2.2.2\"");
        assert!(d.lookup(&KeyPath::of(&["routes"]).index(2)).is_none());
        assert!(d.lookup(&KeyPath::of(&["gateway", "name", "x"])).is_none());
        assert_eq!(
            d.header_of(&KeyPath::of(&["ports", "lan", "device"])),
            span_of("[ports.lan]", 0)
        );
        assert_eq!(d.header_of(&KeyPath::of(&["workers", "cores"])), 0..0);
    }

    #[test]
    fn table_before_offset() {
        let d = doc();
        let at = DOC.find("via = \"2").expect("present");
        assert_eq!(d.table_before(at, DOC).to_string(), "routes[1]");
        let at = DOC.find("opts").expect("present");
        assert_eq!(d.table_before(at, DOC).to_string(), "ports.lan");
        assert_eq!(d.table_before(0, DOC).to_string(), "");
    }
}
