//! The room's own messages, from the host to its joiners: whom it admitted, whom it removed.
//! They travel in the host's reliable stream to each joiner under a reserved message kind
//! ([`CONTROL_KIND`]), so they arrive once and in order, across reconnects, like game messages.

use crate::core::peer::PeerId;

/// The message kind reserved for room control messages; no registered type may hash to it.
pub(crate) const CONTROL_KIND: u32 = u32::MAX;

const ADMIT: u8 = 1;
const EVICT: u8 = 2;

/// A control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Control {
    /// `peer` is in the room, on the host's link to signaling socket `socket`.
    Admit {
        /// The peer.
        peer: PeerId,
        /// Its socket as the host knows it (joiners re-open only for stalls with these).
        socket: u128,
    },
    /// `peer` is out of the room: the host dropped it.
    Evict {
        /// The peer.
        peer: PeerId,
    },
}

impl Control {
    /// Its bytes.
    pub(super) fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33);
        match self {
            Control::Admit { peer, socket } => {
                out.push(ADMIT);
                out.extend_from_slice(&peer.0.to_le_bytes());
                out.extend_from_slice(&socket.to_le_bytes());
            }
            Control::Evict { peer } => {
                out.push(EVICT);
                out.extend_from_slice(&peer.0.to_le_bytes());
            }
        }
        out
    }

    /// Decodes one; `None` if it is not a control message.
    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let u128_at = |at: usize| -> Option<u128> {
            let b: [u8; 16] = bytes.get(at..at + 16)?.try_into().ok()?;
            Some(u128::from_le_bytes(b))
        };
        match (bytes.first()?, bytes.len()) {
            (&ADMIT, 33) => Some(Control::Admit {
                peer: PeerId(u128_at(1)?),
                socket: u128_at(17)?,
            }),
            (&EVICT, 17) => Some(Control::Evict {
                peer: PeerId(u128_at(1)?),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip_and_garbage_is_refused() {
        for c in [
            Control::Admit {
                peer: PeerId(7),
                socket: u128::MAX,
            },
            Control::Evict { peer: PeerId(9) },
        ] {
            let bytes = c.encode();
            assert_eq!(Control::decode(&bytes), Some(c));
            for cut in 0..bytes.len() {
                assert_eq!(Control::decode(&bytes[..cut]), None);
            }
        }
        assert_eq!(Control::decode(&[3; 17]), None);
    }
}
