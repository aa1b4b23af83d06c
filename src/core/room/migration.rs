//! Host migration: who hosts the room once its host leaves or is gone.
//!
//! **Graceful.** The host hands the room to a joiner ([`Room::hand_over`]; `leave()` does it
//! for the live joiner with the lowest id): a `HandOver` goes to every peer in the host's
//! reliable stream, after whatever the host sent before (a snapshot for its successor, say),
//! and each peer switches as it reads it.
//!
//! **On failure.** A joiner whose host has been away for `host_grace` tells the other joiners
//! (`HostAway`, a vote). The successor is the lowest [`PeerId`] among the joiners that are not
//! away; a joiner that finds itself the successor takes the room once every joiner it still
//! hears has voted (so nobody takes a room whose host some survivor still hears), at the next
//! host *epoch*, and says so to everyone (`Claim`). A joiner takes a claim once its own host
//! has been away for the grace. A room with a single joiner left does not move: there is
//! nobody to keep playing with.
//!
//! **Conflicts** (views that differ under loss, a partition that heals with a host on each
//! side) resolve the same way everywhere: the higher epoch wins, then the lower id. A host that
//! loses steps down, tells its joiners (`HandOver`) and becomes a joiner itself: the old host
//! back after a migration rejoins the room as a joiner, with its session intact. A host only
//! steps down for the next epoch from a peer that was cut off from it for at least half the
//! grace (one that had a reason to take the room), and for its own epoch only from a rival
//! that took the room for the same failure (a lower id it saw away when it took the room). A
//! claim from any other peer, or more than one epoch ahead, is a
//! [`Violation::FalseHostClaim`] and that peer is dropped. A joiner forgets claims it heard
//! while its host was away once the host is back.
//!
//! **Limits** (trust among peers that are not the host is the game's own): a joiner that goes
//! silent for half the grace and then claims the room is believed by the host; a host whose
//! process stalls for longer than the grace may not see its successor as cut off, refuse it
//! and split the room; a peer that never votes keeps the others from moving on.

use super::{LinkEnds, Room, RoomEvent, control::Control};
use crate::core::{
    error::{PeerErrorKind, Violation},
    peer::{PeerId, Role},
    wire::Delivery,
};
use std::{collections::HashSet, time::Duration};

/// What a peer knows and has said about who hosts the room.
#[derive(Debug, Clone, Default)]
pub(super) struct Succession {
    /// The current host's epoch: 0 for the room's first host, one more at each migration.
    epoch: u32,
    /// Joiner: the fellow joiners that told us our host is away, this epoch.
    votes: HashSet<PeerId>,
    /// Joiner: we told the others our host is away.
    voted: bool,
    /// Joiner: the best claim heard while our host was not yet away for the grace: its epoch
    /// and claimer.
    pending: Option<(u32, PeerId)>,
    /// Host: peers away from us for at least half the grace this epoch.
    cut_off: HashSet<PeerId>,
    /// Peers that hosted the room before its current host (kept across epochs).
    former_hosts: HashSet<PeerId>,
    /// Host that took the room on a failure: the peers with lower ids than ours that were away
    /// then. Only they can have taken it at the same epoch too (our view and theirs differed),
    /// so only their claims at our epoch are believed.
    rivals: HashSet<PeerId>,
}

impl Succession {
    /// The current host's epoch.
    pub(super) fn epoch(&self) -> u32 {
        self.epoch
    }

    /// A new host at `epoch`: everything said about the last one is void.
    fn reset(&mut self, epoch: u32, old: PeerId) {
        let mut former_hosts = std::mem::take(&mut self.former_hosts);
        former_hosts.insert(old);
        *self = Self {
            epoch,
            former_hosts,
            ..Self::default()
        };
    }
}

/// Whether a claim by `claimer` at `epoch` beats the host `host` at `host_epoch`: a later
/// epoch, or the same one and a lower id.
fn beats(epoch: u32, claimer: PeerId, host_epoch: u32, host: PeerId) -> bool {
    epoch > host_epoch || (epoch == host_epoch && claimer < host)
}

impl<L: LinkEnds> Room<L> {
    /// The current host's epoch: 0 for the room's first host, one more at each migration.
    pub fn host_epoch(&self) -> u32 {
        self.succession.epoch()
    }

    /// Host: hands the room to `new`, a joiner in the room that is not away. Every peer gets a
    /// [`RoomEvent::HostMigrated`] once it reads the hand-over, which comes after everything we
    /// sent it before (a snapshot for `new`, say); we become a joiner of `new` at once. `false`
    /// (and nothing done) on a joiner, in a star room (it has no migration), or for a peer
    /// that is not a live joiner here.
    pub fn hand_over(&mut self, new: PeerId) -> bool {
        let live_joiner = self
            .peers
            .get(&new)
            .is_some_and(|r| r.role == Role::Joiner && r.away_since.is_none());
        if self.local.role != Role::Host || !live_joiner || self.star.on() {
            return false;
        }
        let epoch = self.succession.epoch.saturating_add(1);
        self.send_control(None, Control::HandOver { new, epoch });
        self.step_down(new, epoch);
        true
    }

    /// Since when the earliest of our host and the peers that hosted before it (still here,
    /// as joiners) has been away, if one is. Either side of a partition that healed must open
    /// new links to the other for their sessions to resume: the side that moved to another
    /// host has its old host away, the other side its own host's joiners.
    pub fn hosts_away_since(&self) -> Option<Duration> {
        self.peers
            .iter()
            .filter(|(p, r)| r.role == Role::Host || self.succession.former_hosts.contains(p))
            .filter_map(|(_, r)| r.away_since)
            .min()
    }

    /// The joiner a leaving host hands the room to: the live one with the lowest id.
    pub(super) fn heir(&self) -> Option<PeerId> {
        self.peers
            .iter()
            .filter(|(_, r)| r.role == Role::Joiner && r.away_since.is_none())
            .map(|(p, _)| *p)
            .min()
    }

    /// Queues `control` for every peer but `except`.
    fn send_control(&mut self, except: Option<PeerId>, control: Control) {
        let bytes = control.encode();
        for (peer, remote) in self.peers.iter_mut() {
            if Some(*peer) != except {
                let _ = remote
                    .session
                    .send(super::CONTROL_KIND, &bytes, Delivery::Reliable);
            }
        }
    }

    /// Votes, takes a claim or the room, as the host's absence requires. Runs with
    /// [`Room::handle_timeout`] and whenever a vote or a claim arrives.
    pub(super) fn check_succession(&mut self, now: Duration) {
        let Some(grace) = self.policy.host_grace else {
            return;
        };
        if self.local.role == Role::Host {
            let cut_off: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(_, r)| {
                    r.away_since
                        .is_some_and(|s| now.saturating_sub(s) >= grace / 2)
                })
                .map(|(p, _)| *p)
                .collect();
            self.succession.cut_off.extend(cut_off);
            return;
        }
        let Some(host) = self.host() else {
            return;
        };
        let epoch = self.succession.epoch;
        if !self.host_gone(now) {
            // Our host is back: claims heard while it was away are void.
            self.succession.pending = None;
            if self.succession.voted {
                self.succession.voted = false;
                self.send_control(
                    Some(host),
                    Control::HostAway {
                        host,
                        epoch,
                        away: false,
                    },
                );
            }
            return;
        }
        if !self.succession.voted {
            self.succession.voted = true;
            self.send_control(
                Some(host),
                Control::HostAway {
                    host,
                    epoch,
                    away: true,
                },
            );
        }
        if let Some((claim_epoch, claimer)) = self.succession.pending
            && self
                .peers
                .get(&claimer)
                .is_some_and(|r| r.away_since.is_none())
        {
            self.follow(claimer, claim_epoch);
            return;
        }
        let live: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(p, r)| **p != host && r.away_since.is_none())
            .map(|(p, _)| *p)
            .collect();
        let successor = live.iter().all(|p| *p > self.local.id);
        let agreed = live.iter().all(|p| self.succession.votes.contains(p));
        if !live.is_empty() && successor && agreed {
            let rivals = self
                .peers
                .iter()
                .filter(|(p, r)| **p != host && **p < self.local.id && r.away_since.is_some())
                .map(|(p, _)| *p)
                .collect();
            self.take_room(host, epoch.saturating_add(1));
            self.succession.rivals = rivals;
        }
    }

    /// Joiner: our host has been away for the grace.
    fn host_gone(&self, now: Duration) -> bool {
        let (Some(grace), Some(host)) = (self.policy.host_grace, self.host()) else {
            return false;
        };
        self.away_since(host)
            .is_some_and(|since| now.saturating_sub(since) >= grace)
    }

    /// When [`Room::check_succession`] must run next, if it has a deadline.
    pub(super) fn succession_deadline(&self) -> Option<Duration> {
        let grace = self.policy.host_grace?;
        match self.local.role {
            Role::Host => self
                .peers
                .iter()
                .filter(|(p, _)| !self.succession.cut_off.contains(p))
                .filter_map(|(_, r)| r.away_since)
                .map(|since| since + grace / 2)
                .min(),
            Role::Joiner => {
                let since = self.host().and_then(|h| self.away_since(h))?;
                (!self.succession.voted).then_some(since + grace)
            }
        }
    }

    /// A control message from `from` (`from_our_host`: our host, and we a joiner) that is not
    /// its host's word on who is in the room: a word on who hosts it. `Err`: drop `from`.
    pub(super) fn on_succession_control(
        &mut self,
        from: PeerId,
        from_our_host: bool,
        control: Control,
        now: Duration,
    ) -> Result<(), PeerErrorKind> {
        // A star room has no migration: nobody may speak of it.
        if self.star.on() {
            return Err(PeerErrorKind::Violation(Violation::BadControl));
        }
        match control {
            Control::HandOver { new, epoch } if from_our_host => {
                if epoch < self.succession.epoch {
                    return Ok(());
                }
                if new == self.local.id {
                    self.take_room(from, epoch);
                } else if self.peers.contains_key(&new) {
                    self.follow(new, epoch);
                }
            }
            // A newcomer learns the epoch of the host that admitted it.
            Control::Claim { epoch } if from_our_host => {
                self.succession.epoch = self.succession.epoch.max(epoch);
            }
            Control::Claim { epoch } => return self.on_claim(from, epoch, now),
            Control::HostAway { host, epoch, away } => {
                let ours = self.local.role == Role::Joiner
                    && self.host() == Some(host)
                    && epoch == self.succession.epoch;
                if ours {
                    if away {
                        self.succession.votes.insert(from);
                    } else {
                        self.succession.votes.remove(&from);
                    }
                    self.check_succession(now);
                }
            }
            // From a host we no longer follow (it was still sending when the room moved).
            Control::HandOver { .. }
            | Control::Admit { .. }
            | Control::Evict { .. }
            | Control::Joined { .. }
            | Control::Away { .. }
            | Control::Left { .. } => {}
        }
        Ok(())
    }

    /// `from` says it took the room at `epoch`.
    fn on_claim(&mut self, from: PeerId, epoch: u32, now: Duration) -> Result<(), PeerErrorKind> {
        let ours = self.succession.epoch;
        // A room moves one epoch at a time: a claim further ahead is made up (and would let a
        // liar win every later conflict, or wrap the epoch around).
        if epoch > ours.saturating_add(1) {
            return Err(PeerErrorKind::Violation(Violation::FalseHostClaim));
        }
        if self.local.role == Role::Host {
            // Nobody takes a room at its first epoch. The next epoch only from a peer that
            // was cut off from us (it had a reason to take the room); ours only from a rival
            // that took it for the same failure as we did.
            let credible = epoch > 0
                && if epoch == ours {
                    self.succession.rivals.contains(&from)
                } else {
                    self.succession.cut_off.contains(&from)
                };
            if !beats(epoch, from, ours, self.local.id) {
                return if epoch == 0 {
                    Err(PeerErrorKind::Violation(Violation::FalseHostClaim))
                } else {
                    // It steps down when it reads our claim (or its own host's hand-over).
                    Ok(())
                };
            }
            if !credible {
                return Err(PeerErrorKind::Violation(Violation::FalseHostClaim));
            }
            self.step_down(from, epoch);
            let bytes = Control::HandOver { new: from, epoch };
            self.send_control(Some(from), bytes);
            return Ok(());
        }
        let Some(host) = self.host() else {
            return Ok(());
        };
        if !beats(epoch, from, ours, host) {
            return Ok(());
        }
        if self.host_gone(now) {
            self.follow(from, epoch);
        } else if self
            .succession
            .pending
            .is_none_or(|(e, p)| beats(epoch, from, e, p))
        {
            self.succession.pending = Some((epoch, from));
        }
        Ok(())
    }

    /// Joiner: we take the room from `old` at `epoch`, and tell everyone.
    fn take_room(&mut self, old: PeerId, epoch: u32) {
        self.local.role = Role::Host;
        if let Some(r) = self.peers.get_mut(&old) {
            r.role = Role::Joiner;
        }
        self.succession.reset(epoch, old);
        // Our peers were all admitted by a host; any we meet from now on, we admit.
        self.roster.clear();
        self.send_control(None, Control::Claim { epoch });
        let new = self.local.id;
        self.events.push_back(RoomEvent::HostMigrated { old, new });
    }

    /// Joiner: the room is `new`'s from now on, at `epoch`.
    fn follow(&mut self, new: PeerId, epoch: u32) {
        let Some(old) = self.host() else {
            return;
        };
        if let Some(r) = self.peers.get_mut(&old) {
            r.role = Role::Joiner;
        }
        if let Some(r) = self.peers.get_mut(&new) {
            r.role = Role::Host;
        }
        self.succession.reset(epoch, old);
        self.events.push_back(RoomEvent::HostMigrated { old, new });
    }

    /// Host: the room is `new`'s from now on, at `epoch`; we are one of its joiners.
    fn step_down(&mut self, new: PeerId, epoch: u32) {
        self.local.role = Role::Joiner;
        if let Some(r) = self.peers.get_mut(&new) {
            r.role = Role::Host;
        }
        self.succession.reset(epoch, self.local.id);
        self.kicked.clear();
        // Everyone here was admitted by us: they need no word from the new host to be bound
        // again on a new link.
        let roster: Vec<(PeerId, u128)> = self
            .peers
            .iter()
            .map(|(p, r)| (*p, r.link.map_or(0, |l| l.ends().1)))
            .collect();
        self.roster.extend(roster);
        let old = self.local.id;
        self.events.push_back(RoomEvent::HostMigrated { old, new });
    }
}
