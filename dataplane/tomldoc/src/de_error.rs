//! Turning the TOML crate's errors (syntax errors, and serde errors such as
//! unknown or missing keys and wrong types) into located [`ConfigError`]s
//! with the dotted key path and an operator-friendly message.

use std::path::Path;

use super::error::{ConfigError, ErrorKind};
use super::keypath::{KeyPath, Seg};
use super::locate::{Doc, Hit};

/// A syntax error: `recovered` is the best-effort parse of the same text,
/// used to name the key being parsed when the error occurred.
pub(crate) fn syntax_error(
    origin: &Path,
    text: &str,
    err: &toml::de::Error,
    recovered: &Doc<'_>,
) -> ConfigError {
    let span = err.span().unwrap_or(0..0);
    let key = syntax_key(text, span.start, err.message(), recovered);
    ConfigError::at(
        origin,
        text,
        span,
        key.map(|k| k.to_string()),
        ErrorKind::Syntax,
        format!("TOML syntax error: {}", err.message()),
    )
}

/// Names the key a syntax error at `offset` is about, if it can be told.
fn syntax_key(text: &str, offset: usize, message: &str, doc: &Doc<'_>) -> Option<String> {
    let line_start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let line = text[line_start..line_end].trim();
    if let Some(header) = line.strip_prefix('[') {
        // A table header: its (possibly malformed) name.
        let name = header.trim_start_matches('[');
        let name = name.split(']').next().unwrap_or(name);
        let name = name.split('#').next().unwrap_or(name);
        let name: String = name.split('.').map(str::trim).collect::<Vec<_>>().join(".");
        return (!name.is_empty()).then_some(name);
    }
    if message != "duplicate key" {
        if let Some(p) = doc.path_near(offset) {
            return Some(p.to_string());
        }
    }
    // A `key = value` line the recovered document does not hold (duplicate,
    // missing `=`, ...): the text before `=` (or the first word) in the table
    // the line belongs to.
    let raw_key = match line.find('=') {
        Some(i) => line[..i].trim(),
        None => line.split_whitespace().next().unwrap_or(""),
    };
    if raw_key.is_empty() || raw_key.starts_with('#') {
        return None;
    }
    let raw_key: String = raw_key
        .split('.')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(".");
    let table = doc.table_before(line_start, text);
    Some(if table.is_root() {
        raw_key
    } else {
        format!("{table}.{raw_key}")
    })
}

/// A serde error from deserializing the parsed document into the schema.
pub(crate) fn schema_error(
    origin: &Path,
    text: &str,
    err: &toml::de::Error,
    doc: &Doc<'_>,
) -> ConfigError {
    let span = err.span().unwrap_or(0..0);
    let msg = err.message();
    let (path, hit) = doc.path_at(&span);

    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let names = backticked(rest);
        let unknown = names.first().cloned().unwrap_or_default();
        // The span is the key itself; its table is the parent.
        let (key_path, table) = match (hit, path.segs().last()) {
            (Hit::Key, Some(Seg::Key(k))) if *k == unknown => (path.clone(), path.parent()),
            _ => (path.key(&unknown), path.clone()),
        };
        let expected = &names[names.len().min(1)..];
        let message = if expected.is_empty() {
            format!(
                "unknown key `{unknown}` {}; it takes no keys",
                table.location_phrase()
            )
        } else {
            format!(
                "unknown key `{unknown}` {}; expected one of {}",
                table.location_phrase(),
                quote_list(expected)
            )
        };
        return ConfigError::at(
            origin,
            text,
            span,
            Some(key_path.to_string()),
            ErrorKind::UnknownKey,
            message,
        );
    }

    if let Some(rest) = msg.strip_prefix("missing field ") {
        let missing = backticked(rest).into_iter().next().unwrap_or_default();
        // The error spans the table that lacks the key. An implicit parent
        // table (`[ports]` opened by `[ports.lan]`) lies inside its child's
        // header, so prefer the table whose span is exactly the error's.
        let path = doc.table_with_span(&span).unwrap_or(path);
        let key_path = path.key(&missing);
        let message = format!(
            "missing required key `{missing}` {}",
            path.location_phrase()
        );
        return ConfigError::at(
            origin,
            text,
            span,
            Some(key_path.to_string()),
            ErrorKind::MissingKey,
            message,
        );
    }

    let key = (!path.is_root()).then(|| path.to_string());
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "?"));
        let message = format!(
            "wrong type: found {}, expected {}",
            plain(found),
            plain(expected)
        );
        return ConfigError::at(origin, text, span, key, ErrorKind::WrongType, message);
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        let names = backticked(rest);
        let bad = names.first().cloned().unwrap_or_default();
        let message = format!(
            "invalid value `{bad}`; expected one of {}",
            quote_list(&names[names.len().min(1)..])
        );
        return ConfigError::at(origin, text, span, key, ErrorKind::BadValue, message);
    }
    let message = match msg.strip_prefix("invalid value: ") {
        Some(rest) => {
            let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "?"));
            format!(
                "invalid value: found {}, expected {}",
                plain(found),
                plain(expected)
            )
        }
        None => msg.to_owned(),
    };
    ConfigError::at(origin, text, span, key, ErrorKind::BadValue, message)
}

/// The words between backticks in a serde message, in order.
fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// "`a`, `b`, `c`".
fn quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Serde's type words in TOML terms ("a sequence" -> "an array", "struct RawPort" -> "a table").
fn plain(what: &str) -> String {
    let w = what.trim();
    if w.starts_with("struct ") || w == "a map" || w == "map" {
        return "a table".into();
    }
    if w.starts_with("enum ") {
        return "a string".into();
    }
    match w {
        "a sequence" | "sequence" => "an array".into(),
        "i64" | "u64" | "i32" | "u32" | "u16" | "u8" | "usize" => "an integer".into(),
        "a boolean" | "boolean" => "a boolean (true or false)".into(),
        _ => w
            .strip_prefix("sequence")
            .map_or_else(|| w.to_owned(), |r| format!("array{r}")),
    }
}

/// Where semantic errors point, relative to the key named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// At the key (a key that must not be there).
    Key,
    /// At the value (a bad value).
    Value,
}

/// Builds the error for a rule broken at `path` (found by validation).
/// A key that is absent is reported at the header of its nearest existing table.
pub(crate) fn semantic_error(
    origin: &Path,
    text: &str,
    doc: &Doc<'_>,
    path: &KeyPath,
    anchor: Anchor,
    kind: ErrorKind,
    message: String,
) -> ConfigError {
    let span = match doc.lookup(path) {
        Some(s) => match anchor {
            Anchor::Key => s.key,
            Anchor::Value => s.value,
        },
        None => doc.header_of(path),
    };
    ConfigError::at(origin, text, span, Some(path.to_string()), kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_helpers() {
        assert_eq!(backticked("`a`, expected one of `b`, `c`"), ["a", "b", "c"]);
        assert_eq!(quote_list(&["x".into(), "y".into()]), "`x`, `y`");
        assert_eq!(plain("struct RawPort"), "a table");
        assert_eq!(plain("a sequence"), "an array");
        assert_eq!(plain("i64"), "an integer");
        assert_eq!(plain("string \"x\""), "string \"x\"");
    }
}
