//! The `ip:port` lists of the SciStream API: producer app targets and
//! gateway listeners, checked before they are sent.

use std::net::{IpAddr, SocketAddr};

use super::error::ClientError;

/// Parses a comma-separated list of `ip:port` (`[v6]:port` for IPv6), as
/// `s2uc outbound-request` takes the producer gateway's listeners. Spaces
/// around items are allowed; the list must not be empty. The items are
/// returned in the canonical `SocketAddr` form, in order.
pub fn parse_endpoint_list(what: &'static str, list: &str) -> Result<Vec<String>, ClientError> {
    let items: Vec<&str> = list.split(',').map(str::trim).collect();
    if items.iter().all(|s| s.is_empty()) {
        return Err(ClientError::BadEndpoint {
            what,
            value: list.to_string(),
            reason: "empty list",
        });
    }
    items
        .into_iter()
        .map(|item| {
            let bad = |reason| ClientError::BadEndpoint {
                what,
                value: item.to_string(),
                reason,
            };
            let addr: SocketAddr = item.parse().map_err(|_| bad("expected ip:port"))?;
            if addr.port() == 0 {
                return Err(bad("port 0"));
            }
            if addr.ip().is_unspecified() {
                return Err(bad("unspecified address"));
            }
            Ok(addr.to_string())
        })
        .collect()
}

/// The producer app's endpoints, one `ip:port` per port, in order (as
/// `s2uc inbound-request --remote_ip IP --receiver_ports P1,P2` sends them).
pub fn app_targets(ip: IpAddr, ports: &[u16]) -> Result<Vec<String>, ClientError> {
    if ports.is_empty() {
        return Err(ClientError::BadEndpoint {
            what: "--receiver_ports",
            value: String::new(),
            reason: "empty list",
        });
    }
    if ip.is_unspecified() {
        return Err(ClientError::BadEndpoint {
            what: "--remote_ip",
            value: ip.to_string(),
            reason: "unspecified address",
        });
    }
    if let Some(p) = ports.iter().find(|&&p| p == 0) {
        return Err(ClientError::BadEndpoint {
            what: "--receiver_ports",
            value: p.to_string(),
            reason: "port 0",
        });
    }
    Ok(ports
        .iter()
        .map(|&p| SocketAddr::new(ip, p).to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_in_order() {
        assert_eq!(
            parse_endpoint_list("PROD_LSTN", "10.0.0.1:5100, 10.0.0.1:5101,[fd00::2]:7").unwrap(),
            ["10.0.0.1:5100", "10.0.0.1:5101", "[fd00::2]:7"]
        );
    }

    #[test]
    fn lists_reject_bad_items() {
        for bad in [
            "",
            " , ",
            "10.0.0.1",
            "10.0.0.1:0",
            "0.0.0.0:5100",
            "host:5100",
            "10.0.0.1:5100,",
        ] {
            let err = parse_endpoint_list("PROD_LSTN", bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    ClientError::BadEndpoint {
                        what: "PROD_LSTN",
                        ..
                    }
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn targets_one_per_port() {
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        assert_eq!(
            app_targets(ip, &[5074, 5075]).unwrap(),
            ["192.0.2.10:5074", "192.0.2.10:5075"]
        );
        assert!(app_targets(ip, &[]).is_err());
        assert!(app_targets(ip, &[5074, 0]).is_err());
        assert!(app_targets("::".parse().unwrap(), &[5074]).is_err());
    }
}
