//! The admission decision: what a valid `Hello` on a new link leads to. A pure function of
//! who we are, what the `Hello` says and what the room holds, so every rule is a unit test.

use crate::core::{
    auth::PublicKey,
    budget::Budget,
    error::PeerErrorKind,
    peer::{PeerId, Role},
    room::LocalIdentity,
    wire::{ByeReason, Hello, PROTOCOL_VERSION},
};

/// What a verified `Auth` establishes about the peer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Claim {
    /// Its id, derived from its key.
    pub peer: PeerId,
    /// Its key (proven).
    pub key: PublicKey,
    /// What it says it is.
    pub role: Role,
    /// Its incarnation.
    pub incarnation: u64,
}

/// What we know of a peer with the claim's id.
#[derive(Debug, Clone, Copy)]
pub(super) struct Known {
    /// Its key.
    pub key: PublicKey,
    /// Its incarnation.
    pub incarnation: u64,
    /// Whether it is away (no usable link).
    pub away: bool,
    /// New links it bound within the last minute.
    pub recent_links: u32,
}

/// What the room holds that the decision depends on.
#[derive(Debug, Clone, Copy)]
pub(super) struct RoomFacts {
    /// Our host (a joiner's), and whether it is away.
    pub host: Option<(PeerId, bool)>,
    /// The peer with the claim's id, if we know it.
    pub known: Option<Known>,
    /// Peers in the room now.
    pub peers: usize,
    /// Most peers the room takes.
    pub max_peers: usize,
    /// Most new links one peer may bind per minute.
    pub max_links_per_minute: u32,
    /// We (the host) kicked the claim's peer within its resume window.
    pub kicked: bool,
    /// The room's host epoch: above zero once the room has moved to another host.
    pub epoch: u32,
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

/// Whether a peer's `Hello` speaks our message protocol (its version was checked when it was
/// decoded: see `Record::ForeignHello`). Checked once the peer is proven.
pub(super) fn compatible(local: &LocalIdentity, hello: &Hello) -> Result<(), Admission> {
    let refuse = |error| {
        Err(Admission::Refuse {
            error,
            bye: ByeReason::Incompatible,
        })
    };
    if hello.version != PROTOCOL_VERSION {
        return refuse(PeerErrorKind::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: hello.version,
        });
    }
    if hello.protocol_hash != local.protocol_hash {
        return refuse(PeerErrorKind::ProtocolMismatch {
            ours: local.protocol_hash,
            theirs: hello.protocol_hash,
        });
    }
    Ok(())
}

/// Decides what a proven claim on a new link leads to.
pub(super) fn admit(local: &LocalIdentity, claim: &Claim, room: RoomFacts) -> Admission {
    let peer = claim.peer;
    let refuse = |error, bye| Admission::Refuse { error, bye };
    if peer == local.id {
        return if claim.incarnation == local.incarnation {
            Admission::OwnSocket
        } else {
            refuse(PeerErrorKind::SelfConnection, ByeReason::Refused)
        };
    }
    if room.kicked {
        return refuse(PeerErrorKind::KickedPeerReturned, ByeReason::Kicked);
    }
    if let Some(known) = room.known {
        // Ids derive from keys, so another key under a known id means a forged id.
        if known.key != claim.key {
            return refuse(PeerErrorKind::BadProof, ByeReason::BadProof);
        }
        // One live session per identity: a second app with the same key while the first is
        // still here is refused (once the first is away, a new incarnation replaces it).
        if !known.away && known.incarnation != claim.incarnation {
            return refuse(PeerErrorKind::DuplicatePeer, ByeReason::Refused);
        }
        if known.recent_links >= room.max_links_per_minute {
            return refuse(
                PeerErrorKind::OverBudget {
                    budget: Budget::LinksPerMinute,
                    limit: room.max_links_per_minute as u64,
                },
                ByeReason::OverBudget,
            );
        }
        // A session we hold resumes, whatever role its `Hello` gives (made before the room
        // moved to another host, or before the peer heard that it did).
        if known.incarnation == claim.incarnation {
            return Admission::Accept {
                replaces_host: None,
                resumes: true,
            };
        }
    }
    // A second host: after the room moved, the old one back as a new app, which should join.
    let second_host = if room.epoch > 0 {
        ByeReason::HostMoved
    } else {
        ByeReason::Refused
    };
    let mut replaces_host = None;
    if claim.role == Role::Host {
        if local.role == Role::Host {
            return refuse(PeerErrorKind::DuplicateHost, second_host);
        }
        match room.host {
            // Our host is away and a host presents itself in the room: the old one restarted
            // (under a new id), or gave the room up. The room is the new host's now.
            Some((host, true)) if host != peer => replaces_host = Some(host),
            Some((host, false)) if host != peer => {
                return refuse(PeerErrorKind::DuplicateHost, second_host);
            }
            _ => {}
        }
    }
    if local.role == Role::Host && room.known.is_none() && room.peers >= room.max_peers {
        return refuse(PeerErrorKind::RoomFull, ByeReason::RoomFull);
    }
    Admission::Accept {
        replaces_host,
        resumes: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::room::testing::identity;

    const HASH: u64 = 7;

    fn local(role: Role) -> LocalIdentity {
        identity(1, role, HASH)
    }

    fn claim(peer: u128, role: Role, incarnation: u64) -> Claim {
        let key = identity(peer, role, HASH).key.public_key();
        Claim {
            peer: key.peer_id(),
            key,
            role,
            incarnation,
        }
    }

    fn hello(version: u16, protocol_hash: u64) -> Hello {
        Hello {
            version,
            protocol_hash,
            public_key: [0; 32],
            nonce: [0; 16],
            incarnation: 1,
            role: 0,
        }
    }

    fn empty() -> RoomFacts {
        RoomFacts {
            host: None,
            known: None,
            peers: 0,
            max_peers: 4,
            max_links_per_minute: 20,
            kicked: false,
            epoch: 0,
        }
    }

    fn known(c: &Claim, incarnation: u64, away: bool) -> Option<Known> {
        Some(Known {
            key: c.key,
            incarnation,
            away,
            recent_links: 0,
        })
    }

    fn refused(a: Admission) -> Option<(PeerErrorKind, ByeReason)> {
        match a {
            Admission::Refuse { error, bye } => Some((error, bye)),
            _ => None,
        }
    }

    #[test]
    fn incompatible_peers_are_refused_before_anything_else() {
        let me = local(Role::Host);
        assert!(compatible(&me, &hello(PROTOCOL_VERSION, HASH)).is_ok());
        assert!(matches!(
            compatible(&me, &hello(PROTOCOL_VERSION + 1, HASH))
                .err()
                .and_then(refused),
            Some((
                PeerErrorKind::VersionMismatch { .. },
                ByeReason::Incompatible
            ))
        ));
        assert!(matches!(
            compatible(&me, &hello(PROTOCOL_VERSION, HASH + 1))
                .err()
                .and_then(refused),
            Some((
                PeerErrorKind::ProtocolMismatch { .. },
                ByeReason::Incompatible
            ))
        ));
    }

    #[test]
    fn our_own_id_is_our_other_socket_or_an_impostor() {
        let me = local(Role::Joiner);
        let mut own = claim(1, Role::Joiner, me.incarnation);
        assert_eq!(admit(&me, &own, empty()), Admission::OwnSocket);
        own.incarnation += 1;
        assert_eq!(
            refused(admit(&me, &own, empty())),
            Some((PeerErrorKind::SelfConnection, ByeReason::Refused))
        );
    }

    #[test]
    fn one_host_per_room_unless_ours_is_away() {
        assert_eq!(
            refused(admit(&local(Role::Host), &claim(2, Role::Host, 1), empty())),
            Some((PeerErrorKind::DuplicateHost, ByeReason::Refused))
        );
        let joiner = local(Role::Joiner);
        let with_host = |away| RoomFacts {
            host: Some((PeerId(5), away)),
            peers: 1,
            ..empty()
        };
        assert_eq!(
            refused(admit(&joiner, &claim(2, Role::Host, 1), with_host(false))),
            Some((PeerErrorKind::DuplicateHost, ByeReason::Refused))
        );
        assert_eq!(
            admit(&joiner, &claim(2, Role::Host, 1), with_host(true)),
            Admission::Accept {
                replaces_host: Some(PeerId(5)),
                resumes: false
            }
        );
    }

    #[test]
    fn after_a_migration_a_known_session_resumes_whatever_role_it_claims_and_a_new_host_is_told_the_room_moved()
     {
        // The old host, back on a link whose Hello it made while it still hosted.
        let old_host = claim(2, Role::Host, 1);
        for me in [local(Role::Host), local(Role::Joiner)] {
            let moved = RoomFacts {
                host: (me.role == Role::Joiner).then_some((PeerId(5), false)),
                known: known(&old_host, 1, true),
                peers: 2,
                epoch: 1,
                ..empty()
            };
            assert_eq!(
                admit(&me, &old_host, moved),
                Admission::Accept {
                    replaces_host: None,
                    resumes: true
                }
            );
            // The old host restarted (a new incarnation) and hosts again: the room moved on.
            let restarted = claim(2, Role::Host, 2);
            assert_eq!(
                refused(admit(&me, &restarted, moved)),
                Some((PeerErrorKind::DuplicateHost, ByeReason::HostMoved))
            );
        }
    }

    #[test]
    fn a_full_room_refuses_newcomers_but_takes_back_known_peers() {
        let full = RoomFacts {
            peers: 4,
            ..empty()
        };
        let host = local(Role::Host);
        let c = claim(2, Role::Joiner, 1);
        assert_eq!(
            refused(admit(&host, &c, full)),
            Some((PeerErrorKind::RoomFull, ByeReason::RoomFull))
        );
        let facts = |incarnation| RoomFacts {
            known: known(&c, incarnation, true),
            ..full
        };
        assert_eq!(
            admit(&host, &c, facts(1)),
            Admission::Accept {
                replaces_host: None,
                resumes: true
            }
        );
        assert_eq!(
            admit(&host, &c, facts(0)),
            Admission::Accept {
                replaces_host: None,
                resumes: false
            },
            "a new incarnation replaces the old session once it is away"
        );
    }

    #[test]
    fn one_live_session_per_key_and_the_key_must_match_the_id() {
        let host = local(Role::Host);
        let c = claim(2, Role::Joiner, 1);
        let live = RoomFacts {
            known: known(&c, 0, false),
            peers: 1,
            ..empty()
        };
        assert_eq!(
            refused(admit(&host, &c, live)),
            Some((PeerErrorKind::DuplicatePeer, ByeReason::Refused)),
            "another incarnation while the first is live"
        );
        let same = RoomFacts {
            known: known(&c, 1, false),
            ..live
        };
        assert!(
            matches!(
                admit(&host, &c, same),
                Admission::Accept { resumes: true, .. }
            ),
            "the same incarnation moves to a new link (its socket re-opened)"
        );
        let mut forged = c;
        forged.key = claim(3, Role::Joiner, 1).key;
        assert_eq!(
            refused(admit(&host, &forged, same)),
            Some((PeerErrorKind::BadProof, ByeReason::BadProof))
        );
    }

    #[test]
    fn a_peer_that_relinks_too_often_is_over_budget() {
        let host = local(Role::Host);
        let c = claim(2, Role::Joiner, 1);
        let mut facts = RoomFacts {
            known: known(&c, 1, true),
            ..empty()
        };
        if let Some(k) = facts.known.as_mut() {
            k.recent_links = 20;
        }
        assert!(matches!(
            refused(admit(&host, &c, facts)),
            Some((
                PeerErrorKind::OverBudget {
                    budget: Budget::LinksPerMinute,
                    ..
                },
                ByeReason::OverBudget
            ))
        ));
    }

    #[test]
    fn a_kicked_peer_is_refused_until_its_resume_window_is_over() {
        let c = claim(2, Role::Joiner, 1);
        let kicked = RoomFacts {
            kicked: true,
            ..empty()
        };
        assert_eq!(
            refused(admit(&local(Role::Host), &c, kicked)),
            Some((PeerErrorKind::KickedPeerReturned, ByeReason::Kicked))
        );
        assert!(refused(admit(&local(Role::Host), &c, empty())).is_none());
    }
}
