//! The star topology: joiners link only to the host, and the host relays what they send each
//! other.
//!
//! In a mesh every pair of peers has its own link and session. In a star a joiner has one: to
//! the host. Every game message between a joiner and its host then starts with a *route*:
//!
//! | from   | route                    | means                                              |
//! |--------|--------------------------|----------------------------------------------------|
//! | joiner | `0`                      | for the host                                       |
//! | joiner | `1`                      | for everyone: the host takes it and relays it      |
//! | joiner | `2`, a [`PeerId`]        | for that joiner: the host relays it                |
//! | host   | `0`                      | from the host                                      |
//! | host   | `2`, a [`PeerId`]        | from that joiner, relayed                          |
//!
//! A relayed message keeps its type and delivery, and travels hop by hop: the joiner's stream
//! to the host, then the host's stream to each receiver. Each hop is exactly once and in order,
//! and the host relays in the order it receives, so a reliable message from one joiner to
//! another arrives exactly once and in order, across reconnects of either, for as long as the
//! host lives (a star room has no host migration: it ends with its host). The host checks each
//! relayed message's type and delivery as it would its own, and can filter them
//! ([`RelayFilter`]). Reliable messages for a joiner whose send buffer is full wait at the host
//! in a queue of their own ([`Backlog`]), so a slow joiner never holds up the others; one whose
//! queue passes `max_undelivered_bytes` is dropped, as a peer that cannot keep up.
//!
//! The host tells its joiners who else is in the room (`Joined`, `Away`, `Left`), and each
//! joiner reports those peers as if they were linked: `Connected`, `Reconnecting`,
//! `Reconnected`, `Disconnected`. A route costs 1 byte (17 for a relayed message), so in a star
//! room every message may be 17 bytes smaller than the session's limits.

use super::{DisconnectReason, LinkEnds, Room, RoomEvent, control::Control};
use crate::core::{
    error::{PeerErrorKind, SendError, Violation},
    peer::{PeerId, Role},
    session::Inbound,
    wire::Delivery,
};
use bytes::Bytes;
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

/// How the peers of a room link to each other. Every peer of a room must use the same one (it
/// is part of the protocol hash: a peer with the other topology is refused with
/// [`PeerErrorKind::ProtocolMismatch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Topology {
    /// Every peer links to every other (the default): the lowest latency between joiners,
    /// and the room survives its host (host migration). Each peer keeps `n - 1` WebRTC
    /// connections.
    #[default]
    Mesh,
    /// Joiners link only to the host, which relays what they send each other (`send` to
    /// another joiner and `broadcast` keep working, with the same delivery guarantees) and
    /// may filter it. A joiner keeps one WebRTC connection whatever the room's size, and
    /// rooms form faster; a message between joiners takes two hops. The room ends with its
    /// host: no host migration.
    Star,
}

impl Topology {
    /// What it adds to the protocol hash, so that peers of different topologies refuse each
    /// other at the handshake (a mesh adds nothing).
    pub(crate) fn protocol_salt(self) -> u64 {
        match self {
            Topology::Mesh => 0,
            Topology::Star => 0x5354_4152_0000_0001,
        }
    }
}

const DIRECT: u8 = 0;
const EVERYONE: u8 = 1;
const VIA: u8 = 2;

/// The most fellow joiners a star joiner keeps: this many, or its own `max_peers` if that is
/// more. A host that names more lies (and would grow the table without bound).
const MAX_MEMBERS: usize = 1024;

/// The longest route: a tag and a [`PeerId`]. Star rooms take it off every message limit.
pub(crate) const ROUTE_MAX: usize = 17;

/// Where a message goes (joiner to host) or whom it comes from (host to joiner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    Everyone,
    Via(PeerId),
}

/// The route at the head of `payload` and the message after it.
fn parse(payload: &Bytes) -> Option<(Route, Bytes)> {
    match *payload.first()? {
        DIRECT => Some((Route::Direct, payload.slice(1..))),
        EVERYONE => Some((Route::Everyone, payload.slice(1..))),
        VIA => {
            let id: [u8; 16] = payload.get(1..ROUTE_MAX)?.try_into().ok()?;
            Some((
                Route::Via(PeerId(u128::from_le_bytes(id))),
                payload.slice(ROUTE_MAX..),
            ))
        }
        _ => None,
    }
}

/// `route` then `payload`, into `out` (cleared first).
fn write(out: &mut Vec<u8>, route: Route, payload: &[u8]) {
    out.clear();
    match route {
        Route::Direct => out.push(DIRECT),
        Route::Everyone => out.push(EVERYONE),
        Route::Via(peer) => {
            out.push(VIA);
            out.extend_from_slice(&peer.0.to_le_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// A relayed message, as the host's [`RelayFilter`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct RelayView<'a> {
    /// The joiner that sent it.
    pub from: PeerId,
    /// The joiner it is for; `None`: everyone (the host has taken its own copy already).
    pub to: Option<PeerId>,
    /// Its message type id.
    pub kind: u32,
    /// How it travels.
    pub delivery: Delivery,
    /// The encoded message.
    pub payload: &'a [u8],
}

/// The host's say on relayed messages: `Ok(true)` relays the message, `Ok(false)` drops it
/// (the receivers never see it; the sender is not told), `Err` drops the message and the
/// sender with that error (it sent something it must not: a payload that does not decode,
/// say).
#[derive(Clone)]
pub struct RelayFilter(pub Arc<RelayFilterFn>);

/// What a [`RelayFilter`] calls.
pub type RelayFilterFn = dyn Fn(&RelayView<'_>) -> Result<bool, PeerErrorKind> + Send + Sync;

impl std::fmt::Debug for RelayFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayFilter")
    }
}

/// What waits at the host for room in a joiner's send buffer: a relayed reliable message, or
/// the host's own news about the room's joiners (which must not overtake what is queued: a
/// `Left` before the peer's last messages would make the joiner drop them).
#[derive(Debug, Clone)]
enum Pending {
    Relayed {
        from: PeerId,
        kind: u32,
        payload: Bytes,
    },
    Control(Vec<u8>),
}

/// What a queued entry costs beside its bytes (so that empty messages cannot queue for free).
const ENTRY_OVERHEAD: usize = 64;

impl Pending {
    fn cost(&self) -> usize {
        ENTRY_OVERHEAD
            + match self {
                Pending::Relayed { payload, .. } => payload.len(),
                Pending::Control(bytes) => bytes.len(),
            }
    }
}

/// Host: per joiner, what waits for room in its send buffer, in order, and what it costs.
#[derive(Debug, Clone, Default)]
pub(super) struct Backlog {
    queues: HashMap<PeerId, (VecDeque<Pending>, usize)>,
    /// Entries that ever waited (diagnostics: [`RelayCounts::queued`]).
    queued: u64,
}

impl Backlog {
    /// Sends `item()` to `peer` now, or queues it behind what waits for it (or when its send
    /// buffer is full). `true`: its queue now costs more than `limit`.
    fn offer(
        &mut self,
        peer: PeerId,
        remote: &mut super::Remote<impl Sized>,
        scratch: &mut Vec<u8>,
        item: impl FnOnce() -> Pending,
        limit: usize,
    ) -> bool {
        let waiting = self.queues.get(&peer).is_some_and(|(q, _)| !q.is_empty());
        let item = item();
        if !waiting {
            match send_pending(remote, scratch, &item) {
                Err(SendError::Backpressure { .. }) => {}
                // Sent (or refused for good: sizes are checked when it comes in).
                _ => return false,
            }
        }
        self.queued += 1;
        let (queue, cost) = self.queues.entry(peer).or_default();
        *cost += item.cost();
        queue.push_back(item);
        *cost > limit
    }

    /// Drops what waits for `peer`; what it cost.
    fn forget(&mut self, peer: PeerId) -> usize {
        self.queues.remove(&peer).map_or(0, |(_, cost)| cost)
    }
}

/// Sends one backlog entry on `remote`'s session.
fn send_pending(
    remote: &mut super::Remote<impl Sized>,
    scratch: &mut Vec<u8>,
    item: &Pending,
) -> Result<(), SendError> {
    match item {
        Pending::Relayed {
            from,
            kind,
            payload,
        } => {
            write(scratch, Route::Via(*from), payload);
            remote.session.send(*kind, scratch, Delivery::Reliable)
        }
        Pending::Control(bytes) => {
            remote
                .session
                .send(super::CONTROL_KIND, bytes, Delivery::Reliable)
        }
    }
}

/// How many messages the host relayed, filtered out, and dropped because a joiner could not
/// keep up (diagnostics and benches).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounts {
    /// Copies relayed (a broadcast to `n` joiners counts `n`).
    pub relayed: u64,
    /// Messages the filter dropped.
    pub filtered: u64,
    /// Reliable copies that waited in a backlog.
    pub queued: u64,
}

/// The star's state in a room (unused in a mesh).
#[derive(Debug, Clone, Default)]
pub(super) struct Star {
    pub(super) topology: Topology,
    /// Joiner: the room's other joiners, reached through the host, and since when each is
    /// away, if it is.
    members: HashMap<PeerId, Option<Duration>>,
    /// Host: what waits for each joiner.
    backlog: Backlog,
    /// Host: the game's say on relayed messages.
    filter: Option<RelayFilter>,
    counts: RelayCounts,
    /// Where routes are written (no allocation per message once warm).
    scratch: Vec<u8>,
}

impl Star {
    pub(super) fn on(&self) -> bool {
        self.topology == Topology::Star
    }
}

/// A [`DisconnectReason`] on the wire (`Left` controls).
pub(super) fn reason_to_wire(reason: DisconnectReason) -> u8 {
    match reason {
        DisconnectReason::Left | DisconnectReason::LocalLeave => 0,
        DisconnectReason::ConnectionLost => 1,
        DisconnectReason::Timeout => 2,
        DisconnectReason::Replaced => 3,
        DisconnectReason::ProtocolViolation
        | DisconnectReason::Refused
        | DisconnectReason::Evicted
        | DisconnectReason::Kicked => 4,
    }
}

/// What a joiner makes of a `Left` control's reason; `None`: not one.
fn reason_from_wire(reason: u8) -> Option<DisconnectReason> {
    Some(match reason {
        0 => DisconnectReason::Left,
        1 => DisconnectReason::ConnectionLost,
        2 => DisconnectReason::Timeout,
        3 => DisconnectReason::Replaced,
        4 => DisconnectReason::Evicted,
        _ => return None,
    })
}

impl<L: LinkEnds> Room<L> {
    /// Sets the room's topology, before the first link (the room does not convert its links
    /// later). A star room has no host migration (its `host_grace` is `None`).
    pub fn set_topology(&mut self, topology: Topology) {
        self.star.topology = topology;
        if topology == Topology::Star {
            self.policy.host_grace = None;
        }
    }

    /// The room's topology.
    pub fn topology(&self) -> Topology {
        self.star.topology
    }

    /// Star host: the game's say on the messages it relays (none: all are relayed).
    pub fn set_relay_filter(&mut self, filter: Option<RelayFilter>) {
        self.star.filter = filter;
    }

    /// Star host: what it relayed so far.
    pub fn relay_counts(&self) -> RelayCounts {
        RelayCounts {
            queued: self.star.backlog.queued,
            ..self.star.counts
        }
    }

    /// Star joiner: the joiners reached through the host.
    pub(super) fn members(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.star.members.keys().copied()
    }

    /// Star joiner: whether `peer` is a joiner reached through the host.
    pub(super) fn is_member(&self, peer: PeerId) -> bool {
        self.star.members.contains_key(&peer)
    }

    /// Star joiner: since when member `peer` has been away, if it is.
    pub(super) fn member_away_since(&self, peer: PeerId) -> Option<Duration> {
        self.star.members.get(&peer).copied().flatten()
    }

    /// Star: queues a message for `peer`, with its route.
    pub(super) fn star_send(
        &mut self,
        peer: PeerId,
        kind: u32,
        payload: &[u8],
        delivery: Delivery,
    ) -> Result<(), SendError> {
        self.route_fits(payload.len(), delivery)?;
        let (carrier, route) = if self.peers.contains_key(&peer) {
            (peer, Route::Direct)
        } else if self.local.role == Role::Joiner && self.is_member(peer) {
            (
                self.host().ok_or(SendError::UnknownPeer(peer))?,
                Route::Via(peer),
            )
        } else {
            return Err(SendError::UnknownPeer(peer));
        };
        let remote = self
            .peers
            .get_mut(&carrier)
            .ok_or(SendError::UnknownPeer(peer))?;
        write(&mut self.star.scratch, route, payload);
        remote.session.send(kind, &self.star.scratch, delivery)
    }

    /// Star: queues a message for everyone: a host sends it to each joiner, a joiner once to
    /// the host, which relays it.
    pub(super) fn star_broadcast(
        &mut self,
        kind: u32,
        payload: &[u8],
        delivery: Delivery,
        failed: &mut impl FnMut(PeerId, SendError),
    ) {
        if let Err(e) = self.route_fits(payload.len(), delivery) {
            for peer in self.peers.keys() {
                failed(*peer, e.clone());
            }
            return;
        }
        let route = match self.local.role {
            Role::Host => Route::Direct,
            Role::Joiner => Route::Everyone,
        };
        write(&mut self.star.scratch, route, payload);
        for (peer, remote) in self.peers.iter_mut() {
            if let Err(e) = remote.session.send(kind, &self.star.scratch, delivery) {
                failed(*peer, e);
            }
        }
    }

    /// Whether a message of `len` bytes fits the session's limits with the longest route
    /// (the same limit whatever way a message takes).
    fn route_fits(&self, len: usize, delivery: Delivery) -> Result<(), SendError> {
        let limit = match delivery {
            Delivery::Reliable => self.config.max_message_size,
            _ => self.config.max_unreliable_payload(),
        }
        .saturating_sub(ROUTE_MAX);
        if len > limit {
            return Err(SendError::TooLarge {
                size: len,
                limit,
                delivery,
            });
        }
        Ok(())
    }

    /// Star: a message `from` handed up, routed: delivered to us, relayed, or both. `Err`:
    /// `from` broke the rules and is dropped.
    pub(super) fn route_inbound(
        &mut self,
        from: PeerId,
        message: Inbound,
    ) -> Result<(), PeerErrorKind> {
        let bad = PeerErrorKind::Violation(Violation::BadRoute);
        let (route, rest) = parse(&message.payload).ok_or(bad.clone())?;
        let header = message.payload.len() - rest.len();
        let host = self.local.role == Role::Host;
        let (deliver_from, relay_to) = match route {
            Route::Via(to) if to == from => return Err(bad),
            Route::Direct => (Some(from), None),
            Route::Everyone if host => (Some(from), Some(None)),
            Route::Via(to) if host && to == self.local.id => (Some(from), None),
            Route::Via(to) if host => (None, Some(Some(to))),
            // A joiner hears only from its host (no other link is bound in a star).
            Route::Via(sender) if self.host() == Some(from) => {
                match self.is_member(sender) && sender != self.local.id {
                    true => (Some(sender), None),
                    // Gone meanwhile, or one we dropped ourselves: nothing to deliver.
                    false => (None, None),
                }
            }
            _ => return Err(bad),
        };
        if let Some(to) = relay_to {
            // What its sender's `route_fits` let through, with a route of either length: a
            // larger one could not be relayed, and only a sender that skips the check sends it.
            self.route_fits(rest.len(), message.delivery)
                .map_err(|_| PeerErrorKind::Violation(Violation::BadRoute))?;
            self.relay(from, to, message.kind, message.delivery, &rest)?;
        }
        let taken = match deliver_from {
            Some(sender) => {
                self.events.push_back(RoomEvent::Message {
                    from: sender,
                    kind: message.kind,
                    payload: rest,
                });
                header
            }
            None => message.payload.len(),
        };
        if let Some(remote) = self.peers.get_mut(&from) {
            remote.session.handle_taken(taken);
        }
        Ok(())
    }

    /// Host: relays `payload` from joiner `from` to joiner `to` (`None`: every joiner but
    /// `from`), if the filter lets it.
    fn relay(
        &mut self,
        from: PeerId,
        to: Option<PeerId>,
        kind: u32,
        delivery: Delivery,
        payload: &Bytes,
    ) -> Result<(), PeerErrorKind> {
        if let Some(filter) = &self.star.filter {
            let view = RelayView {
                from,
                to,
                kind,
                delivery,
                payload,
            };
            if !(filter.0)(&view)? {
                self.star.counts.filtered += 1;
                return Ok(());
            }
        }
        let limit = self.laggard_limit();
        let mut laggards = Vec::new();
        // What waits in backlogs is a copy (a slice would keep the whole packet it came in
        // alive), one shared by every receiver that needs it.
        let mut copy: Option<Bytes> = None;
        for (peer, remote) in self.peers.iter_mut() {
            if *peer == from || to.is_some_and(|t| t != *peer) || remote.role != Role::Joiner {
                continue;
            }
            self.star.counts.relayed += 1;
            let item = || Pending::Relayed {
                from,
                kind,
                payload: copy
                    .get_or_insert_with(|| Bytes::copy_from_slice(payload))
                    .clone(),
            };
            if delivery != Delivery::Reliable {
                // At most once: what does not fit now is dropped.
                write(&mut self.star.scratch, Route::Via(from), payload);
                let _ = remote.session.send(kind, &self.star.scratch, delivery);
                continue;
            }
            if self
                .star
                .backlog
                .offer(*peer, remote, &mut self.star.scratch, item, limit)
            {
                laggards.push(*peer);
            }
        }
        for peer in laggards {
            self.drop_laggard(peer);
        }
        Ok(())
    }

    /// Host: what a joiner's backlog may cost before it is dropped.
    fn laggard_limit(&self) -> usize {
        self.config.max_undelivered_bytes
    }

    /// Host: a joiner whose backlog passed the limit cannot keep up with what the room sends
    /// it (it was away too long under heavy traffic, or its link is too slow): it is dropped,
    /// and every other joiner carries on. (In a mesh, its senders' sends to it would fail
    /// instead.)
    fn drop_laggard(&mut self, peer: PeerId) {
        let limit = self.laggard_limit();
        let unacked = self.star.backlog.forget(peer);
        self.events.push_back(RoomEvent::Error {
            peer: Some(peer),
            error: PeerErrorKind::Send(SendError::Backpressure {
                peer,
                unacked,
                limit,
            }),
        });
        for link in self.links_of(peer) {
            self.close_link(link, Some(crate::core::wire::ByeReason::OverBudget));
        }
        self.remove_peer(peer, DisconnectReason::ConnectionLost);
    }

    /// Host: sends what waits in the backlogs, as far as the joiners' send buffers take it.
    pub(super) fn flush_backlog(&mut self) {
        if self.star.backlog.queues.is_empty() {
            return;
        }
        let Star {
            scratch, backlog, ..
        } = &mut self.star;
        for (peer, (queue, cost)) in backlog.queues.iter_mut() {
            let Some(remote) = self.peers.get_mut(peer) else {
                queue.clear();
                continue;
            };
            while let Some(next) = queue.front() {
                if let Err(SendError::Backpressure { .. }) = send_pending(remote, scratch, next) {
                    break;
                }
                *cost = cost.saturating_sub(next.cost());
                queue.pop_front();
            }
        }
        backlog.queues.retain(|_, (queue, _)| !queue.is_empty());
    }

    /// Star host: tells every joiner but `except` some news about joiners, behind whatever
    /// waits for each.
    pub(super) fn tell_joiners(&mut self, except: PeerId, news: Control) {
        if !self.star.on() || self.local.role != Role::Host {
            return;
        }
        let bytes = news.encode();
        let limit = self.laggard_limit();
        let mut laggards = Vec::new();
        for (peer, remote) in self.peers.iter_mut() {
            if *peer == except {
                continue;
            }
            let item = || Pending::Control(bytes.clone());
            if self
                .star
                .backlog
                .offer(*peer, remote, &mut self.star.scratch, item, limit)
            {
                laggards.push(*peer);
            }
        }
        for peer in laggards {
            self.drop_laggard(peer);
        }
    }

    /// Star host: tells the new joiner `peer` who else is in the room, and everyone else of
    /// it.
    pub(super) fn announce_member(&mut self, peer: PeerId) {
        self.tell_joiners(peer, Control::Joined { peer });
        let others: Vec<(PeerId, bool)> = self
            .peers
            .iter()
            .filter(|(p, r)| **p != peer && r.role == Role::Joiner)
            .map(|(p, r)| (*p, r.away_since.is_some()))
            .collect();
        let limit = self.laggard_limit();
        let Some(remote) = self.peers.get_mut(&peer) else {
            return;
        };
        let mut lagging = false;
        for (other, away) in others {
            let mut news = vec![Control::Joined { peer: other }];
            if away {
                news.push(Control::Away { peer: other, away });
            }
            for c in news {
                let item = || Pending::Control(c.encode());
                lagging |=
                    self.star
                        .backlog
                        .offer(peer, remote, &mut self.star.scratch, item, limit);
            }
        }
        if lagging {
            self.drop_laggard(peer);
        }
    }

    /// Star host: `peer` is out of the room: its joiners hear why, and its backlog goes.
    pub(super) fn member_gone(&mut self, peer: PeerId, reason: DisconnectReason) {
        self.star.backlog.forget(peer);
        if reason != DisconnectReason::LocalLeave {
            let reason = reason_to_wire(reason);
            self.tell_joiners(peer, Control::Left { peer, reason });
        }
    }

    /// Star joiner: stops listening to fellow joiner `peer`, which sent something we refuse.
    pub(super) fn mute_member(&mut self, peer: PeerId, error: PeerErrorKind) {
        if self.star.members.remove(&peer).is_some() {
            self.events.push_back(RoomEvent::Error {
                peer: Some(peer),
                error,
            });
            self.events.push_back(RoomEvent::Disconnected {
                peer,
                reason: DisconnectReason::ProtocolViolation,
            });
        }
    }

    /// Star joiner: our host is gone, and with it our way to everyone else.
    pub(super) fn members_lost(&mut self) {
        for (peer, _) in self.star.members.drain() {
            self.events.push_back(RoomEvent::Disconnected {
                peer,
                reason: DisconnectReason::ConnectionLost,
            });
        }
    }

    /// Star joiner: our host's news about the room's other joiners.
    pub(super) fn on_member_control(
        &mut self,
        from_our_host: bool,
        control: Control,
        now: Duration,
    ) -> Result<(), PeerErrorKind> {
        let bad = PeerErrorKind::Violation(Violation::BadControl);
        if !from_our_host || !self.star.on() {
            return Err(bad);
        }
        match control {
            Control::Joined { peer } => {
                if peer == self.local.id || self.peers.contains_key(&peer) || self.is_member(peer) {
                    return Ok(());
                }
                if self.star.members.len() >= self.max_peers.max(MAX_MEMBERS) {
                    return Err(bad);
                }
                self.star.members.insert(peer, None);
                self.events.push_back(RoomEvent::Connected {
                    peer,
                    role: Role::Joiner,
                });
            }
            Control::Away { peer, away } => {
                let Some(since) = self.star.members.get_mut(&peer) else {
                    return Ok(());
                };
                match (away, *since) {
                    (true, None) => {
                        *since = Some(now);
                        self.events.push_back(RoomEvent::Reconnecting { peer });
                    }
                    (false, Some(t)) => {
                        *since = None;
                        self.events.push_back(RoomEvent::Reconnected {
                            peer,
                            downtime: now.saturating_sub(t),
                        });
                    }
                    _ => {}
                }
            }
            Control::Left { peer, reason } => {
                let reason = reason_from_wire(reason).ok_or(bad)?;
                if self.star.members.remove(&peer).is_some() {
                    self.events
                        .push_back(RoomEvent::Disconnected { peer, reason });
                }
            }
            _ => return Err(bad),
        }
        Ok(())
    }
}
