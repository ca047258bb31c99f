//! ARP (RFC 826) for Ethernet/IPv4: parsing requests and replies, building frames.

use std::net::Ipv4Addr;

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
};

use super::{Mac, WireError, BROADCAST_MAC, ETH_HLEN};

/// An ARP message for Ethernet/IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    /// True for a request, false for a reply.
    pub is_request: bool,
    /// Sender MAC.
    pub sender_mac: Mac,
    /// Sender IPv4 address.
    pub sender_ip: Ipv4Addr,
    /// Target MAC (zero in requests).
    pub target_mac: Mac,
    /// Target IPv4 address.
    pub target_ip: Ipv4Addr,
}

/// Parses the ARP payload of an Ethernet frame (`frame` includes the Ethernet header).
pub fn parse(frame: &[u8]) -> Result<Arp, WireError> {
    let payload = frame.get(ETH_HLEN..).ok_or(WireError::Truncated)?;
    let packet = ArpPacket::new_checked(payload).map_err(|_| WireError::Truncated)?;
    match ArpRepr::parse(&packet).map_err(|_| WireError::Malformed)? {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_hardware_addr,
            target_protocol_addr,
        } => {
            let is_request = match operation {
                ArpOperation::Request => true,
                ArpOperation::Reply => false,
                _ => return Err(WireError::Malformed),
            };
            Ok(Arp {
                is_request,
                sender_mac: source_hardware_addr.0,
                sender_ip: source_protocol_addr,
                target_mac: target_hardware_addr.0,
                target_ip: target_protocol_addr,
            })
        }
        _ => Err(WireError::Malformed),
    }
}

/// Builds a complete Ethernet frame carrying `arp`, sent from `src_mac` to `dst_mac`.
pub fn build(src_mac: Mac, dst_mac: Mac, arp: &Arp) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: if arp.is_request {
            ArpOperation::Request
        } else {
            ArpOperation::Reply
        },
        source_hardware_addr: EthernetAddress(arp.sender_mac),
        source_protocol_addr: arp.sender_ip,
        target_hardware_addr: EthernetAddress(arp.target_mac),
        target_protocol_addr: arp.target_ip,
    };
    // Pad to the 60-byte Ethernet minimum.
    let mut frame = vec![0u8; (ETH_HLEN + repr.buffer_len()).max(60)];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(EthernetAddress(dst_mac));
    eth.set_src_addr(EthernetAddress(src_mac));
    eth.set_ethertype(EthernetProtocol::Arp);
    repr.emit(&mut ArpPacket::new_unchecked(&mut frame[ETH_HLEN..]));
    frame
}

/// A broadcast request from `our_mac`/`our_ip` asking for `target`.
pub fn request(our_mac: Mac, our_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    build(
        our_mac,
        BROADCAST_MAC,
        &Arp {
            is_request: true,
            sender_mac: our_mac,
            sender_ip: our_ip,
            target_mac: [0; 6],
            target_ip: target,
        },
    )
}

/// The reply from `our_mac` to `req` (which asked for one of our addresses).
pub fn reply(our_mac: Mac, req: &Arp) -> Vec<u8> {
    build(
        our_mac,
        req.sender_mac,
        &Arp {
            is_request: false,
            sender_mac: our_mac,
            sender_ip: req.target_ip,
            target_mac: req.sender_mac,
            target_ip: req.sender_ip,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: Mac = [0x02, 0, 0, 0, 0, 1];
    const THEIRS: Mac = [0x02, 0, 0, 0, 0, 2];

    #[test]
    fn request_then_reply_round_trip() {
        let req = request(
            THEIRS,
            Ipv4Addr::new(10, 10, 1, 2),
            Ipv4Addr::new(10, 10, 1, 1),
        );
        assert_eq!(req.len(), 60);
        assert_eq!(&req[..6], &BROADCAST_MAC);
        assert_eq!(&req[12..14], &[0x08, 0x06]);
        let parsed = parse(&req).unwrap();
        assert!(parsed.is_request);
        assert_eq!(parsed.target_ip, Ipv4Addr::new(10, 10, 1, 1));
        let rep = reply(OURS, &parsed);
        assert_eq!(&rep[..6], &THEIRS);
        assert_eq!(&rep[6..12], &OURS);
        let parsed = parse(&rep).unwrap();
        assert!(!parsed.is_request);
        assert_eq!(parsed.sender_mac, OURS);
        assert_eq!(parsed.sender_ip, Ipv4Addr::new(10, 10, 1, 1));
        assert_eq!(parsed.target_ip, Ipv4Addr::new(10, 10, 1, 2));
    }

    #[test]
    fn rejects_truncated_and_non_ipv4_arp() {
        let req = request(
            THEIRS,
            Ipv4Addr::new(10, 10, 1, 2),
            Ipv4Addr::new(10, 10, 1, 1),
        );
        assert_eq!(parse(&req[..20]), Err(WireError::Truncated));
        assert_eq!(parse(&req[..10]), Err(WireError::Truncated));
        let mut bad = req.clone();
        bad[ETH_HLEN + 2] = 0x86; // protocol type 0x86dd
        bad[ETH_HLEN + 3] = 0xdd;
        assert_eq!(parse(&bad), Err(WireError::Malformed));
        let mut bad = req;
        bad[ETH_HLEN + 7] = 9; // operation 9
        assert_eq!(parse(&bad), Err(WireError::Malformed));
    }
}
