//! ESP (RFC 4303) with the AES-GCM explicit IV (RFC 4106 §3.1), carried in
//! UDP (RFC 3948): a zero-copy view in smoltcp's style. A checked
//! constructor validates lengths once; the accessors are getters and
//! setters over named byte ranges; [`EspRepr`] parses and emits the header.
//!
//! ```text
//!  0               4               8                       16
//!  +---------------+---------------+-----------------------+------ ... ------+--------+
//!  |      SPI      |  seq (low 32) |   IV (8, = seq, BE)   | payload (enc.)  | ICV 16 |
//!  +---------------+---------------+-----------------------+------ ... ------+--------+
//! ```
//!
//! The payload (inner packet, padding, pad length, next header) is a
//! multiple of 4 bytes and at least 4.

use std::ops::Range;

mod field {
    use std::ops::Range;

    pub const SPI: Range<usize> = 0..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const IV: Range<usize> = 8..16;
    pub const PAYLOAD_START: usize = IV.end;
}

/// Length of the ESP header (SPI and low sequence number).
pub const HEADER_LEN: usize = field::SEQ.end;
/// Length of the explicit IV.
pub const IV_LEN: usize = field::IV.end - field::IV.start;
/// Length of the GCM ICV.
pub const ICV_LEN: usize = 16;
/// The smallest encrypted payload: pad length and next header, padded to 4.
pub const MIN_PAYLOAD: usize = 4;
/// UDP header length.
pub const UDP_HLEN: usize = 8;
/// The NAT-keepalive payload of ESP-in-UDP (RFC 3948 §2.3).
pub const NAT_KEEPALIVE: u8 = 0xff;

/// Why bytes are not an ESP packet (each a drop reason of the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EspWireError {
    /// Shorter than the ESP header and IV (or, in UDP, the UDP header).
    #[error("truncated before the end of the ESP header and IV")]
    Truncated,
    /// No room for the minimal encrypted payload and the 16-byte ICV.
    #[error("too short for the ESP payload and ICV")]
    TruncatedIcv,
    /// The encrypted payload is not a multiple of 4, or a UDP length is wrong.
    #[error("ESP or UDP length inconsistent")]
    BadLength,
    /// UDP to another port, a NAT keepalive, or the IKE non-ESP marker (SPI 0).
    #[error("not ESP")]
    NotEsp,
}

/// A read/write view of an ESP packet (from the SPI to the end of the ICV).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspPacket<T> {
    /// A view without checks: accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        EspPacket { buffer }
    }

    /// A view of a buffer whose lengths [`EspPacket::check_len`] accepts.
    pub fn new_checked(buffer: T) -> Result<Self, EspWireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the header, the IV, a payload of at least 4 bytes that
    /// is a multiple of 4, and the ICV are all present.
    pub fn check_len(&self) -> Result<(), EspWireError> {
        let len = self.buffer.as_ref().len();
        if len < field::PAYLOAD_START {
            return Err(EspWireError::Truncated);
        }
        let rest = len - field::PAYLOAD_START;
        if rest < MIN_PAYLOAD + ICV_LEN {
            return Err(EspWireError::TruncatedIcv);
        }
        if !(rest - ICV_LEN).is_multiple_of(4) {
            return Err(EspWireError::BadLength);
        }
        Ok(())
    }

    /// The Security Parameters Index.
    pub fn spi(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SPI])
    }

    /// The low 32 bits of the sequence number.
    pub fn seq_low(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SEQ])
    }

    /// The explicit IV.
    pub fn iv(&self) -> u64 {
        let b = &self.buffer.as_ref()[field::IV];
        u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// Where the encrypted payload lies in the buffer.
    pub fn payload_range(&self) -> Range<usize> {
        field::PAYLOAD_START..self.buffer.as_ref().len() - ICV_LEN
    }

    /// Where the ICV lies in the buffer.
    pub fn icv_range(&self) -> Range<usize> {
        let len = self.buffer.as_ref().len();
        len - ICV_LEN..len
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EspPacket<T> {
    /// Sets the SPI.
    pub fn set_spi(&mut self, spi: u32) {
        self.buffer.as_mut()[field::SPI].copy_from_slice(&spi.to_be_bytes());
    }

    /// Sets the low 32 bits of the sequence number.
    pub fn set_seq_low(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    /// Sets the explicit IV.
    pub fn set_iv(&mut self, iv: u64) {
        self.buffer.as_mut()[field::IV].copy_from_slice(&iv.to_be_bytes());
    }
}

/// The header fields of an ESP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspRepr {
    /// Security Parameters Index.
    pub spi: u32,
    /// Low 32 bits of the sequence number.
    pub seq_low: u32,
    /// The explicit IV.
    pub iv: u64,
}

impl EspRepr {
    /// The header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &EspPacket<T>) -> EspRepr {
        EspRepr {
            spi: p.spi(),
            seq_low: p.seq_low(),
            iv: p.iv(),
        }
    }

    /// Writes the header and IV into `p` (which needs at least 16 bytes).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut EspPacket<T>) {
        p.set_spi(self.spi);
        p.set_seq_low(self.seq_low);
        p.set_iv(self.iv);
    }
}

/// Where the ESP packet lies inside a UDP datagram `udp` (header included)
/// sent to `port`: checks the destination port, that the UDP length equals
/// the datagram's, and that it is neither a NAT keepalive nor the IKE
/// non-ESP marker (SPI 0). Returns the ESP packet's range within `udp`; its
/// own lengths are checked by [`EspPacket::new_checked`].
pub fn esp_in_udp(udp: &[u8], port: u16) -> Result<Range<usize>, EspWireError> {
    if udp.len() < UDP_HLEN {
        return Err(EspWireError::Truncated);
    }
    if u16::from_be_bytes([udp[2], udp[3]]) != port {
        return Err(EspWireError::NotEsp);
    }
    if usize::from(u16::from_be_bytes([udp[4], udp[5]])) != udp.len() {
        return Err(EspWireError::BadLength);
    }
    let esp = &udp[UDP_HLEN..];
    if esp == [NAT_KEEPALIVE] {
        return Err(EspWireError::NotEsp);
    }
    if esp.len() >= field::SPI.end && be32(&esp[field::SPI]) == 0 {
        return Err(EspWireError::NotEsp);
    }
    Ok(UDP_HLEN..udp.len())
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(payload: usize) -> Vec<u8> {
        let mut b = vec![0u8; 16 + payload + ICV_LEN];
        let mut p = EspPacket::new_unchecked(&mut b[..]);
        EspRepr {
            spi: 0x1234_5678,
            seq_low: 7,
            iv: 0x0102_0304_0506_0708,
        }
        .emit(&mut p);
        b
    }

    #[test]
    fn header_round_trips_through_named_fields() {
        let b = packet(8);
        assert_eq!(
            &b[..16],
            &[0x12, 0x34, 0x56, 0x78, 0, 0, 0, 7, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        let p = EspPacket::new_checked(&b[..]).unwrap();
        assert_eq!(
            EspRepr::parse(&p),
            EspRepr {
                spi: 0x1234_5678,
                seq_low: 7,
                iv: 0x0102_0304_0506_0708
            }
        );
        assert_eq!(p.payload_range(), 16..24);
        assert_eq!(p.icv_range(), 24..40);
    }

    #[test]
    fn lengths_are_checked() {
        let b = packet(8);
        assert_eq!(
            EspPacket::new_checked(&b[..15]).err(),
            Some(EspWireError::Truncated)
        );
        assert_eq!(
            EspPacket::new_checked(&b[..16 + 3 + ICV_LEN]).err(),
            Some(EspWireError::TruncatedIcv)
        );
        assert_eq!(
            EspPacket::new_checked(&packet(6)[..]).err(),
            Some(EspWireError::BadLength)
        );
        assert!(EspPacket::new_checked(&packet(4)[..]).is_ok());
    }

    #[test]
    fn udp_encapsulation_rules() {
        let esp = packet(8);
        let mut udp = vec![0x11, 0x94, 0x11, 0x94, 0, 0, 0, 0];
        udp.extend_from_slice(&esp);
        let len = udp.len() as u16;
        udp[4..6].copy_from_slice(&len.to_be_bytes());
        assert_eq!(esp_in_udp(&udp, 4500), Ok(8..udp.len()));
        assert_eq!(esp_in_udp(&udp, 4501), Err(EspWireError::NotEsp));
        assert_eq!(
            esp_in_udp(&udp[..udp.len() - 1], 4500),
            Err(EspWireError::BadLength)
        );
        let keepalive = [0x11, 0x94, 0x11, 0x94, 0, 9, 0, 0, 0xff];
        assert_eq!(esp_in_udp(&keepalive, 4500), Err(EspWireError::NotEsp));
        let mut marker = udp.clone();
        marker[8..12].fill(0);
        assert_eq!(esp_in_udp(&marker, 4500), Err(EspWireError::NotEsp));
        assert_eq!(esp_in_udp(&udp[..7], 4500), Err(EspWireError::Truncated));
    }
}
