//! Messages of the peer channel and their framing.
//!
//! Each message is one JSON object (an externally tagged [`PeerMessage`],
//! binary fields in hex) in one frame of `tokio_util`'s
//! [`LengthDelimitedCodec`] (4-byte big-endian length prefix), at most
//! [`MAX_FRAME`] bytes. [`PeerStream`] sends and receives them over any
//! `AsyncRead + AsyncWrite` (the TLS stream), and splits into a
//! [`PeerReader`] and a [`PeerWriter`] for full-duplex use.
//!
//! Conversation: each side first sends [`PeerMessage::Hello`] (see
//! [`PeerStream::exchange_hello`]); then, per session and epoch, the initiator
//! sends `KeyOffer`, the responder installs its new inbound SA and answers
//! `KeyAccept`, the initiator installs its inbound SA, switches outbound and
//! sends `Commit`, the responder switches outbound and answers `Committed`.
//! Any request can be answered by `Refused`.

use std::fmt;
use std::io;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio_util::bytes::{Bytes, BytesMut};
use tokio_util::codec::{Framed, FramedParts, FramedWrite, LengthDelimitedCodec};

/// Version of the peer-channel protocol sent in `Hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame (JSON body, without the 4-byte length prefix) sent or accepted.
pub const MAX_FRAME: usize = 64 * 1024;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RefuseCode {
    /// This gateway holds no session with that uid (none was created by an
    /// authenticated user here, or it was released).
    UnknownUid,
    /// The epoch is not the one expected next (an older or skipped epoch).
    StaleEpoch,
    /// The `Hello` carried a protocol version this gateway does not speak.
    BadVersion,
    /// The message was malformed or unexpected at this point.
    BadMessage,
    /// A conflicting exchange for the same uid is in progress; retry later.
    Busy,
    /// This gateway failed internally (for example, installing the SA).
    Internal,
}

impl fmt::Display for RefuseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One peer-channel message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// First message in each direction.
    Hello {
        /// Protocol version ([`PROTOCOL_VERSION`]).
        version: u32,
        /// The sender's gateway name.
        gateway: String,
    },
    /// Initiator → responder: start (epoch 0) or rekey a session.
    KeyOffer {
        /// Session id.
        uid: String,
        /// Key epoch (0 for the first keys, +1 per rekey).
        epoch: u64,
        /// AEAD algorithm name ("aes128-gcm16" or "aes256-gcm16").
        algorithm: String,
        /// The initiator's ephemeral X25519 public key.
        #[serde(with = "hex32")]
        public: [u8; 32],
        /// SAs per direction the initiator can use (lanes; absent: 1).
        #[serde(default = "one", skip_serializing_if = "is_one")]
        lanes: u32,
    },
    /// Responder → initiator, after the responder installed its new inbound SA.
    KeyAccept {
        /// Session id.
        uid: String,
        /// Key epoch, as offered.
        epoch: u64,
        /// The responder's ephemeral X25519 public key.
        #[serde(with = "hex32")]
        public: [u8; 32],
        /// SAs per direction of this epoch, as the responder settled them
        /// ([`settle_lanes`]; absent: 1).
        #[serde(default = "one", skip_serializing_if = "is_one")]
        lanes: u32,
    },
    /// Initiator → responder: the initiator switched its outbound SA to `epoch`;
    /// the responder should switch too.
    Commit {
        /// Session id.
        uid: String,
        /// Key epoch now used outbound.
        epoch: u64,
    },
    /// Responder → initiator: the responder switched its outbound SA to `epoch`.
    Committed {
        /// Session id.
        uid: String,
        /// Key epoch now used outbound.
        epoch: u64,
    },
    /// Responder → initiator: please rekey (a lifetime limit was reached).
    RekeyRequest {
        /// Session id.
        uid: String,
    },
    /// Either way: the session is released; remove its SAs.
    Release {
        /// Session id.
        uid: String,
    },
    /// Answer to a request that cannot be honoured.
    Refused {
        /// Session id the refusal concerns, if any.
        #[serde(default)]
        uid: Option<String>,
        /// Epoch the refusal concerns, if any.
        #[serde(default)]
        epoch: Option<u64>,
        /// Machine-readable reason.
        code: RefuseCode,
        /// Human-readable reason.
        reason: String,
    },
}

/// One SA per direction, the wire's default: left out, so a session
/// without lanes looks as it did before lanes existed, and a peer that
/// does not know lanes is read as asking for one.
fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// The SAs per direction of an epoch: the smaller of the initiator's
/// (`offered`) and the responder's (`wanted`) wishes, within 1..=16. Each
/// gateway's wish is what its data plane can use, so a peer that does not
/// know lanes (1) gets one SA.
pub fn settle_lanes(offered: u32, wanted: u32) -> u32 {
    offered
        .min(wanted)
        .clamp(1, crate::peer::keys::MAX_LANES as u32)
}

impl PeerMessage {
    /// The variant's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerMessage::Hello { .. } => "Hello",
            PeerMessage::KeyOffer { .. } => "KeyOffer",
            PeerMessage::KeyAccept { .. } => "KeyAccept",
            PeerMessage::Commit { .. } => "Commit",
            PeerMessage::Committed { .. } => "Committed",
            PeerMessage::RekeyRequest { .. } => "RekeyRequest",
            PeerMessage::Release { .. } => "Release",
            PeerMessage::Refused { .. } => "Refused",
        }
    }

    /// The session id the message concerns, if any.
    pub fn uid(&self) -> Option<&str> {
        match self {
            PeerMessage::Hello { .. } => None,
            PeerMessage::KeyOffer { uid, .. }
            | PeerMessage::KeyAccept { uid, .. }
            | PeerMessage::Commit { uid, .. }
            | PeerMessage::Committed { uid, .. }
            | PeerMessage::RekeyRequest { uid }
            | PeerMessage::Release { uid } => Some(uid),
            PeerMessage::Refused { uid, .. } => uid.as_deref(),
        }
    }
}

/// Serde adapter: `[u8; 32]` as 64 lowercase hex digits.
mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.as_bytes(), &mut out).map_err(|e| {
            serde::de::Error::custom(format_args!("expected 64 hex digits (32 bytes): {e}"))
        })?;
        Ok(out)
    }
}

/// Errors of the peer-channel framing and message layer.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Reading or writing the underlying stream failed.
    #[error("peer channel I/O failed: {0}")]
    Io(#[source] io::Error),
    /// A frame (received, or about to be sent) exceeds [`MAX_FRAME`]. After a
    /// received one the stream is out of sync: close it.
    #[error("peer message frame exceeds {MAX_FRAME} bytes")]
    FrameTooLong,
    /// A frame did not hold a valid message.
    #[error("malformed peer message: {0}")]
    BadMessage(String),
    /// A message could not be encoded.
    #[error("cannot encode peer message {kind}: {source}")]
    Encode {
        /// The message's variant.
        kind: &'static str,
        /// serde_json's reason.
        #[source]
        source: serde_json::Error,
    },
    /// The peer closed the channel where a message was required.
    #[error("peer closed the channel while {0}")]
    Closed(&'static str),
    /// The peer speaks another protocol version.
    #[error(
        "peer {gateway:?} speaks peer-channel version {theirs}, this gateway {PROTOCOL_VERSION}"
    )]
    VersionMismatch {
        /// The peer's gateway name.
        gateway: String,
        /// The peer's version.
        theirs: u32,
    },
    /// The peer sent a message that is not valid at this point.
    #[error("unexpected {got} from peer while {expected}")]
    Unexpected {
        /// What was being waited for.
        expected: &'static str,
        /// The variant received.
        got: &'static str,
    },
    /// The peer refused.
    #[error("peer refused ({code}): {reason}")]
    Refused {
        /// The peer's code.
        code: RefuseCode,
        /// The peer's reason.
        reason: String,
    },
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

fn io_error(e: io::Error) -> WireError {
    let too_long = e
        .get_ref()
        .is_some_and(|inner| inner.is::<tokio_util::codec::LengthDelimitedCodecError>());
    if too_long {
        WireError::FrameTooLong
    } else {
        WireError::Io(e)
    }
}

fn encode(message: &PeerMessage) -> Result<Bytes, WireError> {
    let body = serde_json::to_vec(message).map_err(|source| WireError::Encode {
        kind: message.kind(),
        source,
    })?;
    if body.len() > MAX_FRAME {
        return Err(WireError::FrameTooLong);
    }
    Ok(Bytes::from(body))
}

fn decode(frame: &BytesMut) -> Result<PeerMessage, WireError> {
    serde_json::from_slice(frame).map_err(|e| WireError::BadMessage(e.to_string()))
}

async fn send_on<T>(sink: &mut T, message: &PeerMessage) -> Result<(), WireError>
where
    T: futures_util::Sink<Bytes, Error = io::Error> + Unpin,
{
    let frame = encode(message)?;
    sink.send(frame).await.map_err(io_error)
}

async fn recv_on<T>(stream: &mut T) -> Result<Option<PeerMessage>, WireError>
where
    T: futures_util::Stream<Item = Result<BytesMut, io::Error>> + Unpin,
{
    match stream.next().await {
        None => Ok(None),
        Some(Err(e)) => Err(io_error(e)),
        Some(Ok(frame)) => decode(&frame).map(Some),
    }
}

/// A peer channel: framed [`PeerMessage`]s over the stream `S`.
#[derive(Debug)]
pub struct PeerStream<S> {
    framed: Framed<S, LengthDelimitedCodec>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> PeerStream<S> {
    /// Frames `stream` (normally the established TLS stream).
    pub fn new(stream: S) -> PeerStream<S> {
        PeerStream {
            framed: Framed::new(stream, codec()),
        }
    }

    /// Sends one message and flushes it.
    pub async fn send(&mut self, message: &PeerMessage) -> Result<(), WireError> {
        send_on(&mut self.framed, message).await
    }

    /// Receives the next message; `Ok(None)` when the peer closed the channel
    /// cleanly between messages. A frame that is not a valid message gives
    /// [`WireError::BadMessage`] (the channel stays usable); an oversized one,
    /// [`WireError::FrameTooLong`].
    pub async fn recv(&mut self) -> Result<Option<PeerMessage>, WireError> {
        recv_on(&mut self.framed).await
    }

    /// Sends `Hello` with this gateway's name and waits for the peer's. Returns
    /// the gateway name the peer announced (compare it with the peer that TLS
    /// authenticated). On a version mismatch or an unexpected first message,
    /// sends `Refused` (`BadVersion` / `BadMessage`) and fails.
    pub async fn exchange_hello(&mut self, gateway: &str) -> Result<String, WireError> {
        self.send(&PeerMessage::Hello {
            version: PROTOCOL_VERSION,
            gateway: gateway.to_string(),
        })
        .await?;
        const WAITING: &str = "waiting for Hello";
        let reply = self.recv().await?.ok_or(WireError::Closed(WAITING))?;
        match reply {
            PeerMessage::Hello {
                version: PROTOCOL_VERSION,
                gateway,
            } => Ok(gateway),
            PeerMessage::Hello { version, gateway } => {
                let error = WireError::VersionMismatch {
                    gateway,
                    theirs: version,
                };
                self.refuse(RefuseCode::BadVersion, &error).await;
                Err(error)
            }
            PeerMessage::Refused { code, reason, .. } => Err(WireError::Refused { code, reason }),
            other => {
                let error = WireError::Unexpected {
                    expected: WAITING,
                    got: other.kind(),
                };
                self.refuse(RefuseCode::BadMessage, &error).await;
                Err(error)
            }
        }
    }

    /// Best-effort `Refused` before the caller drops the channel.
    async fn refuse(&mut self, code: RefuseCode, why: &WireError) {
        let refused = PeerMessage::Refused {
            uid: None,
            epoch: None,
            code,
            reason: why.to_string(),
        };
        if let Err(e) = self.send(&refused).await {
            tracing::debug!("peer channel: could not send Refused: {e}");
        }
    }

    /// Flushes pending messages and shuts the stream's write side down (for
    /// TLS: sends close_notify); the peer's next `recv` returns `Ok(None)`.
    pub async fn close(&mut self) -> Result<(), WireError> {
        SinkExt::<Bytes>::close(&mut self.framed)
            .await
            .map_err(io_error)
    }

    /// The underlying stream (for example, to read the TLS connection's
    /// exporter or peer certificates).
    pub fn get_ref(&self) -> &S {
        self.framed.get_ref()
    }

    /// Splits into independent reader and writer halves (for a task that
    /// reads while another writes). Bytes already buffered move with them.
    pub fn split(self) -> (PeerReader<S>, PeerWriter<S>) {
        let parts = self.framed.into_parts();
        let (read_half, write_half) = tokio::io::split(parts.io);
        let mut read_parts = FramedParts::new::<Bytes>(read_half, parts.codec);
        read_parts.read_buf = parts.read_buf;
        let mut writer = FramedWrite::new(write_half, codec());
        writer
            .write_buffer_mut()
            .extend_from_slice(&parts.write_buf);
        (
            PeerReader {
                framed: Framed::from_parts(read_parts),
            },
            PeerWriter { framed: writer },
        )
    }
}

/// The receiving half of a [`PeerStream`].
#[derive(Debug)]
pub struct PeerReader<S> {
    framed: Framed<ReadHalf<S>, LengthDelimitedCodec>,
}

impl<S: AsyncRead + AsyncWrite> PeerReader<S> {
    /// As [`PeerStream::recv`].
    pub async fn recv(&mut self) -> Result<Option<PeerMessage>, WireError> {
        recv_on(&mut self.framed).await
    }
}

/// The sending half of a [`PeerStream`].
#[derive(Debug)]
pub struct PeerWriter<S> {
    framed: FramedWrite<WriteHalf<S>, LengthDelimitedCodec>,
}

impl<S: AsyncRead + AsyncWrite> PeerWriter<S> {
    /// As [`PeerStream::send`].
    pub async fn send(&mut self, message: &PeerMessage) -> Result<(), WireError> {
        send_on(&mut self.framed, message).await
    }

    /// As [`PeerStream::close`].
    pub async fn close(&mut self) -> Result<(), WireError> {
        SinkExt::<Bytes>::close(&mut self.framed)
            .await
            .map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn offer() -> PeerMessage {
        PeerMessage::KeyOffer {
            uid: "4f1c-uid".to_string(),
            epoch: 7,
            algorithm: "aes128-gcm16".to_string(),
            public: [0xab; 32],
            lanes: 1,
        }
    }

    #[test]
    fn json_shape_is_externally_tagged_with_hex() {
        let json = serde_json::to_string(&offer()).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"KeyOffer":{{"uid":"4f1c-uid","epoch":7,"algorithm":"aes128-gcm16","public":"{}"}}}}"#,
                "ab".repeat(32)
            )
        );
        let refused: PeerMessage =
            serde_json::from_str(r#"{"Refused":{"code":"Busy","reason":"later"}}"#).unwrap();
        assert_eq!(
            refused,
            PeerMessage::Refused {
                uid: None,
                epoch: None,
                code: RefuseCode::Busy,
                reason: "later".to_string()
            }
        );
    }

    #[test]
    fn lanes_are_optional_on_the_wire_and_settle_to_the_larger_wish() {
        // One SA per direction is sent as before lanes existed (see the
        // shape test); more are named.
        let four = PeerMessage::KeyOffer {
            uid: "4f1c-uid".to_string(),
            epoch: 7,
            algorithm: "aes128-gcm16".to_string(),
            public: [0xab; 32],
            lanes: 4,
        };
        let json = serde_json::to_string(&four).unwrap();
        assert!(json.contains(r#""lanes":4"#), "{json}");
        assert_eq!(serde_json::from_str::<PeerMessage>(&json).unwrap(), four);
        // A peer that does not know lanes: the field is absent, read as 1.
        let old = format!(
            r#"{{"KeyAccept":{{"uid":"u","epoch":1,"public":"{}"}}}}"#,
            "01".repeat(32)
        );
        match serde_json::from_str::<PeerMessage>(&old).unwrap() {
            PeerMessage::KeyAccept { lanes, .. } => assert_eq!(lanes, 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            settle_lanes(1, 8),
            1,
            "an initiator without lanes gets one SA"
        );
        assert_eq!(
            settle_lanes(8, 1),
            1,
            "a responder without lanes gives one SA"
        );
        assert_eq!(settle_lanes(2, 4), 2);
        assert_eq!(settle_lanes(0, 4), 1);
        assert_eq!(settle_lanes(99, 40), 16, "capped");
    }

    #[test]
    fn bad_hex_is_rejected() {
        let err = serde_json::from_str::<PeerMessage>(
            r#"{"KeyAccept":{"uid":"u","epoch":1,"public":"abcd"}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }

    #[tokio::test]
    async fn round_trip_every_variant() {
        let (a, b) = tokio::io::duplex(4096);
        let mut a = PeerStream::new(a);
        let mut b = PeerStream::new(b);
        let messages = vec![
            PeerMessage::Hello {
                version: PROTOCOL_VERSION,
                gateway: "gwa".to_string(),
            },
            offer(),
            PeerMessage::KeyAccept {
                uid: "u".to_string(),
                epoch: 0,
                public: [1; 32],
                lanes: 4,
            },
            PeerMessage::Commit {
                uid: "u".to_string(),
                epoch: 3,
            },
            PeerMessage::Committed {
                uid: "u".to_string(),
                epoch: 3,
            },
            PeerMessage::RekeyRequest {
                uid: "u".to_string(),
            },
            PeerMessage::Release {
                uid: "u".to_string(),
            },
            PeerMessage::Refused {
                uid: Some("u".to_string()),
                epoch: Some(4),
                code: RefuseCode::StaleEpoch,
                reason: "epoch 4 is not 5".to_string(),
            },
        ];
        for m in &messages {
            a.send(m).await.unwrap();
            assert_eq!(b.recv().await.unwrap().as_ref(), Some(m));
        }
        drop(a);
        assert_eq!(b.recv().await.unwrap(), None);
    }

    #[tokio::test]
    async fn malformed_json_and_unknown_variant_are_bad_messages() {
        let (raw, peer) = tokio::io::duplex(4096);
        let mut raw = FramedWrite::new(raw, codec());
        let mut peer = PeerStream::new(peer);
        raw.send(Bytes::from_static(b"{\"Hello\":{\"version\":1,"))
            .await
            .unwrap();
        raw.send(Bytes::from_static(b"{\"Launch\":{\"uid\":\"u\"}}"))
            .await
            .unwrap();
        raw.send(Bytes::from_static(b"{\"Release\":{\"uid\":\"u\"}}"))
            .await
            .unwrap();
        match peer.recv().await {
            Err(WireError::BadMessage(why)) => assert!(why.contains("EOF"), "{why}"),
            other => panic!("expected BadMessage, got {other:?}"),
        }
        match peer.recv().await {
            Err(WireError::BadMessage(why)) => {
                assert!(why.contains("unknown variant `Launch`"), "{why}")
            }
            other => panic!("expected BadMessage, got {other:?}"),
        }
        // The channel stays usable after a bad message.
        assert_eq!(
            peer.recv().await.unwrap(),
            Some(PeerMessage::Release {
                uid: "u".to_string()
            })
        );
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_both_ways() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut a = PeerStream::new(a);
        let huge = PeerMessage::Release {
            uid: "x".repeat(MAX_FRAME),
        };
        assert!(matches!(a.send(&huge).await, Err(WireError::FrameTooLong)));

        // A length prefix above the limit is refused on receipt.
        let mut b_raw = b;
        let len = (MAX_FRAME as u32 + 1).to_be_bytes();
        b_raw.write_all(&len).await.unwrap();
        b_raw.write_all(&[b' '; 16]).await.unwrap();
        assert!(matches!(a.recv().await, Err(WireError::FrameTooLong)));
    }

    #[tokio::test]
    async fn hello_exchange_and_version_mismatch() {
        let (a, b) = tokio::io::duplex(4096);
        let mut a = PeerStream::new(a);
        let mut b = PeerStream::new(b);
        let (ra, rb) = tokio::join!(a.exchange_hello("gwa"), b.exchange_hello("gwb"));
        assert_eq!(ra.unwrap(), "gwb");
        assert_eq!(rb.unwrap(), "gwa");

        // A peer that announces version 2 is refused with BadVersion.
        b.send(&PeerMessage::Hello {
            version: 2,
            gateway: "gwb".to_string(),
        })
        .await
        .unwrap();
        match a.exchange_hello("gwa").await {
            Err(WireError::VersionMismatch { theirs: 2, gateway }) => assert_eq!(gateway, "gwb"),
            other => panic!("expected VersionMismatch, got {other:?}"),
        }
        assert!(matches!(
            b.recv().await.unwrap(),
            Some(PeerMessage::Hello { version: 1, .. })
        ));
        match b.recv().await.unwrap() {
            Some(PeerMessage::Refused {
                code: RefuseCode::BadVersion,
                reason,
                ..
            }) => assert!(reason.contains("version 2"), "{reason}"),
            other => panic!("expected Refused BadVersion, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn split_halves_keep_buffered_messages() {
        let (a, b) = tokio::io::duplex(4096);
        let mut a = PeerStream::new(a);
        let mut b = PeerStream::new(b);
        // Two frames arrive; the first is read before the split, the second
        // is buffered inside the framed reader and must survive it.
        a.send(&offer()).await.unwrap();
        a.send(&PeerMessage::Release {
            uid: "later".to_string(),
        })
        .await
        .unwrap();
        assert_eq!(b.recv().await.unwrap(), Some(offer()));
        let (mut reader, mut writer) = b.split();
        assert_eq!(
            reader.recv().await.unwrap(),
            Some(PeerMessage::Release {
                uid: "later".to_string()
            })
        );
        writer
            .send(&PeerMessage::RekeyRequest {
                uid: "u".to_string(),
            })
            .await
            .unwrap();
        assert_eq!(
            a.recv().await.unwrap(),
            Some(PeerMessage::RekeyRequest {
                uid: "u".to_string()
            })
        );
        writer.close().await.unwrap();
        assert_eq!(a.recv().await.unwrap(), None);
    }
}
