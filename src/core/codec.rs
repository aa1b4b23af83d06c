//! Message payload encoding (serde + bincode 2) and the stable ids derived from names.
//!
//! Bevy-free. Decoding is bounded: bincode allocates what a length prefix claims, so every
//! decode runs with a limit proportional to the payload it reads (never above the configured
//! maximum message size), and a payload with bytes left over is refused.

use bincode::config::{self, Config};
use serde::{Serialize, de::DeserializeOwned};
use thiserror::Error;

/// FNV-1a, 32 bit: the message type id of a registered name. Same on every target.
pub fn type_id_of(name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// FNV-1a, 64 bit, over a sequence of byte strings (each followed by a separator byte).
pub fn hash64<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for part in parts {
        for &b in part {
            eat(b);
        }
        eat(0xff);
    }
    h
}

/// A payload that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// serde/bincode refused the value.
    #[error("encode failed: {0}")]
    Encode(String),
    /// The bytes are not a valid encoding of the type (or claim more memory than allowed).
    #[error("decode failed: {0}")]
    Decode(String),
    /// The bytes held a valid value followed by more bytes.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

type Standard = config::Configuration;

fn standard() -> Standard {
    config::standard()
}

/// Encodes `value` into `out` (appending).
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, out, standard())
        .map(|_| ())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

fn decode_with<T: DeserializeOwned, C: Config>(bytes: &[u8], c: C) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice::<T, C>(bytes, c)
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if read != bytes.len() {
        return Err(CodecError::TrailingBytes(bytes.len() - read));
    }
    Ok(value)
}

/// Decodes one `T` from exactly `bytes`.
///
/// The memory bincode may claim while decoding is limited to the smallest of a ladder of
/// limits (4 KiB, 64 KiB, 1 MiB, 16 MiB, 256 MiB) that is at least 16 times the payload
/// length, and never more than the ladder step above `max`: a 20-byte packet cannot make
/// us allocate a gigabyte.
pub fn decode_bounded<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, CodecError> {
    let want = bytes
        .len()
        .saturating_mul(16)
        .saturating_add(1024)
        .min(max.max(1024));
    let c = standard();
    if want <= 4 << 10 {
        decode_with(bytes, c.with_limit::<{ 4 << 10 }>())
    } else if want <= 64 << 10 {
        decode_with(bytes, c.with_limit::<{ 64 << 10 }>())
    } else if want <= 1 << 20 {
        decode_with(bytes, c.with_limit::<{ 1 << 20 }>())
    } else if want <= 16 << 20 {
        decode_with(bytes, c.with_limit::<{ 16 << 20 }>())
    } else {
        decode_with(bytes, c.with_limit::<{ 256 << 20 }>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Chat {
        from: String,
        text: String,
        pos: (f32, f32),
    }

    #[test]
    fn round_trip() {
        let value = Chat {
            from: "ann".into(),
            text: "hello".into(),
            pos: (1.0, -2.5),
        };
        let mut buf = Vec::new();
        encode_into(&value, &mut buf).unwrap();
        assert_eq!(decode_bounded::<Chat>(&buf, 1 << 20).unwrap(), value);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut buf = Vec::new();
        encode_into(&5u32, &mut buf).unwrap();
        buf.push(0);
        assert_eq!(
            decode_bounded::<u32>(&buf, 1 << 20),
            Err(CodecError::TrailingBytes(1))
        );
    }

    #[test]
    fn a_huge_claimed_length_is_refused_without_allocating_it() {
        // bincode varint: 0xfd = u64 follows. Claim a 2^40-byte Vec<u8> in 9 bytes.
        let mut buf = vec![0xfd];
        buf.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(
            decode_bounded::<Vec<u8>>(&buf, 1 << 20),
            Err(CodecError::Decode(_))
        ));
        // And a String claiming 100 MiB.
        let mut buf = vec![0xfc];
        buf.extend_from_slice(&(100u32 << 20).to_le_bytes());
        assert!(decode_bounded::<String>(&buf, 1 << 30).is_err());
    }

    #[test]
    fn large_values_within_the_limit_decode() {
        let big = vec![7u8; 3 << 20];
        let mut buf = Vec::new();
        encode_into(&big, &mut buf).unwrap();
        assert_eq!(decode_bounded::<Vec<u8>>(&buf, 4 << 20).unwrap(), big);
    }

    #[test]
    fn ids_are_stable_constants() {
        // FNV-1a reference values: these must never change, or old peers stop understanding.
        assert_eq!(type_id_of(""), 0x811c_9dc5);
        assert_eq!(type_id_of("a"), 0xe40c_292c);
        assert_eq!(hash64([b"a".as_slice()]), hash64([b"a".as_slice()]));
        assert_ne!(
            hash64([b"ab".as_slice(), b"c"]),
            hash64([b"a".as_slice(), b"bc"])
        );
    }
}
