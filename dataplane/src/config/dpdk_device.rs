//! `[ports.*] device` of the DPDK backend: a PCI address or a virtual
//! device string.

use super::DpdkDevice;

/// True for "DDDD:BB:DD.F" or "BB:DD.F" (hex domain, bus, device; function 0-7).
fn is_pci_address(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let Some((rest, func)) = s.rsplit_once('.') else {
        return false;
    };
    let func_ok = func.len() == 1 && (b'0'..=b'7').contains(&func.as_bytes()[0]);
    let parts: Vec<&str> = rest.split(':').collect();
    let bdf_ok = match parts.as_slice() {
        [dom, bus, dev] => hex(dom, 4) && hex(bus, 2) && hex(dev, 2),
        [bus, dev] => hex(bus, 2) && hex(dev, 2),
        _ => false,
    };
    func_ok && bdf_ok
}

/// Parses a DPDK device: a PCI address ("0000:03:00.0", also "03:00.0",
/// normalised to the long form) or a virtual device string
/// ("net_af_packet0,iface=lan0"): a driver instance name of
/// [A-Za-z0-9_] optionally followed by ",key=value" arguments, no whitespace.
pub fn parse_dpdk_device(s: &str) -> Result<DpdkDevice, String> {
    if is_pci_address(s) {
        let long = if s.matches(':').count() == 1 {
            format!("0000:{s}")
        } else {
            s.to_owned()
        };
        return Ok(DpdkDevice::Pci(long.to_ascii_lowercase()));
    }
    let (name, args) = s.split_once(',').unwrap_or((s, ""));
    let name_ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.as_bytes()[0].is_ascii_alphabetic();
    if !name_ok {
        return Err(format!(
            "invalid DPDK device `{s}`; expected a PCI address like 0000:03:00.0 or a virtual device like net_af_packet0,iface=lan0"
        ));
    }
    if s.chars().any(char::is_whitespace) {
        return Err(format!("DPDK device `{s}` must not contain whitespace"));
    }
    if !args.is_empty()
        && args
            .split(',')
            .any(|kv| kv.split_once('=').is_none_or(|(k, _)| k.is_empty()))
    {
        return Err(format!(
            "DPDK device `{s}`: arguments after the driver name must be key=value pairs separated by commas"
        ));
    }
    Ok(DpdkDevice::Vdev(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpdk_devices() {
        assert_eq!(
            parse_dpdk_device("0000:03:00.0"),
            Ok(DpdkDevice::Pci("0000:03:00.0".into()))
        );
        assert_eq!(
            parse_dpdk_device("3B:00.1"),
            Ok(DpdkDevice::Pci("0000:3b:00.1".into()))
        );
        assert_eq!(
            parse_dpdk_device("net_af_packet0,iface=lan0"),
            Ok(DpdkDevice::Vdev("net_af_packet0,iface=lan0".into()))
        );
        assert_eq!(
            parse_dpdk_device("net_null0"),
            Ok(DpdkDevice::Vdev("net_null0".into()))
        );
        for bad in [
            "",
            "0000:03:00.8",
            "net af_packet0",
            "net_tap0,iface",
            "net_tap0,=x",
            ",iface=a",
            "0net",
        ] {
            assert!(parse_dpdk_device(bad).is_err(), "{bad}");
        }
    }
}
