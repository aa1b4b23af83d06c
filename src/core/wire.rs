//! The wire format: what one WebRTC data-channel message carries.
//!
//! Sans-IO and Bevy-free. A *packet* (one WebRTC message) is one or more *records* back to back,
//! so that everything one frame sends to one peer on one channel can share a packet. Every
//! integer is little-endian. The first byte of a record is its tag:
//!
//! | tag    | record      | body                                                                   |
//! |--------|-------------|------------------------------------------------------------------------|
//! | `0x01` | `Hello`     | version `u16`, protocol hash `u64`, public key `[32]`, nonce `[16]`, incarnation `u64`, role `u8` |
//! | `0x02` | `Bye`       | reason `u8`                                                            |
//! | `0x03` | `Ack`       | next expected reliable sequence number `u64`                           |
//! | `0x04` | `Ping`      | nonce `u64`                                                            |
//! | `0x05` | `Pong`      | nonce `u64`                                                            |
//! | `0x06` | `Auth`      | signature `[64]`, flags `u8` (bit 0: a secret proof follows), proof `[32]`, length `u16`, join payload |
//! | `0x07` | `Welcome`   | (empty): the host admitted us                                          |
//! | `0x10` | `Reliable`  | seq `u64`, message type `u32`, length `u16`, payload                    |
//! | `0x11` | `Fragment`  | seq `u64`, message type `u32`, total length `u32`, length `u16`, chunk  |
//! | `0x20` | `Unreliable`| message type `u32`, length `u16`, payload                               |
//! | `0x21` | `Sequenced` | message type `u32`, seq `u32`, length `u16`, payload                    |
//!
//! A `Hello` of another protocol version is decoded only as far as its version
//! ([`Record::ForeignHello`]), so that the peer can be told it is incompatible.
//!
//! Decoding never panics and never allocates: payloads are zero-copy slices of the packet.
//! Anything malformed is a [`WireError`].

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Version of the wire protocol; a peer speaking another version is refused at `Hello`.
pub const PROTOCOL_VERSION: u16 = 2;

/// The largest packet matchbox can carry: it silently drops bigger data-channel messages.
pub const MAX_TRANSPORT_PACKET: usize = 65_536;

const TAG_HELLO: u8 = 0x01;
const TAG_BYE: u8 = 0x02;
const TAG_ACK: u8 = 0x03;
const TAG_PING: u8 = 0x04;
const TAG_PONG: u8 = 0x05;
const TAG_AUTH: u8 = 0x06;
const TAG_WELCOME: u8 = 0x07;
const TAG_RELIABLE: u8 = 0x10;
const TAG_FRAGMENT: u8 = 0x11;
const TAG_UNRELIABLE: u8 = 0x20;
const TAG_SEQUENCED: u8 = 0x21;

/// Size of a public key (ed25519).
pub(crate) const PUBLIC_KEY_LEN: usize = 32;
/// Size of a link nonce.
pub(crate) const NONCE_LEN: usize = 16;
/// Size of a signature (ed25519).
pub(crate) const SIGNATURE_LEN: usize = 64;
/// Size of a room-secret proof (HMAC-SHA256).
pub(crate) const SECRET_PROOF_LEN: usize = 32;

/// Size of an encoded `Hello` record.
pub const HELLO_LEN: usize = 1 + 2 + 8 + PUBLIC_KEY_LEN + NONCE_LEN + 8 + 1;
/// The largest join payload (player name, ticket) an `Auth` may carry.
pub const MAX_JOIN_PAYLOAD: usize = 1024;
/// Header bytes in front of the payload of a `Reliable` record.
pub const RELIABLE_HEADER: usize = 1 + 8 + 4 + 2;
/// Header bytes in front of the chunk of a `Fragment` record.
pub const FRAGMENT_HEADER: usize = 1 + 8 + 4 + 4 + 2;
/// Header bytes in front of the payload of an `Unreliable` record.
pub const UNRELIABLE_HEADER: usize = 1 + 4 + 2;
/// Header bytes in front of the payload of a `Sequenced` record.
pub const SEQUENCED_HEADER: usize = 1 + 4 + 4 + 2;
/// Size of an encoded `Ack`, `Ping` or `Pong` record.
pub const SMALL_RECORD_LEN: usize = 1 + 8;

/// How a message type travels. Chosen per type when it is registered
/// (`app.add_peer_message::<T>(Delivery::Reliable)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Exactly once, in order, across reconnects; large messages are fragmented. Chat, commands,
    /// game events.
    Reliable,
    /// At most once, in any order, never resent; one packet at most. Fire-and-forget effects.
    Unreliable,
    /// Like `Unreliable`, but anything older than the newest delivered of the same type is
    /// dropped. Positions and other state that the next update replaces.
    UnreliableSequenced,
}

impl Delivery {
    /// The byte that stands for it in the message protocol's hash.
    pub(crate) fn code(self) -> u8 {
        match self {
            Delivery::Reliable => 0,
            Delivery::Unreliable => 1,
            Delivery::UnreliableSequenced => 2,
        }
    }
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Delivery::Reliable => "reliable",
            Delivery::Unreliable => "unreliable",
            Delivery::UnreliableSequenced => "unreliable sequenced",
        })
    }
}

/// Which data channel a packet travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Ordered, reliable (SCTP). Carries handshake, acks and reliable records.
    Reliable = 0,
    /// Unordered, no retransmits. Carries unreliable and sequenced records.
    Unreliable = 1,
}

/// Why a peer said goodbye.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ByeReason {
    /// The peer called `leave()`.
    Left = 0,
    /// The peer found our version or protocol incompatible.
    Incompatible = 1,
    /// The host refused us: the room is full.
    RoomFull = 2,
    /// The peer dropped us for sending something it could not accept.
    ProtocolViolation = 3,
    /// The host refused us: it already is a host, or we are not one it accepts.
    Refused = 4,
    /// The peer's handshake proof failed: a bad signature, or a peer id that is already
    /// in the room under a live session.
    BadProof = 5,
    /// The room secret did not match (or one side has none).
    RoomSecret = 6,
    /// The host's game did not admit us (its admission hook said no, or did not answer).
    NotAdmitted = 7,
    /// We went over one of the peer's budgets (messages or bytes per second, handshakes).
    OverBudget = 8,
    /// The host removed us from the room (its game called `kick`).
    Kicked = 9,
    /// The room has another host now (it moved while we were gone): come back as a joiner.
    HostMoved = 10,
}

impl std::fmt::Display for ByeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Left => "it left",
            Self::Incompatible => "incompatible protocol",
            Self::RoomFull => "the room is full",
            Self::ProtocolViolation => "it says we broke the protocol",
            Self::Refused => "refused",
            Self::BadProof => "our identity proof was refused",
            Self::RoomSecret => "the room secret does not match",
            Self::NotAdmitted => "the host did not admit us",
            Self::OverBudget => "we went over its budget",
            Self::Kicked => "the host removed us from the room",
            Self::HostMoved => "the room has another host now",
        })
    }
}

impl ByeReason {
    fn from_u8(v: u8) -> Result<Self, WireError> {
        Ok(match v {
            0 => Self::Left,
            1 => Self::Incompatible,
            2 => Self::RoomFull,
            3 => Self::ProtocolViolation,
            4 => Self::Refused,
            5 => Self::BadProof,
            6 => Self::RoomSecret,
            7 => Self::NotAdmitted,
            8 => Self::OverBudget,
            9 => Self::Kicked,
            10 => Self::HostMoved,
            other => return Err(WireError::BadValue("bye reason", other as u64)),
        })
    }
}

/// The contents of a `Hello` record, sent first on every new link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u16,
    /// Hash of the sender's registered message names and deliveries.
    pub protocol_hash: u64,
    /// The sender's public key (its peer id is derived from it).
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// Drawn by the sender for this link alone: the other side's proof must cover it.
    pub nonce: [u8; NONCE_LEN],
    /// Random per `host()`/`join()`: tells a resumed session from a restarted peer.
    pub incarnation: u64,
    /// 0 = joiner, 1 = host.
    pub role: u8,
}

/// The contents of an `Auth` record: the sender's proof for this link, sent once it has the
/// other side's `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// ed25519 signature over the link's transcript.
    pub signature: [u8; SIGNATURE_LEN],
    /// HMAC of the transcript with the room secret, if the sender has one.
    pub secret_proof: Option<[u8; SECRET_PROOF_LEN]>,
    /// What a joiner tells the host's admission hook (a player name, a ticket); at most
    /// [`MAX_JOIN_PAYLOAD`] bytes.
    pub payload: Bytes,
}

/// One decoded record. Payloads are slices of the packet they came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// First record on every link.
    Hello(Hello),
    /// A `Hello` of another protocol version (only its version is read).
    ForeignHello(u16),
    /// The sender's proof of identity (and of the room secret) for this link.
    Auth(Auth),
    /// The host admitted the receiver.
    Welcome,
    /// The sender is going away (or sending us away).
    Bye(ByeReason),
    /// Cumulative acknowledgement: every reliable seq below this arrived.
    Ack(u64),
    /// Round-trip probe.
    Ping(u64),
    /// Answer to a [`Record::Ping`].
    Pong(u64),
    /// A whole reliable message.
    Reliable {
        /// Reliable sequence number.
        seq: u64,
        /// Message type id.
        kind: u32,
        /// Encoded message.
        payload: Bytes,
    },
    /// One piece of a reliable message too large for one packet.
    Fragment {
        /// Reliable sequence number (each fragment has its own).
        seq: u64,
        /// Message type id.
        kind: u32,
        /// Length of the whole message.
        total: u32,
        /// This piece.
        chunk: Bytes,
    },
    /// An unordered, unacknowledged message.
    Unreliable {
        /// Message type id.
        kind: u32,
        /// Encoded message.
        payload: Bytes,
    },
    /// An unreliable message of which only the newest counts.
    Sequenced {
        /// Message type id.
        kind: u32,
        /// Per-type sequence number (wrapping).
        seq: u32,
        /// Encoded message.
        payload: Bytes,
    },
}

/// A packet or record that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// A packet with no records in it.
    #[error("empty packet")]
    Empty,
    /// A record cut short.
    #[error("truncated {0} record")]
    Truncated(&'static str),
    /// A tag we do not know.
    #[error("unknown record tag {0:#04x}")]
    UnknownTag(u8),
    /// A field holds a value that is not allowed.
    #[error("invalid {0}: {1}")]
    BadValue(&'static str, u64),
    /// A packet larger than the transport allows.
    #[error("packet of {0} bytes exceeds the limit")]
    Oversized(usize),
}

/// Iterates over the records of one packet.
///
/// ```
/// # use bevy_peer_message::internals::wire::*;
/// let mut packet = bytes::BytesMut::new();
/// encode_ping(&mut packet, 7);
/// encode_ack(&mut packet, 3);
/// let records: Result<Vec<_>, _> = Records::new(packet.freeze()).collect();
/// assert_eq!(records.unwrap(), vec![Record::Ping(7), Record::Ack(3)]);
/// ```
#[derive(Debug, Clone)]
pub struct Records {
    packet: Bytes,
    pos: usize,
    failed: bool,
}

impl Records {
    /// Starts decoding `packet`.
    pub fn new(packet: Bytes) -> Self {
        Self {
            packet,
            pos: 0,
            failed: false,
        }
    }

    /// Checks the packet-level rules (non-empty, within the transport limit) up front.
    pub fn checked(packet: Bytes) -> Result<Self, WireError> {
        if packet.is_empty() {
            return Err(WireError::Empty);
        }
        if packet.len() > MAX_TRANSPORT_PACKET {
            return Err(WireError::Oversized(packet.len()));
        }
        Ok(Self::new(packet))
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.packet.len())
            .ok_or(WireError::Truncated(what))?;
        let slice = &self.packet[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(a))
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn payload(&mut self, what: &'static str) -> Result<Bytes, WireError> {
        let len = self.u16(what)? as usize;
        let start = self.pos;
        self.take(len, what)?;
        Ok(self.packet.slice(start..start + len))
    }

    fn record(&mut self) -> Result<Record, WireError> {
        let tag = self.u8("record")?;
        Ok(match tag {
            TAG_HELLO => {
                let version = self.u16("hello")?;
                if version != PROTOCOL_VERSION {
                    // Another layout may follow: the rest of the packet is not ours to read.
                    self.pos = self.packet.len();
                    return Ok(Record::ForeignHello(version));
                }
                Record::Hello(Hello {
                    version,
                    protocol_hash: self.u64("hello")?,
                    public_key: self.array("hello")?,
                    nonce: self.array("hello")?,
                    incarnation: self.u64("hello")?,
                    role: match self.u8("hello")? {
                        r @ (0 | 1) => r,
                        other => return Err(WireError::BadValue("role", other as u64)),
                    },
                })
            }
            TAG_AUTH => {
                let signature = self.array("auth")?;
                let secret_proof = match self.u8("auth")? {
                    0 => None,
                    1 => Some(self.array("auth")?),
                    other => return Err(WireError::BadValue("auth flags", other as u64)),
                };
                let payload = self.payload("auth")?;
                if payload.len() > MAX_JOIN_PAYLOAD {
                    return Err(WireError::BadValue(
                        "join payload length",
                        payload.len() as u64,
                    ));
                }
                Record::Auth(Auth {
                    signature,
                    secret_proof,
                    payload,
                })
            }
            TAG_WELCOME => Record::Welcome,
            TAG_BYE => Record::Bye(ByeReason::from_u8(self.u8("bye")?)?),
            TAG_ACK => Record::Ack(self.u64("ack")?),
            TAG_PING => Record::Ping(self.u64("ping")?),
            TAG_PONG => Record::Pong(self.u64("pong")?),
            TAG_RELIABLE => Record::Reliable {
                seq: self.u64("reliable")?,
                kind: self.u32("reliable")?,
                payload: self.payload("reliable")?,
            },
            TAG_FRAGMENT => {
                let seq = self.u64("fragment")?;
                let kind = self.u32("fragment")?;
                let total = self.u32("fragment")?;
                let chunk = self.payload("fragment")?;
                if chunk.is_empty() || chunk.len() as u64 > total as u64 {
                    return Err(WireError::BadValue("fragment length", chunk.len() as u64));
                }
                Record::Fragment {
                    seq,
                    kind,
                    total,
                    chunk,
                }
            }
            TAG_UNRELIABLE => Record::Unreliable {
                kind: self.u32("unreliable")?,
                payload: self.payload("unreliable")?,
            },
            TAG_SEQUENCED => Record::Sequenced {
                kind: self.u32("sequenced")?,
                seq: self.u32("sequenced")?,
                payload: self.payload("sequenced")?,
            },
            other => return Err(WireError::UnknownTag(other)),
        })
    }
}

impl Iterator for Records {
    type Item = Result<Record, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.packet.len() {
            return None;
        }
        let record = self.record();
        if record.is_err() {
            self.failed = true;
        }
        Some(record)
    }
}

/// Appends a `Hello` record.
pub fn encode_hello(out: &mut BytesMut, hello: &Hello) {
    out.reserve(HELLO_LEN);
    out.put_u8(TAG_HELLO);
    out.put_u16_le(hello.version);
    out.put_u64_le(hello.protocol_hash);
    out.put_slice(&hello.public_key);
    out.put_slice(&hello.nonce);
    out.put_u64_le(hello.incarnation);
    out.put_u8(hello.role);
}

/// Appends an `Auth` record. `auth.payload` must be at most [`MAX_JOIN_PAYLOAD`] bytes.
pub fn encode_auth(out: &mut BytesMut, auth: &Auth) {
    out.put_u8(TAG_AUTH);
    out.put_slice(&auth.signature);
    match &auth.secret_proof {
        Some(proof) => {
            out.put_u8(1);
            out.put_slice(proof);
        }
        None => out.put_u8(0),
    }
    put_len(out, auth.payload.len());
    out.put_slice(&auth.payload);
}

/// Appends a `Welcome` record.
pub fn encode_welcome(out: &mut BytesMut) {
    out.put_u8(TAG_WELCOME);
}

/// Appends a `Bye` record.
pub fn encode_bye(out: &mut BytesMut, reason: ByeReason) {
    out.put_u8(TAG_BYE);
    out.put_u8(reason as u8);
}

/// Appends an `Ack` record.
pub fn encode_ack(out: &mut BytesMut, next_expected: u64) {
    out.put_u8(TAG_ACK);
    out.put_u64_le(next_expected);
}

/// Appends a `Ping` record.
pub fn encode_ping(out: &mut BytesMut, nonce: u64) {
    out.put_u8(TAG_PING);
    out.put_u64_le(nonce);
}

/// Appends a `Pong` record.
pub fn encode_pong(out: &mut BytesMut, nonce: u64) {
    out.put_u8(TAG_PONG);
    out.put_u64_le(nonce);
}

fn put_len(out: &mut BytesMut, len: usize) {
    debug_assert!(
        len <= u16::MAX as usize,
        "payload length checked by the caller"
    );
    out.put_u16_le(len as u16);
}

/// Appends a `Reliable` record. `payload.len()` must fit a `u16` (the session checks).
pub fn encode_reliable(out: &mut BytesMut, seq: u64, kind: u32, payload: &[u8]) {
    out.reserve(RELIABLE_HEADER + payload.len());
    out.put_u8(TAG_RELIABLE);
    out.put_u64_le(seq);
    out.put_u32_le(kind);
    put_len(out, payload.len());
    out.put_slice(payload);
}

/// Appends a `Fragment` record. `chunk.len()` must fit a `u16` (the session checks).
pub fn encode_fragment(out: &mut BytesMut, seq: u64, kind: u32, total: u32, chunk: &[u8]) {
    out.reserve(FRAGMENT_HEADER + chunk.len());
    out.put_u8(TAG_FRAGMENT);
    out.put_u64_le(seq);
    out.put_u32_le(kind);
    out.put_u32_le(total);
    put_len(out, chunk.len());
    out.put_slice(chunk);
}

/// Appends an `Unreliable` record. `payload.len()` must fit a `u16` (the session checks).
pub fn encode_unreliable(out: &mut BytesMut, kind: u32, payload: &[u8]) {
    out.reserve(UNRELIABLE_HEADER + payload.len());
    out.put_u8(TAG_UNRELIABLE);
    out.put_u32_le(kind);
    put_len(out, payload.len());
    out.put_slice(payload);
}

/// Appends a `Sequenced` record. `payload.len()` must fit a `u16` (the session checks).
pub fn encode_sequenced(out: &mut BytesMut, kind: u32, seq: u32, payload: &[u8]) {
    out.reserve(SEQUENCED_HEADER + payload.len());
    out.put_u8(TAG_SEQUENCED);
    out.put_u32_le(kind);
    out.put_u32_le(seq);
    put_len(out, payload.len());
    out.put_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Vec<Record>, WireError> {
        Records::checked(Bytes::copy_from_slice(bytes))?.collect()
    }

    fn hello() -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            protocol_hash: 0xdead_beef_0123_4567,
            public_key: [7; 32],
            nonce: [9; 16],
            incarnation: 42,
            role: 1,
        }
    }

    fn auth(secret: bool) -> Auth {
        Auth {
            signature: [3; 64],
            secret_proof: secret.then_some([4; 32]),
            payload: Bytes::from_static(b"player one"),
        }
    }

    #[test]
    fn every_record_round_trips_in_one_packet() {
        let mut p = BytesMut::new();
        encode_hello(&mut p, &hello());
        encode_auth(&mut p, &auth(true));
        encode_auth(&mut p, &auth(false));
        encode_welcome(&mut p);
        encode_bye(&mut p, ByeReason::RoomFull);
        encode_ack(&mut p, 99);
        encode_ping(&mut p, 1);
        encode_pong(&mut p, 2);
        encode_reliable(&mut p, 5, 77, b"abc");
        encode_fragment(&mut p, 6, 78, 10, b"0123");
        encode_unreliable(&mut p, 79, b"");
        encode_sequenced(&mut p, 80, u32::MAX, b"xy");
        let records = decode(&p).unwrap();
        assert_eq!(
            records,
            vec![
                Record::Hello(hello()),
                Record::Auth(auth(true)),
                Record::Auth(auth(false)),
                Record::Welcome,
                Record::Bye(ByeReason::RoomFull),
                Record::Ack(99),
                Record::Ping(1),
                Record::Pong(2),
                Record::Reliable {
                    seq: 5,
                    kind: 77,
                    payload: Bytes::from_static(b"abc")
                },
                Record::Fragment {
                    seq: 6,
                    kind: 78,
                    total: 10,
                    chunk: Bytes::from_static(b"0123")
                },
                Record::Unreliable {
                    kind: 79,
                    payload: Bytes::new()
                },
                Record::Sequenced {
                    kind: 80,
                    seq: u32::MAX,
                    payload: Bytes::from_static(b"xy")
                },
            ]
        );
    }

    #[test]
    fn header_constants_match_the_encoders() {
        let mut p = BytesMut::new();
        encode_hello(&mut p, &hello());
        assert_eq!(p.len(), HELLO_LEN);
        p.clear();
        encode_reliable(&mut p, 1, 2, b"");
        assert_eq!(p.len(), RELIABLE_HEADER);
        p.clear();
        encode_fragment(&mut p, 1, 2, 3, b"");
        assert_eq!(p.len(), FRAGMENT_HEADER);
        p.clear();
        encode_unreliable(&mut p, 1, b"");
        assert_eq!(p.len(), UNRELIABLE_HEADER);
        p.clear();
        encode_sequenced(&mut p, 1, 2, b"");
        assert_eq!(p.len(), SEQUENCED_HEADER);
        p.clear();
        encode_ack(&mut p, 1);
        assert_eq!(p.len(), SMALL_RECORD_LEN);
    }

    #[test]
    fn empty_and_oversized_packets_are_refused() {
        assert_eq!(decode(&[]), Err(WireError::Empty));
        let big = vec![TAG_PING; MAX_TRANSPORT_PACKET + 1];
        assert_eq!(
            decode(&big),
            Err(WireError::Oversized(MAX_TRANSPORT_PACKET + 1))
        );
    }

    #[test]
    fn every_truncation_of_every_record_is_an_error() {
        let mut records: Vec<BytesMut> = Vec::new();
        let mut push = |f: &dyn Fn(&mut BytesMut)| {
            let mut b = BytesMut::new();
            f(&mut b);
            records.push(b);
        };
        push(&|b| encode_hello(b, &hello()));
        push(&|b| encode_auth(b, &auth(true)));
        push(&|b| encode_auth(b, &auth(false)));
        push(&|b| encode_bye(b, ByeReason::Left));
        push(&|b| encode_ack(b, 1));
        push(&|b| encode_ping(b, 1));
        push(&|b| encode_pong(b, 1));
        push(&|b| encode_reliable(b, 1, 2, b"payload"));
        push(&|b| encode_fragment(b, 1, 2, 100, b"chunk"));
        push(&|b| encode_unreliable(b, 1, b"payload"));
        push(&|b| encode_sequenced(b, 1, 2, b"payload"));
        for record in records {
            assert!(decode(&record).is_ok());
            for cut in 1..record.len() {
                let result = decode(&record[..cut]);
                assert!(
                    matches!(result, Err(WireError::Truncated(_))),
                    "cut at {cut} of {:?}: {result:?}",
                    &record[..]
                );
            }
        }
    }

    #[test]
    fn unknown_tags_and_bad_values_are_errors() {
        assert_eq!(decode(&[0x7f]), Err(WireError::UnknownTag(0x7f)));
        assert_eq!(
            decode(&[TAG_BYE, 200]),
            Err(WireError::BadValue("bye reason", 200))
        );
        let mut p = BytesMut::new();
        encode_hello(&mut p, &hello());
        let last = p.len() - 1;
        p[last] = 9;
        assert_eq!(decode(&p), Err(WireError::BadValue("role", 9)));
        // A fragment claiming a chunk larger than its message.
        let mut p = BytesMut::new();
        encode_fragment(&mut p, 1, 2, 3, b"four");
        assert_eq!(decode(&p), Err(WireError::BadValue("fragment length", 4)));
        let mut p = BytesMut::new();
        encode_fragment(&mut p, 1, 2, 3, b"");
        assert_eq!(decode(&p), Err(WireError::BadValue("fragment length", 0)));
        // An Auth with unknown flags, and one with a payload over the limit.
        let mut p = BytesMut::new();
        encode_auth(&mut p, &auth(false));
        p[1 + 64] = 2;
        assert_eq!(decode(&p), Err(WireError::BadValue("auth flags", 2)));
        let mut p = BytesMut::new();
        let mut big = auth(false);
        big.payload = Bytes::from(vec![0; MAX_JOIN_PAYLOAD + 1]);
        encode_auth(&mut p, &big);
        assert_eq!(
            decode(&p),
            Err(WireError::BadValue(
                "join payload length",
                MAX_JOIN_PAYLOAD as u64 + 1
            ))
        );
    }

    #[test]
    fn a_hello_of_another_version_is_read_only_as_far_as_its_version() {
        // A version 1 Hello had another layout; whatever follows is not read.
        let mut p = BytesMut::new();
        p.put_u8(TAG_HELLO);
        p.put_u16_le(1);
        p.put_slice(&[0xee; 20]);
        assert_eq!(decode(&p), Ok(vec![Record::ForeignHello(1)]));
    }

    #[test]
    fn a_length_past_the_end_is_truncation_not_a_read_out_of_bounds() {
        let mut p = BytesMut::new();
        encode_unreliable(&mut p, 1, b"abc");
        // Claim 65535 bytes of payload.
        p[5] = 0xff;
        p[6] = 0xff;
        assert_eq!(decode(&p), Err(WireError::Truncated("unreliable")));
    }

    #[test]
    fn decoding_stops_at_the_first_error() {
        let mut p = BytesMut::new();
        encode_ack(&mut p, 1);
        p.put_u8(0xee);
        encode_ack(&mut p, 2);
        let mut it = Records::new(p.freeze());
        assert_eq!(it.next(), Some(Ok(Record::Ack(1))));
        assert_eq!(it.next(), Some(Err(WireError::UnknownTag(0xee))));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn random_garbage_never_panics() {
        // Thousands of random packets from a fixed seed, all handled.
        let mut rng = crate::core::rng::Rng::new(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let x = rng.next_u64();
            let len = (x % 64) as usize;
            let mut buf = Vec::with_capacity(len);
            let mut y = x;
            for _ in 0..len {
                y = y.wrapping_mul(6364136223846793005).wrapping_add(1);
                let byte = (y >> 56) as u8;
                // Bias towards valid tags so decoding gets past the first byte.
                buf.push(if buf.is_empty() { byte & 0x21 } else { byte });
            }
            let _ = decode(&buf);
        }
    }
}
