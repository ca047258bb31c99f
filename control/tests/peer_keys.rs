//! Key derivation of the peer channel: both sides derive mirrored keys, and
//! nothing leaks through `Debug`.

use ring::rand::SystemRandom;
use scistream_control::peer::keys::{Exchange, KeyError, SessionKeys, Side};
use scistream_region::Algorithm;

/// Runs both ends of one exchange with `exporter` (the same on both ends, as
/// the TLS exporter of one connection is).
fn exchange(exporter: &[u8; 32], alg: Algorithm) -> (SessionKeys, SessionKeys) {
    let rng = SystemRandom::new();
    let initiator = Exchange::new(&rng).unwrap();
    let responder = Exchange::new(&rng).unwrap();
    let (ipub, rpub) = (initiator.public_key(), responder.public_key());
    let i = initiator
        .finish(&rpub, exporter, alg, Side::Initiator, 1)
        .unwrap();
    let r = responder
        .finish(&ipub, exporter, alg, Side::Responder, 1)
        .unwrap();
    (i, r)
}

/// Compares without printing key material on failure.
fn same_direction(
    a: &scistream_control::peer::keys::DirectionKeys,
    b: &scistream_control::peer::keys::DirectionKeys,
) -> bool {
    a.spi == b.spi && a.key_len == b.key_len && a.key_bytes() == b.key_bytes() && a.salt == b.salt
}

#[test]
fn both_sides_derive_mirrored_keys() {
    for alg in [Algorithm::Aes128Gcm, Algorithm::Aes256Gcm] {
        let (i, r) = exchange(&[7u8; 32], alg);
        assert!(
            same_direction(&i.outbound, &r.inbound),
            "{alg:?}: i→r differs"
        );
        assert!(
            same_direction(&i.inbound, &r.outbound),
            "{alg:?}: r→i differs"
        );
        // The two directions are independent.
        assert!(i.outbound.key_bytes() != i.inbound.key_bytes());
        assert!(i.outbound.salt != i.inbound.salt);
        for d in [&i.outbound, &i.inbound] {
            assert_eq!(d.key_len, alg.key_len());
            assert_eq!(d.key_bytes().len(), alg.key_len());
            assert!(d.key[alg.key_len()..].iter().all(|b| *b == 0));
            assert!(d.key_bytes().iter().any(|b| *b != 0));
        }
    }
}

#[test]
fn fresh_exchanges_never_repeat_keys() {
    // Same exporter (same channel, uid and epoch), two exchanges: a retried or
    // repeated exchange never reuses keys. (Separation by exporter for one
    // shared secret is a unit test in keys.rs, which can fix the secret.)
    let (i1, r1) = exchange(&[3u8; 32], Algorithm::Aes128Gcm);
    let (i2, r2) = exchange(&[3u8; 32], Algorithm::Aes128Gcm);
    assert!(i1.outbound.key_bytes() != i2.outbound.key_bytes());
    assert!(i1.inbound.key_bytes() != i2.inbound.key_bytes());
    assert!(r1.outbound.salt != r2.outbound.salt);
}

#[test]
fn algorithm_separates_keys() {
    // With one shared secret and exporter, AES-128 is not a prefix of AES-256.
    let rng = SystemRandom::new();
    let peer = Exchange::new(&rng).unwrap();
    let peer_pub = peer.public_key();
    let mine = Exchange::new(&rng).unwrap();
    let mine_pub = mine.public_key();
    let k256 = mine
        .finish(
            &peer_pub,
            &[5u8; 32],
            Algorithm::Aes256Gcm,
            Side::Initiator,
            1,
        )
        .unwrap();
    let k128 = peer
        .finish(
            &mine_pub,
            &[5u8; 32],
            Algorithm::Aes128Gcm,
            Side::Responder,
            1,
        )
        .unwrap();
    assert!(k128.inbound.key_bytes() != &k256.outbound.key_bytes()[..16]);
}

#[test]
fn spis_are_unreserved_and_distinct() {
    for n in 0..200u8 {
        let (i, r) = exchange(&[n; 32], Algorithm::Aes128Gcm);
        assert!(i.outbound.spi >= 256 && i.inbound.spi >= 256);
        assert_ne!(i.outbound.spi, i.inbound.spi);
        assert_eq!(i.outbound.spi, r.inbound.spi);
    }
}

#[test]
fn debug_never_shows_key_bytes() {
    let (i, _) = exchange(&[11u8; 32], Algorithm::Aes256Gcm);
    let text = format!("{i:?} {:?} {:#?}", i.outbound, i.inbound);
    for d in [&i.outbound, &i.inbound] {
        assert!(!text.contains(&hex::encode(d.key_bytes())));
        assert!(!text.contains(&format!("{:?}", d.key_bytes())));
        assert!(!text.contains(&format!("{:?}", d.salt)));
        assert!(text.contains(&format!("{:#010x}", d.spi)));
    }
    assert!(text.contains("<redacted>"));

    let exchange = Exchange::new(&SystemRandom::new()).unwrap();
    let text = format!("{exchange:?}");
    assert!(text.contains(&hex::encode(exchange.public_key())));
    assert!(text.contains("<redacted>"));
}

#[test]
fn bad_peer_keys_are_errors() {
    let rng = SystemRandom::new();
    let finish = |peer: &[u8]| {
        Exchange::new(&rng)
            .unwrap()
            .finish(peer, &[0u8; 32], Algorithm::Aes128Gcm, Side::Responder, 1)
            .map(|_| ())
    };
    assert!(matches!(
        finish(&[9u8; 31]),
        Err(KeyError::BadPeerKeyLength { got: 31 })
    ));
    assert!(matches!(
        finish(&[9u8; 33]),
        Err(KeyError::BadPeerKeyLength { got: 33 })
    ));
    assert!(matches!(
        finish(&[]),
        Err(KeyError::BadPeerKeyLength { got: 0 })
    ));
    // u = 0 and u = 1 are low-order points: the shared secret would be all zeros.
    assert!(matches!(finish(&[0u8; 32]), Err(KeyError::PeerKeyRejected)));
    let mut one = [0u8; 32];
    one[0] = 1;
    assert!(matches!(finish(&one), Err(KeyError::PeerKeyRejected)));
    // A point of order 8 (little-endian u-coordinate).
    let order8 =
        hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800").unwrap();
    assert!(matches!(finish(&order8), Err(KeyError::PeerKeyRejected)));
}
