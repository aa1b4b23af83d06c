//! The admission decision: what a valid `Hello` on a new link leads to. A pure function of
//! who we are, what the `Hello` says and what the room holds, so every rule is a unit test.

use crate::core::{
    error::PeerErrorKind,
    peer::{PeerId, Role},
    room::LocalIdentity,
    wire::{ByeReason, Hello, PROTOCOL_VERSION},
};

/// What the room holds that the decision depends on.
#[derive(Debug, Clone, Copy)]
pub(super) struct RoomFacts {
    /// Our host (a joiner's), and whether it is away.
    pub host: Option<(PeerId, bool)>,
    /// The incarnation we know for the `Hello`'s peer id, if we know that peer.
    pub known_incarnation: Option<u64>,
    /// Peers in the room now.
    pub peers: usize,
    /// Most peers the room takes.
    pub max_peers: usize,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Admission {
    /// Our own other socket (an old one draining while a new one registers): not a link to
    /// use, nothing to report.
    OwnSocket,
    /// Refused: report `error`, tell the peer `bye`.
    Refuse {
        /// What the game is told.
        error: PeerErrorKind,
        /// What the peer is told.
        bye: ByeReason,
    },
    /// Taken. `replaces_host`: our away host gives the room up to this new host (it
    /// restarted under a new id). `resumes`: a known peer, same incarnation, is back; `false`
    /// with a known peer id means a new incarnation replaces the old session.
    Accept {
        /// Our old host, to end.
        replaces_host: Option<PeerId>,
        /// Whether the peer's session resumes.
        resumes: bool,
    },
}

/// Decides what a `Hello` from `peer` on a new link leads to.
pub(super) fn admit(local: &LocalIdentity, hello: &Hello, room: RoomFacts) -> Admission {
    let peer = PeerId(hello.peer_id);
    let role = Role::from_wire(hello.role);
    let refuse = |error, bye| Admission::Refuse { error, bye };
    if hello.version != PROTOCOL_VERSION {
        return refuse(
            PeerErrorKind::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: hello.version,
            },
            ByeReason::Incompatible,
        );
    }
    if hello.protocol_hash != local.protocol_hash {
        return refuse(
            PeerErrorKind::ProtocolMismatch {
                ours: local.protocol_hash,
                theirs: hello.protocol_hash,
            },
            ByeReason::Incompatible,
        );
    }
    if peer == local.id {
        return if hello.incarnation == local.incarnation {
            Admission::OwnSocket
        } else {
            refuse(PeerErrorKind::SelfConnection, ByeReason::Refused)
        };
    }
    let mut replaces_host = None;
    if role == Role::Host {
        if local.role == Role::Host {
            return refuse(PeerErrorKind::DuplicateHost, ByeReason::Refused);
        }
        match room.host {
            // Our host is away and a host presents itself in the room: the old one restarted
            // (under a new id), or gave the room up. The room is the new host's now. (Until
            // peers prove who they are, any peer could claim this while the host is away.)
            Some((host, true)) if host != peer => replaces_host = Some(host),
            Some((host, false)) if host != peer => {
                return refuse(PeerErrorKind::DuplicateHost, ByeReason::Refused);
            }
            _ => {}
        }
    }
    if local.role == Role::Host && room.known_incarnation.is_none() && room.peers >= room.max_peers
    {
        return refuse(PeerErrorKind::RoomFull, ByeReason::RoomFull);
    }
    Admission::Accept {
        replaces_host,
        resumes: room.known_incarnation == Some(hello.incarnation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: u64 = 7;

    fn local(role: Role) -> LocalIdentity {
        LocalIdentity {
            id: PeerId(1),
            role,
            incarnation: 10,
            protocol_hash: HASH,
        }
    }

    fn hello(peer: u128, role: Role, incarnation: u64) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            protocol_hash: HASH,
            peer_id: peer,
            incarnation,
            role: role.to_wire(),
        }
    }

    fn empty() -> RoomFacts {
        RoomFacts {
            host: None,
            known_incarnation: None,
            peers: 0,
            max_peers: 4,
        }
    }

    fn refused(a: Admission) -> Option<(PeerErrorKind, ByeReason)> {
        match a {
            Admission::Refuse { error, bye } => Some((error, bye)),
            _ => None,
        }
    }

    #[test]
    fn incompatible_peers_are_refused_before_anything_else() {
        let mut h = hello(2, Role::Joiner, 1);
        h.version += 1;
        assert!(matches!(
            refused(admit(&local(Role::Host), &h, empty())),
            Some((
                PeerErrorKind::VersionMismatch { .. },
                ByeReason::Incompatible
            ))
        ));
        let mut h = hello(2, Role::Joiner, 1);
        h.protocol_hash += 1;
        assert!(matches!(
            refused(admit(&local(Role::Host), &h, empty())),
            Some((
                PeerErrorKind::ProtocolMismatch { .. },
                ByeReason::Incompatible
            ))
        ));
    }

    #[test]
    fn our_own_id_is_our_other_socket_or_an_impostor() {
        let me = local(Role::Joiner);
        assert_eq!(
            admit(&me, &hello(1, Role::Joiner, 10), empty()),
            Admission::OwnSocket
        );
        assert_eq!(
            refused(admit(&me, &hello(1, Role::Joiner, 11), empty())),
            Some((PeerErrorKind::SelfConnection, ByeReason::Refused))
        );
    }

    #[test]
    fn one_host_per_room_unless_ours_is_away() {
        assert_eq!(
            refused(admit(&local(Role::Host), &hello(2, Role::Host, 1), empty())),
            Some((PeerErrorKind::DuplicateHost, ByeReason::Refused))
        );
        let joiner = local(Role::Joiner);
        let with_host = |away| RoomFacts {
            host: Some((PeerId(5), away)),
            peers: 1,
            ..empty()
        };
        assert_eq!(
            refused(admit(&joiner, &hello(2, Role::Host, 1), with_host(false))),
            Some((PeerErrorKind::DuplicateHost, ByeReason::Refused))
        );
        assert_eq!(
            admit(&joiner, &hello(2, Role::Host, 1), with_host(true)),
            Admission::Accept {
                replaces_host: Some(PeerId(5)),
                resumes: false
            }
        );
    }

    #[test]
    fn a_full_room_refuses_newcomers_but_takes_back_known_peers() {
        let full = RoomFacts {
            peers: 4,
            ..empty()
        };
        let host = local(Role::Host);
        assert_eq!(
            refused(admit(&host, &hello(2, Role::Joiner, 1), full)),
            Some((PeerErrorKind::RoomFull, ByeReason::RoomFull))
        );
        let known = |incarnation| RoomFacts {
            known_incarnation: Some(incarnation),
            ..full
        };
        assert_eq!(
            admit(&host, &hello(2, Role::Joiner, 1), known(1)),
            Admission::Accept {
                replaces_host: None,
                resumes: true
            }
        );
        assert_eq!(
            admit(&host, &hello(2, Role::Joiner, 1), known(0)),
            Admission::Accept {
                replaces_host: None,
                resumes: false
            },
            "a new incarnation replaces the old session"
        );
    }
}
