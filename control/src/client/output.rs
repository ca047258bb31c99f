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

/// A session as a JSON object with the proto's field names, plus the age
/// of its last key exchange in seconds (`null` if it has none).
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
        "last_key_exchange_unix": s.last_key_exchange_unix,
        "last_key_exchange_age_seconds": key_age(s),
        "packets_out": s.packets_out,
        "bytes_out": s.bytes_out,
        "packets_in": s.packets_in,
        "bytes_in": s.bytes_in,
        "rate_out_bps": s.rate_out_bps,
        "rate_in_bps": s.rate_in_bps,
        "drops_auth_failed": s.drops_auth_failed,
        "drops_replayed": s.drops_replayed,
        "drops_rate_limited": s.drops_rate_limited,
    })
}

/// Seconds since the session's last key exchange, if it had one.
fn key_age(s: &SessionInfo) -> Option<u64> {
    (s.last_key_exchange_unix > 0).then(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        now.saturating_sub(s.last_key_exchange_unix)
    })
}

/// One session as `wg show` shows a peer: the uid first, then one
/// indented `field: value` line per aspect; or its JSON object.
pub fn status(s: &SessionInfo, as_json: bool) -> String {
    if as_json {
        return session_value(s).to_string() + "\n";
    }
    let mut limit = rate_text(s.rate_bps);
    if s.role == "CONS" && s.rate_bps > 0 {
        limit.push_str(", policed by the producer gateway");
    }
    let or_dash = |v: &str| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.to_string()
        }
    };
    let listeners = match s.targets.len() {
        0 => s.listeners.join(", "),
        _ => format!("{} -> {}", s.listeners.join(", "), s.targets.join(", ")),
    };
    let exchange = match key_age(s) {
        Some(age) => format!("{} (epoch {}, {} rekeys)", age_text(age), s.epoch, s.rekeys),
        None => format!("none yet (epoch {})", s.epoch),
    };
    let transfer = format!(
        "{} ({} packets) received, {} ({} packets) sent",
        bytes_text(s.bytes_in),
        s.packets_in,
        bytes_text(s.bytes_out),
        s.packets_out
    );
    let current = format!(
        "{} in, {} out",
        flow_rate_text(s.rate_in_bps),
        flow_rate_text(s.rate_out_bps)
    );
    let mut drops: Vec<String> = [
        ("auth failed", s.drops_auth_failed),
        ("replayed", s.drops_replayed),
        ("over the rate", s.drops_rate_limited),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(what, n)| format!("{n} {what}"))
    .collect();
    if drops.is_empty() {
        drops.push("none".to_string());
    }
    let mut out = format!("session: {}\n", s.uid);
    let rows: [(&str, String); 11] = [
        ("role", format!("{} (owner {})", s.role, or_dash(&s.owner))),
        ("state", s.state.clone()),
        ("peer", or_dash(&s.peer)),
        ("listeners", listeners),
        ("num_conn", s.num_conn.to_string()),
        ("latest key exchange", exchange),
        ("transfer", transfer),
        ("current rate", current),
        ("rate", limit),
        ("drops", drops.join(", ")),
        ("epoch", s.epoch.to_string()),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "  {name}: {value}");
    }
    out
}

/// An age for people: `12 seconds ago`, `3 minutes, 4 seconds ago`.
pub fn age_text(secs: u64) -> String {
    let parts = [
        (secs / 86_400, "day"),
        (secs / 3_600 % 24, "hour"),
        (secs / 60 % 60, "minute"),
        (secs % 60, "second"),
    ];
    let shown: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    if shown.is_empty() {
        "just now".to_string()
    } else {
        format!("{} ago", shown.join(", "))
    }
}

/// Bytes for people, in binary units as `wg show` prints them: `512 B`,
/// `1.50 KiB`, `3.20 GiB`.
pub fn bytes_text(bytes: u64) -> String {
    let b = bytes as f64;
    [
        (1u64 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ]
    .into_iter()
    .find(|(scale, _)| bytes >= *scale)
    .map_or_else(
        || format!("{bytes} B"),
        |(scale, unit)| format!("{:.2} {unit}", b / scale as f64),
    )
}

/// A measured rate: `0 bit/s` when idle, else as [`rate_text`] without the kB/s.
fn flow_rate_text(bps: u64) -> String {
    if bps == 0 {
        return "0 bit/s".to_string();
    }
    let t = rate_text(bps as i64);
    t.split(" (").next().unwrap_or(&t).to_string()
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
            ..SessionInfo::default()
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
        assert!(status(&info("a", "gwb"), false).contains("  rate: unlimited\n"));
        assert!(v["last_key_exchange_age_seconds"].is_null());
    }

    #[test]
    fn status_reads_like_wg_show() {
        let mut s = info("a", "gwb");
        s.last_key_exchange_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 75;
        s.bytes_in = 3 * (1 << 30) + (1 << 29);
        s.packets_in = 2_500_000;
        s.bytes_out = 300;
        s.packets_out = 4;
        s.rate_in_bps = 19_470_000;
        s.drops_replayed = 2;
        let text = status(&s, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "session: a");
        assert!(lines[1..].iter().all(|l| l.starts_with("  ")), "{text}");
        for want in [
            "  peer: gwb\n",
            "  listeners: 10.0.0.2:5200 -> 10.0.0.1:5100, 10.0.0.1:5101\n",
            "  transfer: 3.50 GiB (2500000 packets) received, 300 B (4 packets) sent\n",
            "  current rate: 19.47 Mbit/s in, 0 bit/s out\n",
            "  drops: 2 replayed\n",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        // The age is a second or two more on a slow machine.
        assert!(
            text.contains("  latest key exchange: 1 minute, 1")
                && text.contains("(epoch 3, 2 rekeys)"),
            "{text}"
        );
        let v: Value = serde_json::from_str(&status(&s, true)).unwrap();
        assert!(v["last_key_exchange_age_seconds"].as_u64().unwrap() >= 75);
        assert_eq!(v["bytes_in"], 3 * (1u64 << 30) + (1 << 29));
        assert_eq!(v["drops_replayed"], 2);
    }

    #[test]
    fn ages_and_sizes_for_people() {
        assert_eq!(age_text(0), "just now");
        assert_eq!(age_text(1), "1 second ago");
        assert_eq!(age_text(3_725), "1 hour, 2 minutes, 5 seconds ago");
        assert_eq!(bytes_text(1023), "1023 B");
        assert_eq!(bytes_text(1536), "1.50 KiB");
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
                .contains("  rate: 20 Mbit/s (2500 kB/s), policed by the producer gateway\n"),
            "{}",
            status(&s, false)
        );
        let v: Value = serde_json::from_str(&status(&s, true)).unwrap();
        assert_eq!(v["rate_bps"], 20_000_000);
    }
}
