//! Putting a fragmented reliable message back together.

use crate::core::error::{PeerErrorKind, Violation};
use bytes::Bytes;

/// The message being reassembled. Fragments arrive in order (the reliable stream sees to
/// that), so one buffer grows until it holds the whole message.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reassembler {
    current: Option<Partial>,
}

#[derive(Debug, Clone)]
struct Partial {
    kind: u32,
    total: usize,
    buf: Vec<u8>,
}

impl Reassembler {
    /// Whether a message is half-way.
    pub(crate) fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    /// The message being reassembled: its type, bytes arrived, and size.
    pub(crate) fn progress(&self) -> Option<(u32, usize, usize)> {
        self.current
            .as_ref()
            .map(|p| (p.kind, p.buf.len(), p.total))
    }

    /// Adds the next fragment of a `total`-byte message of type `kind`; returns the message
    /// when it is complete. An `Err` means the peer broke the protocol.
    pub(crate) fn push(
        &mut self,
        kind: u32,
        total: u32,
        chunk: &[u8],
        max_message_size: usize,
    ) -> Result<Option<(u32, Bytes)>, PeerErrorKind> {
        let total = total as usize;
        let partial = match &mut self.current {
            Some(p) => {
                if p.kind != kind || p.total != total {
                    return Err(PeerErrorKind::Violation(Violation::FragmentMismatch));
                }
                p
            }
            None => {
                if total > max_message_size {
                    return Err(PeerErrorKind::MessageTooLarge {
                        size: total as u64,
                        limit: max_message_size,
                    });
                }
                // Grow with what actually arrives, not with what the peer claims.
                self.current.insert(Partial {
                    kind,
                    total,
                    buf: Vec::with_capacity(total.min(64 * 1024)),
                })
            }
        };
        if partial.buf.len() + chunk.len() > partial.total {
            return Err(PeerErrorKind::Violation(Violation::FragmentOverrun));
        }
        partial.buf.extend_from_slice(chunk);
        if partial.buf.len() < partial.total {
            return Ok(None);
        }
        Ok(self.current.take().map(|p| (p.kind, Bytes::from(p.buf))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_make_one_message_and_lies_are_errors() {
        let mut r = Reassembler::default();
        assert_eq!(r.push(1, 5, b"ab", 10), Ok(None));
        assert!(r.in_progress());
        assert_eq!(
            r.push(1, 5, b"cde", 10),
            Ok(Some((1, Bytes::from_static(b"abcde"))))
        );
        assert!(!r.in_progress());
        assert!(matches!(
            r.push(1, 11, b"x", 10),
            Err(PeerErrorKind::MessageTooLarge { size: 11, .. })
        ));
        r.push(1, 4, b"ab", 10).unwrap();
        assert!(r.push(2, 4, b"cd", 10).is_err(), "another kind");
        let mut r = Reassembler::default();
        r.push(1, 4, b"ab", 10).unwrap();
        assert!(r.push(1, 4, b"cde", 10).is_err(), "overrun");
    }

    #[test]
    fn a_huge_claimed_size_reserves_only_what_arrives() {
        let mut r = Reassembler::default();
        r.push(1, 1 << 30, b"x", usize::MAX).unwrap();
        let cap = r.current.as_ref().map_or(0, |p| p.buf.capacity());
        assert!(cap <= 64 * 1024, "{cap}");
    }
}
