//! The room's own messages: from the host to its joiners, whom it admitted, whom it removed and
//! to whom it hands the room; between peers, who takes the room when its host is gone (see
//! [`super::migration`]). They travel in the sender's reliable stream to each peer under a
//! reserved message kind ([`CONTROL_KIND`]), so they arrive once and in order, across
//! reconnects, like game messages.

use crate::core::peer::PeerId;

/// The message kind reserved for room control messages; no registered type may hash to it.
pub(crate) const CONTROL_KIND: u32 = u32::MAX;

const ADMIT: u8 = 1;
const EVICT: u8 = 2;
const HAND_OVER: u8 = 3;
const CLAIM: u8 = 4;
const HOST_AWAY: u8 = 5;
const JOINED: u8 = 6;
const AWAY: u8 = 7;
const LEFT: u8 = 8;

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
    /// From the host: the room is `new`'s from now on, at host epoch `epoch`.
    HandOver {
        /// The next host.
        new: PeerId,
        /// Its epoch.
        epoch: u32,
    },
    /// From a peer that took the room: it hosts the room at epoch `epoch`.
    Claim {
        /// The epoch it took the room at.
        epoch: u32,
    },
    /// From a joiner to the others: our host `host` (at epoch `epoch`) is away for longer
    /// than the grace (`away`), or back (`!away`). A vote for a successor.
    HostAway {
        /// The host it is about.
        host: PeerId,
        /// The epoch that host took the room at.
        epoch: u32,
        /// Away, or back.
        away: bool,
    },
    /// Star rooms, from the host: `peer`, a joiner, is in the room, reached through the host.
    Joined {
        /// The joiner.
        peer: PeerId,
    },
    /// Star rooms, from the host: joiner `peer` is away (`true`) or back.
    Away {
        /// The joiner.
        peer: PeerId,
        /// Away, or back.
        away: bool,
    },
    /// Star rooms, from the host: joiner `peer` is out of the room, for `reason` (a
    /// [`super::DisconnectReason`] as [`super::star::reason_to_wire`] writes it).
    Left {
        /// The joiner.
        peer: PeerId,
        /// Why.
        reason: u8,
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
            Control::HandOver { new, epoch } => {
                out.push(HAND_OVER);
                out.extend_from_slice(&new.0.to_le_bytes());
                out.extend_from_slice(&epoch.to_le_bytes());
            }
            Control::Claim { epoch } => {
                out.push(CLAIM);
                out.extend_from_slice(&epoch.to_le_bytes());
            }
            Control::HostAway { host, epoch, away } => {
                out.push(HOST_AWAY);
                out.extend_from_slice(&host.0.to_le_bytes());
                out.extend_from_slice(&epoch.to_le_bytes());
                out.push(away as u8);
            }
            Control::Joined { peer } => {
                out.push(JOINED);
                out.extend_from_slice(&peer.0.to_le_bytes());
            }
            Control::Away { peer, away } => {
                out.push(AWAY);
                out.extend_from_slice(&peer.0.to_le_bytes());
                out.push(away as u8);
            }
            Control::Left { peer, reason } => {
                out.push(LEFT);
                out.extend_from_slice(&peer.0.to_le_bytes());
                out.push(reason);
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
        let u32_at = |at: usize| -> Option<u32> {
            let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
            Some(u32::from_le_bytes(b))
        };
        match (bytes.first()?, bytes.len()) {
            (&ADMIT, 33) => Some(Control::Admit {
                peer: PeerId(u128_at(1)?),
                socket: u128_at(17)?,
            }),
            (&EVICT, 17) => Some(Control::Evict {
                peer: PeerId(u128_at(1)?),
            }),
            (&HAND_OVER, 21) => Some(Control::HandOver {
                new: PeerId(u128_at(1)?),
                epoch: u32_at(17)?,
            }),
            (&CLAIM, 5) => Some(Control::Claim { epoch: u32_at(1)? }),
            (&HOST_AWAY, 22) => Some(Control::HostAway {
                host: PeerId(u128_at(1)?),
                epoch: u32_at(17)?,
                away: match bytes[21] {
                    0 => false,
                    1 => true,
                    _ => return None,
                },
            }),
            (&JOINED, 17) => Some(Control::Joined {
                peer: PeerId(u128_at(1)?),
            }),
            (&AWAY, 18) => Some(Control::Away {
                peer: PeerId(u128_at(1)?),
                away: match bytes[17] {
                    0 => false,
                    1 => true,
                    _ => return None,
                },
            }),
            (&LEFT, 18) => Some(Control::Left {
                peer: PeerId(u128_at(1)?),
                reason: bytes[17],
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
            Control::HandOver {
                new: PeerId(3),
                epoch: 2,
            },
            Control::Claim { epoch: 7 },
            Control::HostAway {
                host: PeerId(5),
                epoch: 1,
                away: true,
            },
            Control::HostAway {
                host: PeerId(5),
                epoch: 1,
                away: false,
            },
            Control::Joined { peer: PeerId(11) },
            Control::Away {
                peer: PeerId(12),
                away: true,
            },
            Control::Left {
                peer: PeerId(13),
                reason: 4,
            },
        ] {
            let bytes = c.encode();
            assert_eq!(Control::decode(&bytes), Some(c));
            for cut in 0..bytes.len() {
                assert_eq!(Control::decode(&bytes[..cut]), None);
            }
        }
        assert_eq!(Control::decode(&[9; 17]), None);
        let mut bad_flag = Control::HostAway {
            host: PeerId(5),
            epoch: 1,
            away: true,
        }
        .encode();
        bad_flag[21] = 2;
        assert_eq!(Control::decode(&bad_flag), None);
    }
}
