//! What `s2uc` prints: text for people, one JSON object for scripts.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::session::SessionSetup;
use crate::proto::s2cs::SessionInfo;

/// `uid: <uid>\nlisteners: ip:port,ip:port\n`.
pub fn setup_text(setup: &SessionSetup) -> String {
    format!(
        "uid: {}\nlisteners: {}\n",
        setup.uid,
        setup.listeners.join(",")
    )
}

/// `{"uid":..., "listeners":[...], "prod_listeners":[...]}` on one line.
pub fn setup_json(setup: &SessionSetup) -> String {
    json!({
        "uid": setup.uid,
        "listeners": setup.listeners,
        "prod_listeners": setup.prod_listeners,
    })
    .to_string()
        + "\n"
}

/// `released <uid>` or `{"uid":..., "released":true}`.
pub fn released(uid: &str, as_json: bool) -> String {
    if as_json {
        json!({ "uid": uid, "released": true }).to_string() + "\n"
    } else {
        format!("released {uid}\n")
    }
}

/// A session as a JSON object with the proto's field names.
pub fn session_value(s: &SessionInfo) -> Value {
    json!({
        "uid": s.uid,
        "role": s.role,
        "state": s.state,
        "listeners": s.listeners,
        "targets": s.targets,
        "num_conn": s.num_conn,
        "rate_bps": s.rate_bps,
        "peer": s.peer,
        "epoch": s.epoch,
        "rekeys": s.rekeys,
        "owner": s.owner,
    })
}

/// One session, `field: value` per line, or its JSON object.
pub fn status(s: &SessionInfo, as_json: bool) -> String {
    if as_json {
        return session_value(s).to_string() + "\n";
    }
    let mut rate = rate_text(s.rate_bps);
    if s.role == "CONS" && s.rate_bps > 0 {
        rate.push_str(", policed by the producer gateway");
    }
    let mut out = String::new();
    let rows: [(&str, String); 11] = [
        ("uid", s.uid.clone()),
        ("role", s.role.clone()),
        ("state", s.state.clone()),
        ("listeners", s.listeners.join(",")),
        ("targets", s.targets.join(",")),
        ("num_conn", s.num_conn.to_string()),
        ("rate", rate),
        ("peer", s.peer.clone()),
        ("epoch", s.epoch.to_string()),
        ("rekeys", s.rekeys.to_string()),
        ("owner", s.owner.clone()),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "{name}: {value}");
    }
    out
}

/// A policed rate for people: `unlimited`, or bits per second with an SI
/// prefix and the same in SciStream's unit, `20 Mbit/s (2500 kB/s)`.
pub fn rate_text(bps: i64) -> String {
    if bps <= 0 {
        return "unlimited".to_string();
    }
    let bits = bps as f64;
    let (value, unit) = [
        (1e12, "Tbit/s"),
        (1e9, "Gbit/s"),
        (1e6, "Mbit/s"),
        (1e3, "kbit/s"),
    ]
    .into_iter()
    .find(|(scale, _)| bits >= *scale)
    .map(|(scale, unit)| (bits / scale, unit))
    .unwrap_or((bits, "bit/s"));
    format!(
        "{} {unit} ({} kB/s)",
        significant(value),
        significant(bits / 8_000.0)
    )
}

/// `x` with at most three decimals, trailing zeros dropped.
fn significant(x: f64) -> String {
    let text = format!("{x:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The sessions as an aligned table (`UID ROLE STATE PEER LISTENERS
/// TARGETS`), or `{"sessions":[...]}`.
pub fn list(sessions: &[SessionInfo], as_json: bool) -> String {
    if as_json {
        let all: Vec<Value> = sessions.iter().map(session_value).collect();
        return json!({ "sessions": all }).to_string() + "\n";
    }
    if sessions.is_empty() {
        return "no sessions\n".to_string();
    }
    let header = ["UID", "ROLE", "STATE", "PEER", "LISTENERS", "TARGETS"];
    let rows: Vec<[String; 6]> = sessions
        .iter()
        .map(|s| {
            [
                s.uid.clone(),
                s.role.clone(),
                s.state.clone(),
                if s.peer.is_empty() {
                    "-".to_string()
                } else {
                    s.peer.clone()
                },
                s.listeners.join(","),
                s.targets.join(","),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 6]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ", w = width[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(uid: &str, peer: &str) -> SessionInfo {
        SessionInfo {
            uid: uid.to_string(),
            role: "CONS".to_string(),
            state: "keyed".to_string(),
            listeners: vec!["10.0.0.2:5200".to_string()],
            targets: vec!["10.0.0.1:5100".to_string(), "10.0.0.1:5101".to_string()],
            num_conn: 1,
            rate_bps: 0,
            peer: peer.to_string(),
            epoch: 3,
            rekeys: 2,
            owner: "alice".to_string(),
        }
    }

    #[test]
    fn setup_forms() {
        let s = SessionSetup {
            uid: "u1".to_string(),
            listeners: vec!["10.0.0.1:5100".to_string(), "10.0.0.1:5101".to_string()],
            prod_listeners: vec!["192.0.2.1:7000".to_string()],
        };
        assert_eq!(
            setup_text(&s),
            "uid: u1\nlisteners: 10.0.0.1:5100,10.0.0.1:5101\n"
        );
        let v: Value = serde_json::from_str(&setup_json(&s)).unwrap();
        assert_eq!(
            v,
            json!({"uid": "u1", "listeners": ["10.0.0.1:5100", "10.0.0.1:5101"],
                   "prod_listeners": ["192.0.2.1:7000"]})
        );
    }

    #[test]
    fn table_is_aligned() {
        let text = list(&[info("a", "gwb"), info("longer-uid", "")], false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("UID         ROLE  STATE  PEER  LISTENERS"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("a           CONS  keyed  gwb   10.0.0.2:5200"),
            "{text}"
        );
        assert!(
            lines[2].contains("  -     10.0.0.2:5200  10.0.0.1:5100,10.0.0.1:5101"),
            "{text}"
        );
        assert_eq!(list(&[], false), "no sessions\n");
    }

    #[test]
    fn json_forms_parse() {
        let v: Value = serde_json::from_str(&list(&[info("a", "gwb")], true)).unwrap();
        assert_eq!(v["sessions"][0]["uid"], "a");
        assert_eq!(v["sessions"][0]["epoch"], 3);
        let v: Value = serde_json::from_str(&status(&info("a", "gwb"), true)).unwrap();
        assert_eq!(v["owner"], "alice");
        assert!(status(&info("a", "gwb"), false).contains("rate: unlimited\n"));
    }

    #[test]
    fn rates_name_their_units() {
        assert_eq!(rate_text(0), "unlimited");
        assert_eq!(rate_text(20_000_000), "20 Mbit/s (2500 kB/s)");
        assert_eq!(rate_text(80_000_000), "80 Mbit/s (10000 kB/s)");
        assert_eq!(rate_text(1_234_568_000), "1.235 Gbit/s (154321 kB/s)");
        assert_eq!(rate_text(8_000), "8 kbit/s (1 kB/s)");
        assert_eq!(rate_text(500), "500 bit/s (0.062 kB/s)");
        let mut s = info("a", "gwb");
        s.rate_bps = 20_000_000;
        assert!(
            status(&s, false)
                .contains("rate: 20 Mbit/s (2500 kB/s), policed by the producer gateway\n"),
            "{}",
            status(&s, false)
        );
        let v: Value = serde_json::from_str(&status(&s, true)).unwrap();
        assert_eq!(v["rate_bps"], 20_000_000);
    }
}
