//! The room: links, the handshake, roles and the table of remote peers. Sans-IO and Bevy-free.
//!
//! A *link* is one matchbox connection (identified by matchbox's per-socket id `L`); a *peer* is
//! one remote app (identified by its [`PeerId`], derived from its key). Every new link starts
//! with the handshake of [`link`]: both sides send `Hello`, then an `Auth` proving their key
//! (and the room secret) for this link. A proven peer is admitted ([`admit`]) and bound: a new
//! peer is [`RoomEvent::Connected`]; a known peer with the same key and incarnation resumes its
//! session ([`RoomEvent::Reconnected`]). The host is the room's authority: it can have the game
//! review each joiner ([`RoomEvent::JoinRequest`]), and it tells every joiner whom it admitted;
//! joiners bind only those. Anything wrong (version, protocol hash, proof, secret, a second
//! host, a full room, a budget, garbage) ends that link with a [`RoomEvent::Error`], a `Bye`
//! telling the other side why, and nothing else is disturbed.

mod admit;
mod control;
mod link;
mod migration;
#[cfg(test)]
mod migration_tests;
#[cfg(test)]
mod sim;
mod star;
#[cfg(test)]
mod star_tests;
pub mod testing;
#[cfg(test)]
mod trust_tests;

use crate::{
    core::auth::{Identity, LinkBinding, PublicKey, RoomSecret, Transcript, make_auth},
    core::budget::{Budgets, RateMeter},
    core::error::{PeerErrorKind, SendError, Violation},
    core::peer::{PeerId, Role},
    core::session::{Inbound, Session, SessionConfig, Transfer},
    core::wire::{
        self, Auth, ByeReason, Channel, Delivery, Hello, PROTOCOL_VERSION, Record, Records,
    },
};
use admit::{Admission, Claim, Known, RoomFacts, admit, compatible};
use bytes::{Bytes, BytesMut};
pub(crate) use control::CONTROL_KIND;
use control::Control;
use link::{Link, LinkState, Verified, Wait};
use migration::Succession;
use star::Star;
pub use star::{RelayCounts, RelayFilter, RelayFilterFn, RelayView, Topology};
use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    time::Duration,
};

/// Why a peer left the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The peer called `leave()`.
    Left,
    /// We called `leave()`.
    LocalLeave,
    /// The connection to the peer was lost.
    ConnectionLost,
    /// The peer did not come back within `resume_timeout`.
    Timeout,
    /// We dropped the peer for breaking the protocol (a [`PeerError`](crate::PeerError)
    /// says how).
    ProtocolViolation,
    /// The peer refused or dropped us (its reason is in a `PeerError`).
    Refused,
    /// The peer was replaced: the same peer id came back as a new incarnation (the app
    /// restarted), or, for a joiner's host, another host took the room while this one was
    /// away (a host that restarted under a new id).
    Replaced,
    /// The host removed the peer from the room (it broke the protocol or a budget there, or
    /// the host's game kicked it).
    Evicted,
    /// We (the host) removed the peer from the room: our game called `kick`.
    Kicked,
}

/// What the room tells the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    /// A new peer completed the handshake.
    Connected {
        /// The peer.
        peer: PeerId,
        /// Its role.
        role: Role,
    },
    /// A peer went silent (or its link dropped): it is away, its session is kept for
    /// `resume_timeout`, and reliable sends to it keep queueing.
    Reconnecting {
        /// The peer.
        peer: PeerId,
    },
    /// A peer that was away is back on a new link; its session resumes.
    Reconnected {
        /// The peer.
        peer: PeerId,
        /// How long it was away.
        downtime: Duration,
    },
    /// A peer is gone for good; its session is freed.
    Disconnected {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: DisconnectReason,
    },
    /// A message arrived, still encoded.
    Message {
        /// Sender.
        from: PeerId,
        /// Type id.
        kind: u32,
        /// Encoded message.
        payload: Bytes,
    },
    /// Host, reviewing joiners: a new joiner proved who it is and asks to join. Answer with
    /// [`Room::admit_joiner`] or [`Room::refuse_joiner`] (now or later, within the admission
    /// timeout).
    JoinRequest {
        /// The joiner.
        peer: PeerId,
        /// What it sent with its request (a player name, a ticket).
        payload: Bytes,
    },
    /// The room has a new host: `old` handed it over, or was away for the host grace (see
    /// [`ResumePolicy::host_grace`]), or lost a conflict between two hosts. `old` stays in the
    /// room as a joiner while its session lasts; either may be us.
    HostMigrated {
        /// The host until now.
        old: PeerId,
        /// The host from now on.
        new: PeerId,
    },
    /// Something went wrong with a peer (or a link whose peer is not known yet).
    Error {
        /// The peer, when known.
        peer: Option<PeerId>,
        /// What.
        error: PeerErrorKind,
    },
}

/// What a transport's link id tells of the link's two ends: our socket's id and the remote
/// socket's, as the signaling server named them. Every proof on the link covers them, so a
/// handshake made for one link is worthless on another.
pub trait LinkEnds: Copy + Eq + Hash {
    /// `(ours, theirs)`.
    fn ends(&self) -> (u128, u128);
}

/// Who we are in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIdentity {
    /// Our key pair.
    pub key: Identity,
    /// Our id (derived from the key).
    pub id: PeerId,
    /// Host or joiner.
    pub role: Role,
    /// Random per `host()`/`join()`.
    pub incarnation: u64,
    /// Hash of the registered message protocol.
    pub protocol_hash: u64,
}

impl LocalIdentity {
    /// `key` in the room as `role`, this incarnation, speaking the message protocol
    /// `protocol_hash`.
    pub fn new(key: Identity, role: Role, incarnation: u64, protocol_hash: u64) -> Self {
        Self {
            id: key.peer_id(),
            key,
            role,
            incarnation,
            protocol_hash,
        }
    }
}

/// What the room asks of peers before it takes them, beyond a valid proof of identity.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The room secret, if the room is private.
    pub secret: Option<RoomSecret>,
    /// What we send with our own `Auth` (a joiner's player name or ticket).
    pub join_payload: Bytes,
    /// Host: every new joiner waits for the game's decision ([`RoomEvent::JoinRequest`]).
    pub review: bool,
    /// Per-peer rate budgets.
    pub budgets: Budgets,
}

#[derive(Debug, Clone)]
struct Remote<L> {
    role: Role,
    key: PublicKey,
    incarnation: u64,
    link: Option<L>,
    /// Since when the peer has been away (no usable link), if it is.
    away_since: Option<Duration>,
    session: Session,
    /// Its message and byte rates.
    meter: RateMeter,
    /// When it bound its recent links (the last minute's).
    linked_at: VecDeque<Duration>,
    /// While it is away: when its dormant links are next probed.
    probe_at: Duration,
}

impl<L> Remote<L> {
    fn recent_links(&mut self, now: Duration) -> u32 {
        while self
            .linked_at
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= Duration::from_secs(60))
        {
            self.linked_at.pop_front();
        }
        self.linked_at.len() as u32
    }
}

/// What the room does when a peer's link is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePolicy {
    /// Keep an away peer's session this long, waiting for it to come back. Zero: a lost link
    /// disconnects the peer at once.
    pub resume_timeout: Duration,
    /// A peer silent this long is away (heartbeats keep a healthy idle link talking).
    pub liveness_timeout: Duration,
    /// A link up this long without the peer's handshake is dropped (and a joiner re-opens).
    /// Both ends of a link are reported up at different times, seconds apart when many
    /// connections form at once on a busy machine, so this is much longer than a round trip.
    pub handshake_timeout: Duration,
    /// Host, reviewing joiners: a joiner the game has not answered within this is refused.
    pub admission_timeout: Duration,
    /// Joiners whose host has been away this long agree on a successor among themselves (see
    /// [`Room::hand_over`] for the graceful way). Keep it well under `resume_timeout`, and
    /// longer than the outages a host should survive as host. `None`: the room ends with its
    /// host (its joiners see it time out).
    pub host_grace: Option<Duration>,
}

impl Default for ResumePolicy {
    fn default() -> Self {
        Self {
            resume_timeout: Duration::from_secs(30),
            liveness_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(5),
            admission_timeout: Duration::from_secs(10),
            host_grace: Some(Duration::from_secs(3)),
        }
    }
}

impl ResumePolicy {
    /// The longest a proven peer's link may wait for `wait` before it is given up.
    fn wait_limit(&self, wait: Wait) -> Duration {
        match wait {
            Wait::Decision => self.admission_timeout,
            // The host's game may take up to its admission timeout (ours, as far as we know).
            Wait::Welcome => self.admission_timeout + self.handshake_timeout,
            Wait::Roster => self.handshake_timeout,
        }
    }

    /// How often a link sends a ping (round-trip sample and heartbeat): `configured`, but at
    /// least four per `liveness_timeout`, so one or two lost or late heartbeats never make a
    /// healthy peer look away; never more often than every 10 ms.
    pub fn heartbeat_interval(&self, configured: Duration) -> Duration {
        configured
            .min(self.liveness_timeout / 4)
            .max(Duration::from_millis(10))
    }
}

/// The room core. `L` is the transport's link id (matchbox's per-socket peer id, with our
/// socket's). A clone is an independent copy (the fuzz targets start every run from one
/// connected room).
#[derive(Debug, Clone)]
pub struct Room<L> {
    local: LocalIdentity,
    access: Access,
    config: SessionConfig,
    policy: ResumePolicy,
    max_peers: usize,
    links: HashMap<L, Link>,
    peers: HashMap<PeerId, Remote<L>>,
    events: VecDeque<RoomEvent>,
    /// The registered message kinds and how each travels; empty: no check (core tests).
    kinds: HashMap<u32, Delivery>,
    /// Links ended because their handshake stalled, since the last `take_stalled_handshakes`.
    stalled_handshakes: usize,
    /// Links made so far (each gets its own nonce).
    links_made: u64,
    /// Joiner: the peers our host admitted, with the socket it knows each on.
    roster: HashMap<PeerId, u128>,
    /// Host: peers we kicked, refused until their resume window is over (one that was away
    /// when kicked would otherwise come back as a new session).
    kicked: HashMap<PeerId, Duration>,
    /// Joiner: a host refused us (or we found its proof of the room secret wrong) since the
    /// last `take_refused_by_host`.
    refused_by_host: bool,
    /// Who hosts the room, by what right, and what we said of it.
    succession: Succession,
    /// What our sessions still had to send when we left, sent before the goodbyes.
    farewell: Vec<(L, Channel, Bytes)>,
    /// The topology, and in a star, the relay's state.
    star: Star,
    /// What one record handed up (kept to reuse its buffer).
    inbound: Vec<Inbound>,
}

impl<L: LinkEnds> Room<L> {
    /// An empty room.
    pub fn new(local: LocalIdentity, config: SessionConfig, max_peers: usize) -> Self {
        Self::with_policy(local, config, max_peers, ResumePolicy::default())
    }

    /// An empty room with an explicit reconnect policy.
    pub fn with_policy(
        local: LocalIdentity,
        config: SessionConfig,
        max_peers: usize,
        policy: ResumePolicy,
    ) -> Self {
        Self {
            local,
            access: Access::default(),
            config,
            policy,
            max_peers,
            links: HashMap::new(),
            peers: HashMap::new(),
            events: VecDeque::new(),
            kinds: HashMap::new(),
            stalled_handshakes: 0,
            links_made: 0,
            roster: HashMap::new(),
            kicked: HashMap::new(),
            refused_by_host: false,
            succession: Succession::default(),
            farewell: Vec::new(),
            star: Star::default(),
            inbound: Vec::new(),
        }
    }

    /// What the room asks of peers (secret, review, budgets) and what we send with our own
    /// proof. Set before the first link.
    pub fn set_access(&mut self, access: Access) {
        self.access = access;
    }

    /// The registered message kinds: a record of any other kind, or of a kind sent with another
    /// delivery than it was registered with, ends the link at once, before anything is kept
    /// for it.
    pub fn set_kinds(&mut self, kinds: HashMap<u32, Delivery>) {
        self.kinds = kinds;
    }

    fn check_kind(&self, record: &Record) -> Result<(), PeerErrorKind> {
        let (kind, delivery) = match record {
            Record::Reliable { kind, .. } | Record::Fragment { kind, .. } => {
                (*kind, Delivery::Reliable)
            }
            Record::Unreliable { kind, .. } => (*kind, Delivery::Unreliable),
            Record::Sequenced { kind, .. } => (*kind, Delivery::UnreliableSequenced),
            _ => return Ok(()),
        };
        if kind == CONTROL_KIND {
            // The room's own messages: only reliable (what each may say is checked when it is
            // read).
            return match delivery {
                Delivery::Reliable => Ok(()),
                _ => Err(PeerErrorKind::Violation(Violation::WrongDelivery)),
            };
        }
        if self.kinds.is_empty() {
            return Ok(());
        }
        match self.kinds.get(&kind) {
            None => Err(PeerErrorKind::UnknownMessage(kind)),
            Some(d) if *d != delivery => Err(PeerErrorKind::Violation(Violation::WrongDelivery)),
            Some(_) => Ok(()),
        }
    }

    /// Who we are.
    pub fn local(&self) -> &LocalIdentity {
        &self.local
    }

    /// Session limits.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The connected peers and their roles (in a star room, a joiner's fellow joiners too,
    /// reached through the host).
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, Role)> + '_ {
        self.peers
            .iter()
            .map(|(id, r)| (*id, r.role))
            .chain(self.members().map(|p| (p, Role::Joiner)))
    }

    /// The host, if we are a joiner connected to one.
    pub fn host(&self) -> Option<PeerId> {
        self.peers
            .iter()
            .find(|(_, r)| r.role == Role::Host)
            .map(|(id, _)| *id)
    }

    /// The session with a peer.
    pub fn session(&self, peer: PeerId) -> Option<&Session> {
        self.peers.get(&peer).map(|r| &r.session)
    }

    /// Turns retransmits on timeout on or off, for every session now and later.
    pub fn set_retransmit(&mut self, on: bool) {
        self.config.retransmit = on;
        for remote in self.peers.values_mut() {
            remote.session.set_retransmit(on);
        }
    }

    /// Where each large (fragmented) reliable message stands, with every peer, both ways (see
    /// [`Session::poll_transfers`]).
    pub fn poll_transfers(&mut self, out: &mut impl FnMut(PeerId, Transfer)) {
        for (peer, remote) in self.peers.iter_mut() {
            remote.session.poll_transfers(&mut |t| {
                if t.kind != CONTROL_KIND {
                    out(*peer, t)
                }
            });
        }
    }

    /// The link we send `peer`'s session on, if it has one.
    pub fn peer_link(&self, peer: PeerId) -> Option<L> {
        self.peers.get(&peer).and_then(|r| r.link)
    }

    /// Since when `peer` has been away, if it is.
    pub fn away_since(&self, peer: PeerId) -> Option<Duration> {
        match self.peers.get(&peer) {
            Some(r) => r.away_since,
            None => self.member_away_since(peer),
        }
    }

    /// Whether a transport link is bound to a peer (as its link or a standby), or still in its
    /// handshake.
    pub fn link_in_use(&self, link: L) -> bool {
        self.link_bound(link)
            || self
                .links
                .get(&link)
                .is_some_and(|l| !matches!(l.state(), LinkState::Closed | LinkState::Bound(_)))
    }

    /// One line per link: its id and state (diagnostics).
    pub fn describe_links(&self) -> Vec<String>
    where
        L: std::fmt::Debug,
    {
        self.links
            .iter()
            .map(|(id, l)| {
                let writable = if l.writable() {
                    ""
                } else {
                    ", not writable yet"
                };
                let state = match l.state() {
                    LinkState::AwaitingHello { .. } => "awaiting hello".to_string(),
                    LinkState::AwaitingAuth { .. } => "awaiting auth".to_string(),
                    LinkState::Verified(v) => format!("{} waits for {:?}", v.peer, v.wait),
                    LinkState::Bound(p) if self.is_standby(*id, *p) => {
                        format!("standby for {p}")
                    }
                    LinkState::Bound(p) => format!("bound to {p}"),
                    LinkState::Closed => "closed".to_string(),
                };
                format!("{id:?}: {state}{writable}")
            })
            .collect()
    }

    /// Whether a link carries a peer's session (handshake done): the one we send on, or a
    /// standby (see [`Room::bind`]).
    pub fn link_bound(&self, link: L) -> bool {
        self.links
            .get(&link)
            .and_then(Link::peer)
            .is_some_and(|p| self.peers.contains_key(&p))
    }

    /// The links bound to `peer`, its current one and its standbys.
    fn links_of(&self, peer: PeerId) -> Vec<L> {
        self.links
            .iter()
            .filter(|(_, l)| l.peer() == Some(peer))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Another writable link bound to `peer` than `link`, the one heard from last.
    fn other_bound_link(&self, peer: PeerId, link: L) -> Option<L> {
        self.links
            .iter()
            .filter(|(id, l)| **id != link && l.peer() == Some(peer) && l.writable())
            .max_by_key(|(_, l)| l.last_heard())
            .map(|(id, _)| *id)
    }

    /// Whether `peer` is away.
    fn is_away(&self, peer: PeerId) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|r| r.away_since.is_some())
    }

    /// A packet came from away `peer` on `link`, one of its dormant links: the connection
    /// outlived the outage, and the session resumes on it from the peer's first ack, as on a
    /// new link. (The peer does the same when it hears from us.) `false`: the link cannot
    /// carry it (not reported up yet), and the peer stays away.
    fn wake(&mut self, link: L, peer: PeerId, now: Duration) -> bool {
        if !self.links.get(&link).is_some_and(Link::writable) {
            return false;
        }
        let Some(remote) = self.peers.get_mut(&peer) else {
            return false;
        };
        let Some(since) = remote.away_since.take() else {
            return true;
        };
        remote.link = Some(link);
        remote.session.handle_link_up(now);
        self.events.push_back(RoomEvent::Reconnected {
            peer,
            downtime: now.saturating_sub(since),
        });
        self.tell_joiners(peer, Control::Away { peer, away: false });
        true
    }

    /// Whether `link` is bound to `peer` but is not the link we send it on.
    fn is_standby(&self, link: L, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|r| r.link != Some(link))
    }

    /// Whether a stalled handshake on `link` matters: a joiner's before it has a host (the
    /// link may be the host's), or a link to a socket its host admitted. A stranger that says
    /// nothing costs one quiet link and nothing else.
    fn stall_matters(&self, link: &L) -> bool {
        if self.local.role == Role::Host {
            return false;
        }
        if self.host().is_none() {
            return true;
        }
        let (_, theirs) = link.ends();
        self.roster.values().any(|s| *s == theirs)
    }

    /// Marks peers silent for `liveness_timeout` as away, gives up on peers away for
    /// `resume_timeout`, ends links still without a handshake after `handshake_timeout` (see
    /// [`Room::take_stalled_handshakes`]) and verified peers that waited too long to be bound.
    /// Call on a timer.
    pub fn handle_timeout(&mut self, now: Duration) {
        let policy = self.policy;
        if !self.kicked.is_empty() {
            self.kicked.retain(|_, until| *until > now);
        }
        let mut stalled = Vec::new();
        let mut undecided = Vec::new();
        for (id, link) in self.links.iter_mut() {
            if link.handshake_expired(now, policy.handshake_timeout) {
                stalled.push(*id);
            }
            if let Some(v) = link.verified()
                && now.saturating_sub(v.since) >= policy.wait_limit(v.wait)
            {
                undecided.push((*id, v.wait, v.peer));
            }
        }
        for link in stalled {
            if self.stall_matters(&link) {
                self.stalled_handshakes += 1;
                self.events.push_back(RoomEvent::Error {
                    peer: None,
                    error: PeerErrorKind::HandshakeTimeout {
                        after: policy.handshake_timeout,
                    },
                });
            }
        }
        // Standby links the peer no longer uses (an away peer's are dormant, not unused).
        let unused: Vec<L> = self
            .links
            .iter()
            .filter(|(id, l)| {
                l.peer()
                    .is_some_and(|p| self.is_standby(**id, p) && !self.is_away(p))
                    && now.saturating_sub(l.last_heard()) >= policy.liveness_timeout
            })
            .map(|(id, _)| *id)
            .collect();
        for link in unused {
            self.close_link(link, None);
        }
        for (link, wait, peer) in undecided {
            match wait {
                Wait::Decision => {
                    self.events.push_back(RoomEvent::Error {
                        peer: Some(peer),
                        error: PeerErrorKind::AdmissionTimeout {
                            after: policy.admission_timeout,
                        },
                    });
                    self.close_link(link, Some(ByeReason::NotAdmitted));
                }
                Wait::Welcome | Wait::Roster => {
                    let matters = wait == Wait::Welcome || self.stall_matters(&link);
                    self.close_link(link, None);
                    if matters {
                        self.stalled_handshakes += 1;
                    }
                }
            }
        }
        // A peer bound on a link our transport has not reported up yet (its data overtook the
        // notice, sometimes by seconds on the answering side) cannot hear from us, so its
        // silence means nothing yet.
        for remote in self.peers.values_mut() {
            let waiting = remote
                .link
                .and_then(|l| self.links.get(&l))
                .is_some_and(|l| !l.writable());
            if waiting {
                remote.session.heard_from(now);
            }
        }
        let silent: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, r)| {
                r.away_since.is_none()
                    && now.saturating_sub(r.session.last_heard()) >= policy.liveness_timeout
            })
            .map(|(p, _)| *p)
            .collect();
        for peer in silent {
            self.peer_lost(peer, now);
        }
        let expired: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, r)| {
                r.away_since
                    .is_some_and(|since| now.saturating_sub(since) >= policy.resume_timeout)
            })
            .map(|(p, _)| *p)
            .collect();
        for peer in expired {
            self.remove_peer(peer, DisconnectReason::Timeout);
        }
        self.check_succession(now);
        self.flush_backlog();
    }

    /// The next instant the room needs [`Room::handle_timeout`] or
    /// [`Room::poll_transmit`] to run (`None`: nothing until an input arrives). At or before
    /// `now`: at once.
    pub fn poll_timeout(&self, now: Duration) -> Option<Duration> {
        let policy = self.policy;
        let mut next: Option<Duration> = None;
        let mut at = |t: Duration| next = Some(next.map_or(t, |n: Duration| n.min(t)));
        for (id, link) in &self.links {
            if let Some(t) =
                link.poll_timeout(now, policy.handshake_timeout, |w| policy.wait_limit(w))
            {
                at(t);
            }
            if link
                .peer()
                .is_some_and(|p| self.is_standby(*id, p) && !self.is_away(p))
            {
                at(link.last_heard() + policy.liveness_timeout);
            }
        }
        for (peer, remote) in &self.peers {
            let dormant = || {
                self.links
                    .values()
                    .any(|l| l.peer() == Some(*peer) && l.ready())
            };
            if remote.away_since.is_some() && dormant() {
                at(remote.probe_at);
            }
            match remote.away_since {
                Some(since) => at(since + policy.resume_timeout),
                None => at(remote.session.last_heard() + policy.liveness_timeout),
            }
            let ready = remote
                .link
                .is_some_and(|l| self.links.get(&l).is_some_and(Link::ready));
            if let Some(t) = remote.session.poll_timeout(now, ready) {
                at(t);
            }
        }
        if let Some(t) = self.succession_deadline() {
            at(t);
        }
        next
    }

    /// How many links [`Room::handle_timeout`] ended since the last call because the peer's
    /// handshake never completed although the link was up for `handshake_timeout`, counting
    /// only links that matter (see [`PeerErrorKind::HandshakeTimeout`]).
    ///
    /// Seen with webrtc-rs under load: on a fresh connection, data from the offering side can
    /// be lost for good (the first packets race the answering side's pre-negotiated data
    /// channels), so one side binds and the other never hears a word. The side that never got
    /// a `Hello` learns it here; a joiner then re-opens its socket for fresh connections (the
    /// other side sees us go quiet and waits for that).
    pub fn take_stalled_handshakes(&mut self) -> usize {
        std::mem::take(&mut self.stalled_handshakes)
    }

    /// Whether a host refused us since the last call (joiner): the room full, another
    /// secret, its game said no, another live session under our identity. Joining is over.
    pub fn take_refused_by_host(&mut self) -> bool {
        std::mem::take(&mut self.refused_by_host)
    }

    /// The peer's link is gone or silent: it is away (or, without resume, disconnected).
    fn peer_lost(&mut self, peer: PeerId, now: Duration) {
        if self.policy.resume_timeout.is_zero() {
            self.remove_peer(peer, DisconnectReason::ConnectionLost);
            return;
        }
        let Some(remote) = self.peers.get_mut(&peer) else {
            return;
        };
        if remote.away_since.is_some() {
            return;
        }
        remote.away_since = Some(now);
        remote.link = None;
        remote.probe_at = now;
        // Its links stay, dormant: a WebRTC connection often outlives a short outage (a Wi-Fi
        // blip, a stalled process), and with no signaling server to make new ones (it left
        // with a host) it is the only way back. The first packet on one resumes the session
        // there (see `Room::wake`); a new link resumes it as well, and the dormant ones are
        // then closed as unused standbys.
        self.events.push_back(RoomEvent::Reconnecting { peer });
        self.tell_joiners(peer, Control::Away { peer, away: true });
    }

    /// The next event, oldest first. A message taken here counts as taken by the game: while
    /// a peer's messages are not taken, its session stops acking past
    /// [`SessionConfig::max_undelivered_bytes`] (flow control for stalled frames).
    pub fn poll_event(&mut self) -> Option<RoomEvent> {
        let event = self.events.pop_front()?;
        if let RoomEvent::Message { from, payload, .. } = &event {
            // A star joiner's messages from fellow joiners came on its host's session.
            let carrier = match self.peers.contains_key(from) {
                true => Some(*from),
                false if self.star.on() => self.host(),
                false => None,
            };
            if let Some(remote) = carrier.and_then(|c| self.peers.get_mut(&c)) {
                remote.session.handle_taken(payload.len());
            }
        }
        Some(event)
    }

    /// A transport link is up (writable): say hello. A link already known because its data
    /// overtook the transport's notice keeps its state and becomes writable.
    pub fn handle_link_up(&mut self, link: L) {
        match self.links.get_mut(&link) {
            Some(l) => l.set_writable(),
            None => self.add_link(link, true),
        }
    }

    fn add_link(&mut self, link: L, writable: bool) {
        let nonce = self
            .local
            .key
            .nonce(self.local.incarnation, self.links_made);
        self.links_made += 1;
        let (ours, theirs) = link.ends();
        let hello = hello_record(&self.local, nonce);
        let mut new = Link::new(hello, LinkBinding::new(ours, theirs), writable);
        // Sockets that join and say nothing (or very slowly) cost one link each until their
        // handshake times out; past this many at once, new ones are refused at the door (a
        // tombstone: nothing is sent, what comes is ignored) until some finish or time out.
        let pending = self.links.values().filter(|l| l.in_handshake()).count();
        if pending >= self.max_pending_links() {
            new.refuse();
        }
        self.links.insert(link, new);
    }

    /// The most links in their handshake at once: a few per possible peer (each can bring
    /// several new links while it and others re-open sockets), never fewer than 64.
    fn max_pending_links(&self) -> usize {
        self.max_peers.saturating_mul(4).max(64)
    }

    /// A transport link is gone.
    pub fn handle_link_down(&mut self, link: L, now: Duration) {
        let Some(old) = self.links.remove(&link) else {
            return;
        };
        if let Some(peer) = old.peer()
            && self.peers.get(&peer).is_some_and(|r| r.link == Some(link))
        {
            // A standby the peer used lately takes over; otherwise the peer is away.
            let liveness = self.policy.liveness_timeout;
            let standby = self
                .links
                .iter()
                .filter(|(_, l)| {
                    l.peer() == Some(peer)
                        && l.writable()
                        && now.saturating_sub(l.last_heard()) < liveness
                })
                .max_by_key(|(_, l)| l.last_heard())
                .map(|(id, _)| *id);
            match (standby, self.peers.get_mut(&peer)) {
                (Some(standby), Some(remote)) => remote.link = Some(standby),
                _ => self.peer_lost(peer, now),
            }
        }
    }

    /// One packet from a link.
    pub fn handle_packet(&mut self, link: L, packet: Bytes, now: Duration) {
        match self.links.get(&link).map(Link::state) {
            Some(LinkState::Closed) => return,
            Some(_) => {}
            // Data can overtake the transport's "connected" notice: the link exists, but we
            // cannot write to it until the notice comes.
            None => {
                self.add_link(link, false);
                // Refused at the door (too many links in their handshake): not even an error.
                if matches!(
                    self.links.get(&link).map(Link::state),
                    Some(LinkState::Closed)
                ) {
                    return;
                }
            }
        }
        let len = packet.len();
        let records = match Records::checked(packet) {
            Ok(r) => r,
            Err(e) => return self.fail_link(link, e.into()),
        };
        let mut counted = false;
        for record in records {
            let record = match record {
                Ok(r) => r,
                Err(e) => return self.fail_link(link, e.into()),
            };
            let Some(l) = self.links.get_mut(&link) else {
                return;
            };
            if matches!(record, Record::Hello(_) | Record::Auth(_))
                && !matches!(l.state(), LinkState::Bound(_))
                && !l.count_handshake_record()
            {
                // A handshake flood: the link ends quietly (no proof, nobody to name).
                self.close_link(link, None);
                return;
            }
            let phase = match l.state() {
                LinkState::AwaitingHello { .. } => Phase::Hello,
                LinkState::AwaitingAuth { hello, .. } => Phase::Auth(*hello),
                LinkState::Verified(v) => Phase::Verified(v.wait),
                LinkState::Bound(peer) => Phase::Bound(*peer),
                LinkState::Closed => return,
            };
            let (peer, record) = match (phase, record) {
                (_, Record::ForeignHello(theirs)) => {
                    self.events.push_back(RoomEvent::Error {
                        peer: None,
                        error: PeerErrorKind::VersionMismatch {
                            ours: PROTOCOL_VERSION,
                            theirs,
                        },
                    });
                    self.close_link(link, Some(ByeReason::Incompatible));
                    return;
                }
                (Phase::Hello, Record::Hello(hello)) => {
                    self.on_hello(link, hello);
                    continue;
                }
                (Phase::Auth(hello), Record::Hello(again)) => {
                    if hello != again {
                        return self
                            .fail_link(link, PeerErrorKind::Violation(Violation::SecondHello));
                    }
                    if let Some(l) = self.links.get_mut(&link) {
                        l.hello_repeated();
                    }
                    continue;
                }
                (Phase::Auth(_), Record::Auth(auth)) => {
                    self.on_auth(link, auth, now);
                    continue;
                }
                (Phase::Verified(Wait::Welcome), Record::Welcome) => {
                    self.bind(link, now);
                    continue;
                }
                (Phase::Hello | Phase::Auth(_) | Phase::Verified(_), Record::Bye(reason)) => {
                    let from_host = match self.links.get(&link).map(Link::state) {
                        Some(LinkState::AwaitingAuth { hello, .. }) => hello.role == 1,
                        Some(LinkState::Verified(v)) => v.role == Role::Host,
                        _ => false,
                    };
                    if from_host && self.local.role == Role::Joiner && self.host().is_none() {
                        self.refused_by_host = true;
                    }
                    // Our own host, proven on this link, kicked us while we were away: the
                    // session is over (anyone else's word would not be taken for it).
                    let kicked_by_our_host = match self.links.get(&link).map(Link::state) {
                        Some(LinkState::Verified(v)) => {
                            reason == ByeReason::Kicked && Some(v.peer) == self.host()
                        }
                        _ => false,
                    };
                    self.events.push_back(RoomEvent::Error {
                        peer: None,
                        error: bye_error(reason),
                    });
                    self.close_link(link, None);
                    if kicked_by_our_host && let Some(host) = self.host() {
                        self.remove_peer(host, DisconnectReason::Refused);
                        self.refused_by_host = true;
                    }
                    return;
                }
                // A verified peer waiting to be bound: its repeats and any early data are
                // ignored (reliable data is resent once we bind).
                (Phase::Verified(_), _) => continue,
                // The peer has bound us but part of its handshake was lost (the first messages
                // on a fresh connection can be): ignore until it comes again. Nothing reliable
                // comes before our first Ack, and `handshake_timeout` bounds how long this
                // lasts.
                (Phase::Hello | Phase::Auth(_), _) => {
                    if let Some(l) = self.links.get_mut(&link) {
                        l.data_before_hello();
                    }
                    continue;
                }
                (Phase::Bound(peer), record) => {
                    if self.is_away(peer) && !self.wake(link, peer, now) {
                        continue;
                    }
                    self.heard_on(link, peer, now);
                    (peer, record)
                }
            };
            match record {
                Record::Hello(hello) => {
                    let same = self.peers.get(&peer).is_some_and(|r| {
                        r.key.0 == hello.public_key && r.incarnation == hello.incarnation
                    });
                    if !same {
                        return self
                            .fail_link(link, PeerErrorKind::Violation(Violation::SecondHello));
                    }
                    // A repeat: the peer lacks our handshake. Answer with ours, unless we
                    // already know it has it.
                    if let Some(remote) = self.peers.get_mut(&peer) {
                        remote.session.heard_from(now);
                    }
                    if let Some(l) = self.links.get_mut(&link) {
                        l.hello_repeated();
                    }
                }
                // Repeats of a handshake that is done.
                Record::Auth(_) | Record::Welcome => {}
                Record::ForeignHello(_) => {}
                Record::Bye(reason) => {
                    self.close_link(link, None);
                    // Refused on this link only (a new link over its budget, say) while
                    // another one still carries the session: that one goes on.
                    if reason != ByeReason::Left
                        && let Some(other) = self.other_bound_link(peer, link)
                    {
                        if let Some(remote) = self.peers.get_mut(&peer)
                            && remote.link == Some(link)
                        {
                            remote.link = Some(other);
                        }
                        return;
                    }
                    if reason != ByeReason::Left {
                        self.events.push_back(RoomEvent::Error {
                            peer: Some(peer),
                            error: bye_error(reason),
                        });
                    }
                    let why = if reason == ByeReason::Left {
                        DisconnectReason::Left
                    } else {
                        DisconnectReason::Refused
                    };
                    self.remove_peer(peer, why);
                    return;
                }
                record => {
                    if let Some(l) = self.links.get_mut(&link) {
                        l.session_data();
                    }
                    if let Err(e) = self.check_kind(&record) {
                        return self.fail_link(link, e);
                    }
                    let Some(remote) = self.peers.get_mut(&peer) else {
                        return;
                    };
                    if !counted {
                        remote.session.count_in(len);
                        counted = true;
                    }
                    let size = match &record {
                        Record::Reliable { payload, .. }
                        | Record::Unreliable { payload, .. }
                        | Record::Sequenced { payload, .. } => Some(payload.len()),
                        Record::Fragment { chunk, .. } => Some(chunk.len()),
                        _ => None,
                    };
                    if let Some(size) = size
                        && let Err((budget, limit)) = remote.meter.take(now, size)
                    {
                        return self.fail_link(link, PeerErrorKind::OverBudget { budget, limit });
                    }
                    // What the record handed up, messages and controls in one list, acted on
                    // in order (a control never overtakes the messages sent before it).
                    let mut inbound = std::mem::take(&mut self.inbound);
                    let result = remote
                        .session
                        .handle_record(record, now, &mut |m: Inbound| inbound.push(m));
                    if let Err(e) = result {
                        return self.fail_link(link, e);
                    }
                    for m in inbound.drain(..) {
                        let result = match m.kind {
                            CONTROL_KIND => self.control_from(peer, &m.payload, now),
                            _ if self.star.on() => self.route_inbound(peer, m),
                            _ => {
                                self.events.push_back(RoomEvent::Message {
                                    from: peer,
                                    kind: m.kind,
                                    payload: m.payload,
                                });
                                Ok(())
                            }
                        };
                        if let Err(e) = result {
                            return self.fail_link(link, e);
                        }
                    }
                    self.inbound = inbound;
                }
            }
        }
    }

    /// A control message `peer` handed up: taken, decoded, acted on. `Err`: drop `peer`.
    fn control_from(
        &mut self,
        peer: PeerId,
        payload: &[u8],
        now: Duration,
    ) -> Result<(), PeerErrorKind> {
        if let Some(remote) = self.peers.get_mut(&peer) {
            remote.session.handle_taken(payload.len());
        }
        match Control::decode(payload) {
            Some(c) => self.on_control(peer, c, now),
            None => Err(PeerErrorKind::Violation(Violation::BadControl)),
        }
    }

    /// A packet from `peer` on a link bound to it. Of two peers, the one with the smaller id
    /// chooses the link both use (the one it bound last); the other follows, to the link that
    /// packets from it come on. So they settle on one link whatever order they bound new links
    /// in, and the other goes quiet and is closed (see [`Room::bind`]).
    fn heard_on(&mut self, link: L, peer: PeerId, now: Duration) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.heard(now);
        let writable = l.writable();
        if peer < self.local.id
            && writable
            && let Some(remote) = self.peers.get_mut(&peer)
            && remote.away_since.is_none()
        {
            remote.link = Some(link);
        }
    }

    /// The peer's `Hello` on a link still waiting for it.
    fn on_hello(&mut self, link: L, hello: Hello) {
        if hello.public_key == self.local.key.public_key().0
            && hello.incarnation == self.local.incarnation
        {
            // Our own other socket (an old one draining while a new one registers), or our
            // own Hello played back to us: either way not a link to use.
            self.close_link(link, None);
            return;
        }
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let mut their_hello = BytesMut::with_capacity(wire::HELLO_LEN);
        wire::encode_hello(&mut their_hello, &hello);
        let auth = make_auth(
            &self.local.key,
            l.binding(),
            l.our_hello(),
            &their_hello,
            self.access.join_payload.clone(),
            self.access.secret.as_ref(),
        );
        let mut record = BytesMut::new();
        wire::encode_auth(&mut record, &auth);
        l.got_hello(hello, &record);
    }

    /// The peer's `Auth` on a link that has its `Hello`: its proof, then admission.
    fn on_auth(&mut self, link: L, auth: Auth, now: Duration) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let LinkState::AwaitingAuth { hello, .. } = l.state() else {
            return;
        };
        let hello = *hello;
        let mut their_hello = BytesMut::with_capacity(wire::HELLO_LEN);
        wire::encode_hello(&mut their_hello, &hello);
        let transcript = Transcript::new(l.binding(), &their_hello, l.our_hello(), &auth.payload);
        let key = PublicKey(hello.public_key);
        if !key.verify(&transcript, &auth.signature) {
            // Nobody to name: the id it claims is not proven.
            self.events.push_back(RoomEvent::Error {
                peer: None,
                error: PeerErrorKind::BadProof,
            });
            self.close_link(link, Some(ByeReason::BadProof));
            return;
        }
        let peer = key.peer_id();
        let secret_ok = match (&self.access.secret, &auth.secret_proof) {
            (None, None) => true,
            (Some(secret), Some(proof)) => secret.check(&transcript, proof),
            _ => false,
        };
        if !secret_ok {
            if hello.role == Role::Host.to_wire() && self.local.role == Role::Joiner {
                self.refused_by_host = self.host().is_none();
            }
            self.events.push_back(RoomEvent::Error {
                peer: Some(peer),
                error: PeerErrorKind::RoomSecretMismatch,
            });
            self.close_link(link, Some(ByeReason::RoomSecret));
            return;
        }
        // Checked once the peer is proven, so that the error can name it.
        if let Err(Admission::Refuse { error, bye }) = compatible(&self.local, &hello) {
            self.events.push_back(RoomEvent::Error {
                peer: Some(peer),
                error,
            });
            self.close_link(link, Some(bye));
            return;
        }
        let role = Role::from_wire(hello.role);
        let claim = Claim {
            peer,
            key,
            role,
            incarnation: hello.incarnation,
        };
        let known = self.peers.get_mut(&peer).map(|r| Known {
            key: r.key,
            incarnation: r.incarnation,
            away: r.away_since.is_some(),
            recent_links: r.recent_links(now),
        });
        let facts = RoomFacts {
            host: self.host().map(|h| (h, self.away_since(h).is_some())),
            known,
            peers: self.peers.len(),
            max_peers: self.max_peers,
            max_links_per_minute: self.access.budgets.links_per_minute,
            kicked: self.kicked.get(&peer).is_some_and(|until| *until > now),
            epoch: self.succession.epoch(),
        };
        let (replaces_host, resumes) = match admit(&self.local, &claim, facts) {
            Admission::OwnSocket => {
                self.close_link(link, None);
                return;
            }
            Admission::Refuse { error, bye } => {
                self.events.push_back(RoomEvent::Error {
                    peer: Some(peer),
                    error,
                });
                self.close_link(link, Some(bye));
                return;
            }
            Admission::Accept {
                replaces_host,
                resumes,
            } => (replaces_host, resumes),
        };
        let wait = match (self.local.role, role) {
            (Role::Host, _) if self.access.review && !resumes => Some(Wait::Decision),
            (Role::Host, _) => None,
            // A known session resumes with a peer that hosted when it made its `Hello`, but
            // not any more (the room moved): nothing to wait for.
            (Role::Joiner, Role::Host) if resumes && self.host() != Some(peer) => None,
            (Role::Joiner, Role::Host) => Some(Wait::Welcome),
            // Star: joiners reach each other through the host only (a mesh-wide signaling
            // server may still link them: the link goes, quietly).
            (Role::Joiner, Role::Joiner) if self.star.on() => {
                self.close_link(link, None);
                return;
            }
            (Role::Joiner, Role::Joiner) if resumes || self.roster.contains_key(&peer) => None,
            (Role::Joiner, Role::Joiner) => Some(Wait::Roster),
        };
        let payload = auth.payload;
        if let Some(l) = self.links.get_mut(&link) {
            l.verify(Verified {
                peer,
                key,
                role,
                incarnation: hello.incarnation,
                replaces_host,
                wait: wait.unwrap_or(Wait::Roster),
                since: now,
            });
        }
        match wait {
            None => self.bind(link, now),
            Some(Wait::Decision) => self
                .events
                .push_back(RoomEvent::JoinRequest { peer, payload }),
            Some(_) => {}
        }
    }

    /// Host, reviewing joiners: admits `peer`, which asked with a
    /// [`RoomEvent::JoinRequest`]. `false` if no such request is waiting (it timed out, or the
    /// joiner went away).
    pub fn admit_joiner(&mut self, peer: PeerId, now: Duration) -> bool {
        match self.waiting(peer) {
            Some(link) => {
                self.bind(link, now);
                true
            }
            None => false,
        }
    }

    /// Host, reviewing joiners: refuses `peer` (it is told it was not admitted). `false` if no
    /// such request is waiting.
    pub fn refuse_joiner(&mut self, peer: PeerId) -> bool {
        match self.waiting(peer) {
            Some(link) => {
                self.close_link(link, Some(ByeReason::NotAdmitted));
                true
            }
            None => false,
        }
    }

    fn waiting(&self, peer: PeerId) -> Option<L> {
        self.links.iter().find_map(|(id, l)| {
            l.verified()
                .filter(|v| v.peer == peer && v.wait == Wait::Decision)
                .map(|_| *id)
        })
    }

    /// Binds the verified peer waiting on `link`, which becomes the link we send it on.
    ///
    /// A peer that resumes while its old link is still up keeps that link as a *standby*: what
    /// comes on it is taken, nothing is sent on it, and it is closed once unused for
    /// `liveness_timeout`. Two peers that both open new sockets get several new links between
    /// them and can bind them in different orders; closing the link the other side still sends
    /// on would cut them off from each other (see [`Room::heard_on`] for how they settle on
    /// one).
    fn bind(&mut self, link: L, now: Duration) {
        let Some(v) = self.links.get(&link).and_then(Link::verified).cloned() else {
            return;
        };
        let peer = v.peer;
        if let Some(host) = v.replaces_host {
            // Facts may have changed while it waited for its welcome: the room moved to
            // another host, or ours came back. A second host is not taken then.
            if self.host() != Some(host) || self.away_since(host).is_none() {
                self.events.push_back(RoomEvent::Error {
                    peer: Some(peer),
                    error: PeerErrorKind::DuplicateHost,
                });
                self.close_link(link, Some(ByeReason::Refused));
                return;
            }
            self.remove_peer(host, DisconnectReason::Replaced);
            self.roster.clear();
        }
        // Facts may have changed while it waited: a session it does not resume is replaced,
        // and one bound meanwhile on another link (a peer with two sockets in the room, both
        // waiting for the host's word) is the same session.
        let resumes = self
            .peers
            .get(&peer)
            .is_some_and(|r| r.incarnation == v.incarnation);
        if !resumes && self.peers.contains_key(&peer) {
            self.remove_peer(peer, DisconnectReason::Replaced);
        }
        let welcome = self.local.role == Role::Host;
        if let Some(l) = self.links.get_mut(&link) {
            l.bind(peer, welcome, now);
        }
        if resumes {
            let mut away_since = None;
            if let Some(remote) = self.peers.get_mut(&peer) {
                away_since = remote.away_since.take();
                remote.link = Some(link);
                remote.linked_at.push_back(now);
                // Back from away: the streams resume from the peer's first ack on this link.
                // Only moved (the old link still up, and still delivering): the streams go on
                // as they are; restarting them would take a late ack from the old link for a
                // peer resuming behind what it acknowledged.
                if away_since.is_some() {
                    remote.session.handle_link_up(now);
                } else {
                    remote.session.handle_link_moved(now);
                }
            }
            // A peer that was not away just moved to a new link: nothing to tell.
            if let Some(since) = away_since {
                self.events.push_back(RoomEvent::Reconnected {
                    peer,
                    downtime: now.saturating_sub(since),
                });
                self.tell_joiners(peer, Control::Away { peer, away: false });
            }
        } else {
            let mut session = Session::new(peer, self.config.clone(), now);
            session.handle_link_up(now);
            self.peers.insert(
                peer,
                Remote {
                    role: v.role,
                    key: v.key,
                    incarnation: v.incarnation,
                    link: Some(link),
                    away_since: None,
                    session,
                    meter: RateMeter::new(&self.access.budgets, now),
                    linked_at: VecDeque::from([now]),
                    probe_at: now,
                },
            );
            self.events
                .push_back(RoomEvent::Connected { peer, role: v.role });
        }
        if self.local.role == Role::Host {
            self.announce(peer, link, resumes);
        }
    }

    /// Host: tells every joiner that `peer` (on `link`) is admitted, and `peer` whom else is
    /// (and, after a migration, at what epoch we took the room).
    fn announce(&mut self, peer: PeerId, link: L, resumed: bool) {
        if self.star.on() {
            // A resumed joiner's stream still holds everything it was told.
            if !resumed {
                self.announce_member(peer);
            }
            return;
        }
        let epoch = self.succession.epoch();
        if epoch > 0
            && let Some(r) = self.peers.get_mut(&peer)
        {
            let claim = Control::Claim { epoch }.encode();
            let _ = r.session.send(CONTROL_KIND, &claim, Delivery::Reliable);
        }
        let (_, socket) = link.ends();
        let news = Control::Admit { peer, socket }.encode();
        let others: Vec<(PeerId, Option<L>)> = self
            .peers
            .iter()
            .filter(|(p, _)| **p != peer)
            .map(|(p, r)| (*p, r.link))
            .collect();
        for (other, other_link) in others {
            if let Some(r) = self.peers.get_mut(&other) {
                let _ = r.session.send(CONTROL_KIND, &news, Delivery::Reliable);
            }
            let socket = other_link.map_or(0, |l| l.ends().1);
            let old = Control::Admit {
                peer: other,
                socket,
            }
            .encode();
            if let Some(r) = self.peers.get_mut(&peer) {
                let _ = r.session.send(CONTROL_KIND, &old, Delivery::Reliable);
            }
        }
    }

    /// A control message from `from`: our host's word on who is in the room, or a word on
    /// who hosts it (see [`migration`]). `Err`: drop `from`.
    fn on_control(
        &mut self,
        from: PeerId,
        control: Control,
        now: Duration,
    ) -> Result<(), PeerErrorKind> {
        let from_our_host = self.local.role == Role::Joiner && self.host() == Some(from);
        match control {
            Control::Admit { peer, socket } if from_our_host => {
                self.roster.insert(peer, socket);
                let waiting: Vec<L> = self
                    .links
                    .iter()
                    .filter(|(_, l)| {
                        l.verified()
                            .is_some_and(|v| v.peer == peer && v.wait == Wait::Roster)
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for link in waiting {
                    self.bind(link, now);
                }
            }
            Control::Evict { peer } if from_our_host => {
                self.roster.remove(&peer);
                if peer != self.local.id
                    && self.peers.get(&peer).is_some_and(|r| r.role != Role::Host)
                {
                    if let Some(link) = self.peers.get(&peer).and_then(|r| r.link) {
                        self.close_link(link, None);
                    }
                    self.remove_peer(peer, DisconnectReason::Evicted);
                }
            }
            Control::Joined { .. } | Control::Away { .. } | Control::Left { .. } => {
                return self.on_member_control(from_our_host, control, now);
            }
            other => return self.on_succession_control(from, from_our_host, other, now),
        }
        Ok(())
    }

    /// Ends a link because of `error` (from the peer on it, known or not).
    fn fail_link(&mut self, link: L, error: PeerErrorKind) {
        let peer = self.links.get(&link).and_then(Link::peer);
        let bye = match error {
            PeerErrorKind::OverBudget { .. } => ByeReason::OverBudget,
            _ => ByeReason::ProtocolViolation,
        };
        self.events.push_back(RoomEvent::Error { peer, error });
        self.close_link(link, Some(bye));
        if let Some(peer) = peer {
            self.remove_peer(peer, DisconnectReason::ProtocolViolation);
            self.evict(peer);
        }
    }

    /// Host: tells every joiner that `peer` is out of the room.
    fn evict(&mut self, peer: PeerId) {
        // (A star host's joiners heard it already, with the reason: see `Room::member_gone`.)
        if self.local.role != Role::Host || self.star.on() {
            return;
        }
        let news = Control::Evict { peer }.encode();
        for remote in self.peers.values_mut() {
            let _ = remote.session.send(CONTROL_KIND, &news, Delivery::Reliable);
        }
    }

    fn close_link(&mut self, link: L, bye: Option<ByeReason>) {
        if let Some(l) = self.links.get_mut(&link) {
            l.close(bye);
        }
    }

    fn remove_peer(&mut self, peer: PeerId, reason: DisconnectReason) {
        if let Some(remote) = self.peers.remove(&peer) {
            for link in self.links_of(peer) {
                self.close_link(link, None);
            }
            self.events
                .push_back(RoomEvent::Disconnected { peer, reason });
            if self.star.on() {
                match self.local.role {
                    Role::Host => self.member_gone(peer, reason),
                    Role::Joiner if remote.role == Role::Host => self.members_lost(),
                    Role::Joiner => {}
                }
            }
        }
    }

    /// Drops a peer from above (for example, a payload that does not decode). A star joiner
    /// cannot drop a fellow joiner from the room (the host holds it): it stops listening to it
    /// (`Disconnected` here; what the host relays from it afterwards is ignored).
    pub fn drop_peer(&mut self, peer: PeerId, error: PeerErrorKind) {
        if self.is_member(peer) {
            self.mute_member(peer, error);
            return;
        }
        let link = self.peers.get(&peer).and_then(|r| r.link);
        match link {
            Some(link) if self.links.contains_key(&link) => self.fail_link(link, error),
            _ => {
                self.events.push_back(RoomEvent::Error {
                    peer: Some(peer),
                    error,
                });
                self.remove_peer(peer, DisconnectReason::ProtocolViolation);
                self.evict(peer);
            }
        }
    }

    /// Says goodbye to everyone and forgets them. A host with two or more live joiners hands
    /// the room over first (to the one with the lowest id; see [`Room::hand_over`]) unless
    /// migration is off
    /// ([`ResumePolicy::host_grace`]). What our sessions still have to send goes out before
    /// the goodbyes.
    pub fn leave(&mut self, now: Duration) {
        let live_joiners = self
            .peers
            .values()
            .filter(|r| r.role == Role::Joiner && r.away_since.is_none())
            .count();
        // (A single joiner would host a room of one: nobody to keep playing with.)
        if self.local.role == Role::Host
            && self.policy.host_grace.is_some()
            && live_joiners >= 2
            && let Some(heir) = self.heir()
        {
            self.hand_over(heir);
        }
        for remote in self.peers.values_mut() {
            if let Some(link) = remote
                .link
                .filter(|l| self.links.get(l).is_some_and(Link::ready))
            {
                let farewell = &mut self.farewell;
                remote
                    .session
                    .poll_farewell(now, &mut |ch, p| farewell.push((link, ch, p)));
            }
        }
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            for link in self.links_of(peer) {
                self.close_link(link, Some(ByeReason::Left));
            }
            self.remove_peer(peer, DisconnectReason::LocalLeave);
        }
    }

    /// Host: removes `peer` from the room. Its links end with a `Bye` (it sees
    /// [`PeerErrorKind::RefusedByPeer`]`(`[`ByeReason::Kicked`]`)` and leaves), every other
    /// joiner is told (it sees [`DisconnectReason::Evicted`]), and we see
    /// [`DisconnectReason::Kicked`]. What was queued for the peer and not yet sent is dropped.
    /// Until `resume_timeout` has passed the peer is refused if it tries again (with
    /// [`PeerErrorKind::KickedPeerReturned`] here, `Bye(Kicked)` there): a peer that was away
    /// when kicked hears it then.
    /// False (and nothing done) on a joiner, or for a peer not in the room.
    pub fn kick(&mut self, peer: PeerId, now: Duration) -> bool {
        if self.local.role != Role::Host || !self.peers.contains_key(&peer) {
            return false;
        }
        self.kicked.insert(peer, now + self.policy.resume_timeout);
        for link in self.links_of(peer) {
            self.close_link(link, Some(ByeReason::Kicked));
        }
        self.remove_peer(peer, DisconnectReason::Kicked);
        self.evict(peer);
        true
    }

    /// Queues a message for `peer`.
    pub fn send(
        &mut self,
        peer: PeerId,
        kind: u32,
        payload: &[u8],
        delivery: Delivery,
    ) -> Result<(), SendError> {
        if self.star.on() {
            return self.star_send(peer, kind, payload, delivery);
        }
        let remote = self
            .peers
            .get_mut(&peer)
            .ok_or(SendError::UnknownPeer(peer))?;
        remote.session.send(kind, payload, delivery)
    }

    /// Queues a message for every peer in the room; `failed` hears of each refusal.
    pub fn broadcast(
        &mut self,
        kind: u32,
        payload: &[u8],
        delivery: Delivery,
        failed: &mut impl FnMut(PeerId, SendError),
    ) {
        if self.star.on() {
            return self.star_broadcast(kind, payload, delivery, failed);
        }
        for (peer, remote) in self.peers.iter_mut() {
            if let Err(e) = remote.session.send(kind, payload, delivery) {
                failed(*peer, e);
            }
        }
    }

    /// Builds every packet due now; `out(link, channel, packet)` sends one.
    pub fn poll_transmit(&mut self, now: Duration, out: &mut impl FnMut(L, Channel, Bytes)) {
        self.flush_backlog();
        for (link, channel, packet) in self.farewell.drain(..) {
            out(link, channel, packet);
        }
        for (id, link) in self.links.iter_mut() {
            if let Some(packet) = link.poll_transmit(now) {
                out(*id, Channel::Reliable, packet);
            }
        }
        // Away peers: a ping on each dormant link now and then, which wakes the session there
        // if the connection outlived the outage (the peer answers on it; see `Room::wake`).
        let probes: Vec<(PeerId, L)> = self
            .peers
            .iter()
            .filter(|(_, r)| r.away_since.is_some() && now >= r.probe_at)
            .flat_map(|(p, _)| {
                self.links
                    .iter()
                    .filter(move |(_, l)| l.peer() == Some(*p) && l.ready())
                    .map(move |(id, _)| (*p, *id))
            })
            .collect();
        for (peer, link) in probes {
            if let Some(remote) = self.peers.get_mut(&peer) {
                remote.probe_at = now + self.config.ping_interval;
                out(link, Channel::Reliable, remote.session.wake_probe(now));
            }
        }
        for remote in self.peers.values_mut() {
            let link = remote
                .link
                .filter(|l| self.links.get(l).is_some_and(Link::ready));
            match link {
                Some(link) => remote
                    .session
                    .poll_transmit(now, true, &mut |ch, p| out(link, ch, p)),
                None => remote.session.poll_transmit(now, false, &mut |_, _| {}),
            }
        }
    }
}

/// Where a link's handshake stands, as far as one record's handling needs to know.
#[derive(Clone, Copy)]
enum Phase {
    Hello,
    Auth(Hello),
    Verified(Wait),
    Bound(PeerId),
}

/// Our `Hello` on a link with `nonce`, encoded.
fn hello_record(local: &LocalIdentity, nonce: [u8; wire::NONCE_LEN]) -> Bytes {
    let mut out = BytesMut::with_capacity(wire::HELLO_LEN);
    wire::encode_hello(
        &mut out,
        &Hello {
            version: PROTOCOL_VERSION,
            protocol_hash: local.protocol_hash,
            public_key: local.key.public_key().0,
            nonce,
            incarnation: local.incarnation,
            role: local.role.to_wire(),
        },
    );
    out.freeze()
}

fn bye_error(reason: ByeReason) -> PeerErrorKind {
    match reason {
        ByeReason::RoomFull => PeerErrorKind::RoomFull,
        ByeReason::RoomSecret => PeerErrorKind::RoomSecretMismatch,
        ByeReason::NotAdmitted => PeerErrorKind::NotAdmitted,
        other => PeerErrorKind::RefusedByPeer(other),
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{connect, identity, peer, pump};
    use super::*;

    const HASH: u64 = 0xabcd;

    #[test]
    fn heartbeats_come_at_least_four_times_per_liveness_timeout() {
        let policy = |liveness_ms| ResumePolicy {
            liveness_timeout: Duration::from_millis(liveness_ms),
            ..ResumePolicy::default()
        };
        let configured = SessionConfig::default().ping_interval; // 250 ms
        // Default: the configured interval already fits.
        assert_eq!(policy(1000).heartbeat_interval(configured), configured);
        // A shorter liveness timeout shortens the interval with it (it used to follow the
        // handshake timeout instead, leaving 1.6 heartbeats per 400 ms timeout).
        assert_eq!(
            policy(400).heartbeat_interval(configured),
            Duration::from_millis(100)
        );
        // A longer one keeps the configured interval, and there is a floor.
        assert_eq!(policy(10_000).heartbeat_interval(configured), configured);
        assert_eq!(
            policy(20).heartbeat_interval(configured),
            Duration::from_millis(10)
        );
    }

    /// The events of one peer connecting.
    fn connected(id: u128, role: Role) -> Vec<RoomEvent> {
        vec![RoomEvent::Connected {
            peer: peer(id),
            role,
        }]
    }

    fn room(id: u128, role: Role) -> Room<u32> {
        Room::new(identity(id, role, HASH), SessionConfig::default(), 2)
    }

    fn events(r: &mut Room<u32>) -> Vec<RoomEvent> {
        std::iter::from_fn(|| r.poll_event()).collect()
    }

    fn connect_at(a: &mut Room<u32>, b: &mut Room<u32>, la: u32, lb: u32, now: Duration) {
        a.handle_link_up(la);
        b.handle_link_up(lb);
        for _ in 0..3 {
            pump(a, la, b, lb, now);
            pump(b, lb, a, la, now);
        }
    }

    fn received(r: &mut Room<u32>, got: &mut Vec<u8>) {
        while let Some(e) = r.poll_event() {
            if let RoomEvent::Message { payload, .. } = e {
                got.push(payload[0]);
            }
        }
    }

    /// Runs two rooms the way the protocol loop does: a room runs only when a packet arrives
    /// for it or its `poll_timeout` is due. Packets take `latency`. Returns each room's wakeups.
    fn run_on_deadlines(
        rooms: &mut [Room<u32>; 2],
        links: [u32; 2],
        from: Duration,
        until: Duration,
        latency: Duration,
    ) -> [u32; 2] {
        let mut in_transit: Vec<(Duration, usize, Bytes)> = Vec::new();
        let mut wakeups = [0; 2];
        let mut now = from;
        while now <= until {
            for i in 0..2 {
                let mut woke = false;
                in_transit.retain(|(at, to, p)| {
                    if *to == i && *at <= now {
                        rooms[i].handle_packet(links[i], p.clone(), now);
                        woke = true;
                        false
                    } else {
                        true
                    }
                });
                if woke || rooms[i].poll_timeout(now).is_some_and(|t| t <= now) {
                    wakeups[i] += 1;
                    rooms[i].handle_timeout(now);
                    rooms[i].poll_transmit(now, &mut |_, _, p| {
                        in_transit.push((now + latency, 1 - i, p))
                    });
                }
            }
            let next = rooms
                .iter()
                .filter_map(|r| r.poll_timeout(now))
                .chain(in_transit.iter().map(|(at, _, _)| *at))
                .min()
                .expect("a ping is always scheduled");
            assert!(
                next > now,
                "a deadline that does not move would spin the loop"
            );
            now = next;
        }
        wakeups
    }

    #[test]
    fn driven_only_at_its_deadlines_a_pair_connects_delivers_and_stays_alive() {
        let mut rooms = [room(1, Role::Host), room(2, Role::Joiner)];
        rooms[0].handle_link_up(10);
        rooms[1].handle_link_up(20);
        let ms = Duration::from_millis;
        run_on_deadlines(&mut rooms, [10, 20], ms(0), ms(100), ms(5));
        assert!(rooms[1].host().is_some() && rooms[0].peers().count() == 1);
        // 200 KiB, far more than the in-flight window: acks turn it as they arrive.
        let big = vec![7u8; 200 * 1024];
        rooms[0].send(peer(2), 1, &big, Delivery::Reliable).unwrap();
        let wakeups = run_on_deadlines(&mut rooms, [10, 20], ms(101), ms(10_000), ms(5));
        let events = events(&mut rooms[1]);
        assert!(
            events.contains(&RoomEvent::Message {
                from: peer(1),
                kind: 1,
                payload: Bytes::from(big)
            }),
            "{events:?}"
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, RoomEvent::Reconnecting { .. })),
            "heartbeats on deadlines keep an idle link alive: {events:?}"
        );
        // Idle, a room wakes for its own ping and for the peer's ping and pong: about 12 times
        // a second with the default 250 ms interval, not once per loop turn.
        assert!(
            wakeups.iter().all(|&w| w < 200),
            "{wakeups:?} wakeups in 10 s"
        );
    }

    #[test]
    fn data_that_overtakes_the_link_up_notice_is_not_undone_by_it() {
        let mut host = room(1, Role::Host);
        let mut joiner = room(2, Role::Joiner);
        // The host's transport reports its link first; the joiner's reports it only after the
        // host's Hello has already arrived (matchbox's peer-state and data channels race).
        host.handle_link_up(10);
        pump(&mut host, 10, &mut joiner, 20, Duration::ZERO);
        // Until its notice, matchbox would drop what the joiner sends on the link: its Hello
        // and Auth wait.
        let mut early = 0;
        joiner.poll_transmit(Duration::ZERO, &mut |_, _, _| early += 1);
        assert_eq!(early, 0, "nothing goes out on a link not reported up");
        joiner.handle_link_up(20);
        assert!(
            joiner.link_in_use(20),
            "the late notice must not reset the link"
        );
        for _ in 0..4 {
            pump(&mut joiner, 20, &mut host, 10, Duration::ZERO);
            pump(&mut host, 10, &mut joiner, 20, Duration::ZERO);
        }
        assert_eq!(events(&mut host), connected(2, Role::Joiner));
        assert_eq!(events(&mut joiner), connected(1, Role::Host));
        joiner.send(peer(1), 1, &[8], Delivery::Reliable).unwrap();
        host.send(peer(2), 1, &[9], Delivery::Reliable).unwrap();
        pump(&mut joiner, 20, &mut host, 10, Duration::ZERO);
        pump(&mut host, 10, &mut joiner, 20, Duration::ZERO);
        let (mut got_host, mut got_joiner) = (vec![], vec![]);
        received(&mut host, &mut got_host);
        received(&mut joiner, &mut got_joiner);
        assert_eq!((got_host, got_joiner), (vec![8], vec![9]));
    }

    #[test]
    fn a_link_that_never_brings_a_hello_is_ended_after_the_handshake_timeout() {
        let s = Duration::from_secs(1);
        let mut joiner = room(2, Role::Joiner);
        // Link 20: up, our Hello goes out, nothing ever comes back (the other direction is
        // dead).
        joiner.handle_link_up(20);
        joiner.poll_transmit(Duration::ZERO, &mut |_, _, _| {});
        joiner.handle_timeout(Duration::ZERO);
        joiner.handle_timeout(4 * s);
        assert_eq!(joiner.take_stalled_handshakes(), 0);
        assert!(joiner.link_in_use(20));
        joiner.handle_timeout(5 * s + s / 10);
        assert_eq!(joiner.take_stalled_handshakes(), 1);
        assert_eq!(joiner.take_stalled_handshakes(), 0, "counted once");
        assert!(!joiner.link_in_use(20), "tombstoned");
        assert_eq!(
            events(&mut joiner),
            vec![RoomEvent::Error {
                peer: None,
                error: PeerErrorKind::HandshakeTimeout { after: 5 * s }
            }]
        );
        // Whatever arrives later on the dead link is ignored, and nothing is sent on it.
        joiner.handle_packet(20, Bytes::from_static(&[0xff]), 6 * s);
        assert_eq!(events(&mut joiner), vec![]);
        let mut sent_on_20 = 0;
        joiner.poll_transmit(6 * s, &mut |l, _, _| sent_on_20 += usize::from(l == 20));
        assert_eq!(sent_on_20, 0);
        // A link that did bring its Hello is not touched.
        let mut host = room(1, Role::Host);
        connect_at(&mut host, &mut joiner, 10, 21, 6 * s);
        joiner.handle_timeout(6 * s);
        joiner.handle_timeout(6 * s + s / 2);
        assert_eq!(joiner.take_stalled_handshakes(), 0);
        assert!(joiner.link_bound(21));
    }

    #[test]
    fn a_silent_peer_goes_away_then_resumes_without_loss_or_duplicates() {
        let s = Duration::from_secs(1);
        let mut host = room(1, Role::Host);
        let mut joiner = room(2, Role::Joiner);
        connect_at(&mut host, &mut joiner, 10, 20, Duration::ZERO);
        events(&mut host);
        events(&mut joiner);
        let mut got = vec![];
        for i in 0..5u8 {
            host.send(peer(2), 1, &[i], Delivery::Reliable).unwrap();
        }
        pump(&mut host, 10, &mut joiner, 20, Duration::ZERO);
        received(&mut joiner, &mut got);
        // The link goes quiet: what is sent now is lost in transit.
        for i in 5..10u8 {
            host.send(peer(2), 1, &[i], Delivery::Reliable).unwrap();
        }
        host.poll_transmit(s / 2, &mut |_, _, _| {});
        host.handle_timeout(s + s / 10);
        joiner.handle_timeout(s + s / 10);
        assert_eq!(
            events(&mut host),
            vec![RoomEvent::Reconnecting { peer: peer(2) }]
        );
        assert_eq!(
            events(&mut joiner),
            vec![RoomEvent::Reconnecting { peer: peer(1) }]
        );
        assert_eq!(joiner.away_since(peer(1)), Some(s + s / 10));
        // Sends to an away peer keep queueing.
        for i in 10..15u8 {
            host.send(peer(2), 1, &[i], Delivery::Reliable).unwrap();
        }
        // A new link, two seconds in: both resume, and the stream picks up where it stopped.
        connect_at(&mut host, &mut joiner, 11, 21, 2 * s);
        let ev = events(&mut host);
        assert_eq!(
            ev,
            vec![RoomEvent::Reconnected {
                peer: peer(2),
                downtime: 2 * s - (s + s / 10)
            }]
        );
        for _ in 0..3 {
            pump(&mut host, 11, &mut joiner, 21, 2 * s);
            pump(&mut joiner, 21, &mut host, 11, 2 * s);
        }
        received(&mut joiner, &mut got);
        assert_eq!(got, (0..15).collect::<Vec<u8>>());
        // Packets that straggle in on the abandoned link are ignored.
        let mut stale = BytesMut::new();
        wire::encode_reliable(&mut stale, 3, 1, &[3]);
        joiner.handle_packet(20, stale.freeze(), 2 * s);
        assert!(events(&mut joiner).is_empty());
        // Gone for longer than resume_timeout: a timeout, and the session is freed.
        host.handle_link_down(11, 3 * s);
        assert_eq!(
            events(&mut host),
            vec![RoomEvent::Reconnecting { peer: peer(2) }]
        );
        host.handle_timeout(3 * s + Duration::from_secs(29));
        assert!(events(&mut host).is_empty());
        host.handle_timeout(3 * s + Duration::from_secs(30));
        assert_eq!(
            events(&mut host),
            vec![RoomEvent::Disconnected {
                peer: peer(2),
                reason: DisconnectReason::Timeout
            }]
        );
        assert!(host.session(peer(2)).is_none());
    }

    /// Delivers what `a` and `b` send on each pair of linked ids `(a's, b's)` to the other end.
    fn route(a: &mut Room<u32>, b: &mut Room<u32>, pairs: &[(u32, u32)], now: Duration) {
        let mut to_b = vec![];
        a.poll_transmit(now, &mut |l, _, p| {
            if let Some((_, lb)) = pairs.iter().find(|(la, _)| *la == l) {
                to_b.push((*lb, p));
            }
        });
        let mut to_a = vec![];
        b.poll_transmit(now, &mut |l, _, p| {
            if let Some((la, _)) = pairs.iter().find(|(_, lb)| *lb == l) {
                to_a.push((*la, p));
            }
        });
        for (l, p) in to_b {
            b.handle_packet(l, p, now);
        }
        for (l, p) in to_a {
            a.handle_packet(l, p, now);
        }
    }

    /// Both sides open new sockets while their link is fine (as joiners do when their host is
    /// away), so two new links come up between them, and each side binds them in another
    /// order. Neither closes a link the other still sends on: they keep talking throughout,
    /// settle on one link, and the others are closed once unused.
    #[test]
    fn two_new_links_bound_in_opposite_orders_settle_on_one() {
        let ms = Duration::from_millis;
        let mut host = room(1, Role::Host);
        let mut joiner = room(2, Role::Joiner);
        connect_at(&mut host, &mut joiner, 10, 20, Duration::ZERO);
        events(&mut host);
        events(&mut joiner);
        // Two new links; both Hellos cross on each.
        let now = ms(100);
        for (lh, lj) in [(11, 21), (12, 22)] {
            host.handle_link_up(lh);
            joiner.handle_link_up(lj);
        }
        route(&mut host, &mut joiner, &[(11, 21), (12, 22)], now);
        // Each side's Auth (the host's with its Welcome once bound) reaches the other side in
        // opposite orders: the host binds 11 then 12, the joiner 22 then 21.
        let mut from_joiner = vec![];
        joiner.poll_transmit(now, &mut |l, _, p| from_joiner.push((l, p)));
        from_joiner.sort_by_key(|(l, _)| *l);
        for (l, p) in from_joiner {
            host.handle_packet(l - 10, p, now);
        }
        let mut from_host = vec![];
        host.poll_transmit(now, &mut |l, _, p| from_host.push((l, p)));
        from_host.sort_by_key(|(l, _)| std::cmp::Reverse(*l));
        for (l, p) in from_host {
            joiner.handle_packet(l + 10, p, now);
        }
        assert!(host.link_bound(11) && host.link_bound(12) && host.link_bound(10));
        assert!(joiner.link_bound(21) && joiner.link_bound(22) && joiner.link_bound(20));
        assert_eq!(host.peers.get(&peer(2)).and_then(|r| r.link), Some(12));
        assert_eq!(joiner.peers.get(&peer(1)).and_then(|r| r.link), Some(21));
        // Messages both ways for three seconds, well past the liveness timeout.
        let pairs = [(10, 20), (11, 21), (12, 22)];
        let (mut at_host, mut at_joiner) = (vec![], vec![]);
        let mut t = now;
        for i in 0..60u8 {
            host.send(peer(2), 1, &[i], Delivery::Reliable).unwrap();
            joiner.send(peer(1), 1, &[i], Delivery::Reliable).unwrap();
            for _ in 0..5 {
                t += ms(10);
                host.handle_timeout(t);
                joiner.handle_timeout(t);
                route(&mut host, &mut joiner, &pairs, t);
            }
            received(&mut host, &mut at_host);
            received(&mut joiner, &mut at_joiner);
        }
        assert_eq!(at_host, (0..60).collect::<Vec<u8>>());
        assert_eq!(at_joiner, (0..60).collect::<Vec<u8>>());
        for (name, r) in [("host", &mut host), ("joiner", &mut joiner)] {
            let ev = events(r);
            assert!(
                !ev.iter()
                    .any(|e| matches!(e, RoomEvent::Reconnecting { .. })),
                "{name}: {ev:?}"
            );
        }
        // One link left on each side, the same one; the others are closed.
        let host_link = host.peers.get(&peer(2)).and_then(|r| r.link);
        let joiner_link = joiner.peers.get(&peer(1)).and_then(|r| r.link);
        assert_eq!(host_link.map(|l| l + 10), joiner_link);
        let in_use =
            |r: &Room<u32>, ids: [u32; 3]| ids.iter().filter(|l| r.link_in_use(**l)).count();
        assert_eq!(
            in_use(&host, [10, 11, 12]),
            1,
            "{:?}",
            host.describe_links()
        );
        assert_eq!(
            in_use(&joiner, [20, 21, 22]),
            1,
            "{:?}",
            joiner.describe_links()
        );
    }

    /// A crowd of silent links (sockets that join and never speak) is capped: past the limit
    /// new links are refused without a word, and a peer already in the room is not disturbed.
    #[test]
    fn links_in_their_handshake_at_once_are_capped() {
        let mut host = room(1, Role::Host);
        let mut joiner = room(2, Role::Joiner);
        connect_at(&mut host, &mut joiner, 10, 20, Duration::ZERO);
        events(&mut host);
        for l in 100..300 {
            host.handle_link_up(l);
        }
        host.handle_timeout(Duration::ZERO);
        let pending = (100..300).filter(|l| host.link_in_use(*l)).count();
        assert_eq!(pending, 64, "at most 64 links wait for a handshake");
        let mut hellos = 0;
        host.poll_transmit(Duration::ZERO, &mut |l, _, _| {
            if l >= 100 {
                hellos += 1;
            }
        });
        assert_eq!(hellos, 64, "the refused ones get nothing");
        host.send(peer(2), 1, &[7], Delivery::Reliable).unwrap();
        let mut got = vec![];
        pump(&mut host, 10, &mut joiner, 20, Duration::ZERO);
        received(&mut joiner, &mut got);
        assert_eq!(got, vec![7]);
        // Once the waiting ones time out, new links are taken again.
        host.handle_timeout(Duration::from_secs(6));
        host.handle_link_up(400);
        assert!(host.link_in_use(400));
    }

    /// A peer that moves to a new link while the old one still works (it was never away)
    /// keeps its streams as they are: an ack that comes late on the old link is stale, not a
    /// peer resuming behind what it acknowledged.
    #[test]
    fn a_late_ack_on_the_old_link_after_a_move_is_harmless() {
        let ms = Duration::from_millis;
        let mut host = room(1, Role::Host);
        let mut joiner = room(2, Role::Joiner);
        connect_at(&mut host, &mut joiner, 10, 20, Duration::ZERO);
        for i in 0..3u8 {
            host.send(peer(2), 1, &[i], Delivery::Reliable).unwrap();
        }
        for step in 1..20 {
            host.handle_timeout(ms(step * 10));
            joiner.handle_timeout(ms(step * 10));
            route(&mut host, &mut joiner, &[(10, 20)], ms(step * 10));
        }
        assert_eq!(host.session(peer(2)).map(Session::unacked_bytes), Some(0));
        events(&mut host);
        // A new link: the host binds it on the joiner's Auth, before the joiner's first ack
        // on it; the late ack from the old link comes in between.
        host.handle_link_up(11);
        joiner.handle_link_up(21);
        pump(&mut host, 11, &mut joiner, 21, ms(300));
        pump(&mut joiner, 21, &mut host, 11, ms(300));
        assert_eq!(
            host.peer_link(peer(2)),
            Some(11),
            "bound, not yet acked on it"
        );
        let mut stale = BytesMut::new();
        wire::encode_ack(&mut stale, 0);
        host.handle_packet(10, stale.freeze(), ms(310));
        assert!(events(&mut host).is_empty(), "no error, no disconnect");
        host.send(peer(2), 1, &[9], Delivery::Reliable).unwrap();
        let mut got = vec![];
        for step in 32..40 {
            route(&mut host, &mut joiner, &[(10, 20), (11, 21)], ms(step * 10));
        }
        received(&mut joiner, &mut got);
        assert_eq!(got, vec![0, 1, 2, 9]);
    }

    /// A peer that refuses a new link (over its budget, say) while another link carries the
    /// session refuses that link, not the session.
    #[test]
    fn a_bye_on_one_of_two_links_ends_only_that_link() {
        let ms = Duration::from_millis;
        let (mut host, _joiner) = two_links();
        let mut bye = BytesMut::new();
        wire::encode_bye(&mut bye, ByeReason::OverBudget);
        host.handle_packet(11, bye.freeze(), ms(200));
        assert!(events(&mut host).is_empty());
        assert!(host.session(peer(2)).is_some());
        assert_eq!(host.peer_link(peer(2)), Some(10), "back on the other link");
        // A Bye that means it (the peer left) still ends the session.
        let mut left = BytesMut::new();
        wire::encode_bye(&mut left, ByeReason::Left);
        host.handle_packet(10, left.freeze(), ms(300));
        assert!(host.session(peer(2)).is_none());
    }

    /// A host and a joiner bound on link 10/20, then moved to 11/21 (10/20 a standby), with
    /// their events taken.
    fn two_links() -> (Room<u32>, Room<u32>) {
        let mut host = room(1, Role::Host);
        let mut joiner = room(2, Role::Joiner);
        connect_at(&mut host, &mut joiner, 10, 20, Duration::ZERO);
        connect_at(&mut host, &mut joiner, 11, 21, Duration::from_millis(100));
        events(&mut host);
        events(&mut joiner);
        (host, joiner)
    }

    /// A standby link takes over when the link in use drops, with no time away.
    #[test]
    fn a_standby_link_takes_over_when_the_link_in_use_drops() {
        let ms = Duration::from_millis;
        let (mut host, mut joiner) = two_links();
        // Both sides heard on both links lately; the new link drops on the host's side.
        route(&mut host, &mut joiner, &[(10, 20), (11, 21)], ms(200));
        host.handle_link_down(11, ms(300));
        assert_eq!(host.peers.get(&peer(2)).and_then(|r| r.link), Some(10));
        assert_eq!(host.away_since(peer(2)), None);
        assert!(events(&mut host).is_empty());
        host.send(peer(2), 1, &[5], Delivery::Reliable).unwrap();
        route(&mut host, &mut joiner, &[(10, 20)], ms(300));
        let mut got = vec![];
        received(&mut joiner, &mut got);
        assert_eq!(got, vec![5]);
    }

    #[test]
    fn unknown_kinds_and_wrong_deliveries_end_the_link_at_once() {
        for (record, expected) in [
            (
                Record::Sequenced {
                    kind: 99,
                    seq: 1,
                    payload: Bytes::new(),
                },
                PeerErrorKind::UnknownMessage(99),
            ),
            (
                Record::Unreliable {
                    kind: 5,
                    payload: Bytes::new(),
                },
                PeerErrorKind::Violation(Violation::WrongDelivery),
            ),
        ] {
            let mut host = room(1, Role::Host);
            host.set_kinds([(5, Delivery::Reliable)].into_iter().collect());
            let mut joiner = room(2, Role::Joiner);
            connect(&mut host, &mut joiner, 10, 20);
            events(&mut host);
            let mut p = BytesMut::new();
            match record {
                Record::Sequenced { kind, seq, .. } => {
                    wire::encode_sequenced(&mut p, kind, seq, b"")
                }
                Record::Unreliable { kind, .. } => wire::encode_unreliable(&mut p, kind, b""),
                _ => unreachable!(),
            }
            host.handle_packet(10, p.freeze(), Duration::ZERO);
            let ev = events(&mut host);
            assert_eq!(
                ev[0],
                RoomEvent::Error {
                    peer: Some(peer(2)),
                    error: expected
                }
            );
            assert!(host.session(peer(2)).is_none());
        }
    }

    #[test]
    fn our_own_other_socket_is_ignored_quietly() {
        let mut a = room(1, Role::Joiner);
        let mut a_again = Room::new(a.local().clone(), SessionConfig::default(), 2);
        connect_at(&mut a, &mut a_again, 10, 20, Duration::ZERO);
        assert!(events(&mut a).is_empty());
        assert_eq!(a.peers().count(), 0);
    }

    #[test]
    fn hello_connects_both_sides_and_messages_flow() {
        let mut host = room(1, Role::Host);
        let mut joiner = room(2, Role::Joiner);
        connect(&mut host, &mut joiner, 10, 20);
        assert_eq!(events(&mut host), connected(2, Role::Joiner));
        assert_eq!(events(&mut joiner), connected(1, Role::Host));
        assert_eq!(joiner.host(), Some(peer(1)));
        host.send(peer(2), 5, b"hi", Delivery::Reliable).unwrap();
        pump(&mut host, 10, &mut joiner, 20, Duration::ZERO);
        assert_eq!(
            events(&mut joiner),
            vec![RoomEvent::Message {
                from: peer(1),
                kind: 5,
                payload: Bytes::from_static(b"hi")
            }]
        );
    }

    #[test]
    fn protocol_mismatch_is_an_error_on_both_sides_and_no_connection() {
        let mut host = room(1, Role::Host);
        let mut joiner = Room::new(
            LocalIdentity {
                protocol_hash: HASH + 1,
                ..room(2, Role::Joiner).local().clone()
            },
            SessionConfig::default(),
            2,
        );
        connect(&mut host, &mut joiner, 10, 20);
        for r in [&mut host, &mut joiner] {
            let ev = events(r);
            assert_eq!(ev.len(), 1, "{ev:?}");
            assert!(
                matches!(
                    ev[0],
                    RoomEvent::Error {
                        peer: Some(_),
                        error: PeerErrorKind::ProtocolMismatch { .. }
                    }
                ),
                "{ev:?}"
            );
            assert_eq!(r.peers().count(), 0);
        }
    }

    #[test]
    fn garbage_drops_only_the_offending_peer() {
        let mut host = room(1, Role::Host);
        let mut a = room(2, Role::Joiner);
        let mut b = room(3, Role::Joiner);
        connect(&mut host, &mut a, 10, 20);
        connect(&mut host, &mut b, 11, 30);
        events(&mut host);
        host.handle_packet(10, Bytes::from_static(&[0x10, 1, 2]), Duration::ZERO);
        let ev = events(&mut host);
        assert!(matches!(
            ev[0],
            RoomEvent::Error {
                peer: Some(p),
                error: PeerErrorKind::Malformed(_)
            } if p == peer(2)
        ));
        assert_eq!(
            ev[1],
            RoomEvent::Disconnected {
                peer: peer(2),
                reason: DisconnectReason::ProtocolViolation
            }
        );
        assert_eq!(host.peers().map(|p| p.0).collect::<Vec<_>>(), vec![peer(3)]);
        // The dropped peer hears why, and later packets from its link are ignored.
        pump(&mut host, 10, &mut a, 20, Duration::ZERO);
        assert!(events(&mut a).iter().any(|e| matches!(
            e,
            RoomEvent::Disconnected {
                reason: DisconnectReason::Refused,
                ..
            }
        )));
        host.handle_packet(10, Bytes::from_static(&[0xff]), Duration::ZERO);
        let ev = events(&mut host);
        assert!(ev.is_empty(), "{ev:?}");
        // The other peer still works.
        host.send(peer(3), 1, b"ok", Delivery::Reliable).unwrap();
    }

    #[test]
    fn a_lost_hello_is_asked_for_again_and_data_before_it_is_ignored() {
        let ms = Duration::from_millis(1);
        let mut host = room(1, Role::Host);
        let mut joiner = room(2, Role::Joiner);
        host.handle_link_up(10);
        joiner.handle_link_up(20);
        // The joiner's first packet (its Hello) is lost: webrtc-rs can drop the first messages
        // on a fresh connection.
        joiner.poll_transmit(Duration::ZERO, &mut |_, _, _| {});
        // The host's Hello arrives: the joiner answers with its Auth, which the host, still
        // without the joiner's Hello, ignores without complaint.
        pump(&mut host, 10, &mut joiner, 20, Duration::ZERO);
        pump(&mut joiner, 20, &mut host, 10, 10 * ms);
        assert_eq!(events(&mut host), vec![]);
        // The host sees data before a Hello: it sends its own again (no sooner than 200 ms
        // after the first); the joiner, which has heard nothing but the host's Hello, answers
        // with its whole handshake again, and the rest follows.
        pump(&mut host, 10, &mut joiner, 20, 100 * ms);
        pump(&mut joiner, 20, &mut host, 10, 100 * ms);
        assert_eq!(events(&mut host), vec![], "not before the gap");
        for t in [250, 251, 252, 253] {
            pump(&mut host, 10, &mut joiner, 20, t * ms);
            pump(&mut joiner, 20, &mut host, 10, t * ms);
        }
        assert_eq!(events(&mut host), connected(2, Role::Joiner));
        assert_eq!(events(&mut joiner), connected(1, Role::Host));
        host.send(peer(2), 1, &[5], Delivery::Reliable).unwrap();
        joiner.send(peer(1), 1, &[6], Delivery::Reliable).unwrap();
        let hellos = std::cell::Cell::new(0);
        let count_hellos = |p: &Bytes| {
            for r in Records::checked(p.clone()).unwrap().flatten() {
                if matches!(r, Record::Hello(_)) {
                    hellos.set(hellos.get() + 1);
                }
            }
        };
        let (mut to_joiner, mut to_host) = (vec![], vec![]);
        for t in [300, 600, 900, 1200] {
            let now = t * ms;
            let mut packets = vec![];
            host.poll_transmit(now, &mut |_, _, p| packets.push(p));
            for p in packets.drain(..) {
                if t > 300 {
                    count_hellos(&p);
                }
                joiner.handle_packet(20, p, now);
            }
            joiner.poll_transmit(now, &mut |_, _, p| packets.push(p));
            for p in packets.drain(..) {
                if t > 300 {
                    count_hellos(&p);
                }
                host.handle_packet(10, p, now);
            }
            received(&mut joiner, &mut to_joiner);
            received(&mut host, &mut to_host);
        }
        assert_eq!(to_joiner, vec![5]);
        assert_eq!(to_host, vec![6]);
        assert_eq!(
            hellos.get(),
            0,
            "no Hello once both sides have heard from each other"
        );
    }

    #[test]
    fn a_second_host_is_refused() {
        let mut host = room(1, Role::Host);
        let mut other_host = room(2, Role::Host);
        connect(&mut host, &mut other_host, 11, 21);
        assert!(matches!(
            events(&mut host)[0],
            RoomEvent::Error {
                error: PeerErrorKind::DuplicateHost,
                ..
            }
        ));
    }

    #[test]
    fn a_full_room_refuses_the_next_joiner() {
        let mut host = room(1, Role::Host); // max_peers = 2
        let mut js: Vec<Room<u32>> = (2..5).map(|i| room(i, Role::Joiner)).collect();
        for (i, j) in js.iter_mut().enumerate() {
            connect(&mut host, j, 10 + i as u32, 20);
        }
        assert_eq!(host.peers().count(), 2);
        let last = events(&mut js[2]);
        assert!(
            last.iter().any(|e| matches!(
                e,
                RoomEvent::Error {
                    error: PeerErrorKind::RoomFull,
                    ..
                }
            )),
            "{last:?}"
        );
    }

    #[test]
    fn leave_says_bye_and_the_other_side_sees_left() {
        let mut host = room(1, Role::Host);
        let mut joiner = room(2, Role::Joiner);
        connect(&mut host, &mut joiner, 10, 20);
        events(&mut host);
        events(&mut joiner);
        joiner.leave(Duration::ZERO);
        assert_eq!(
            events(&mut joiner),
            vec![RoomEvent::Disconnected {
                peer: peer(1),
                reason: DisconnectReason::LocalLeave
            }]
        );
        pump(&mut joiner, 20, &mut host, 10, Duration::ZERO);
        assert_eq!(
            events(&mut host),
            vec![RoomEvent::Disconnected {
                peer: peer(2),
                reason: DisconnectReason::Left
            }]
        );
    }

    #[test]
    fn a_lost_link_disconnects_and_a_new_incarnation_replaces() {
        let mut host = room(1, Role::Host);
        let mut joiner = room(2, Role::Joiner);
        connect(&mut host, &mut joiner, 10, 20);
        events(&mut host);
        host.handle_link_down(10, Duration::ZERO);
        assert_eq!(
            events(&mut host),
            vec![RoomEvent::Reconnecting { peer: peer(2) }]
        );
        // Same id, same incarnation, while still known: a resume.
        let mut host = room(1, Role::Host);
        let mut joiner = room(2, Role::Joiner);
        connect(&mut host, &mut joiner, 10, 20);
        events(&mut host);
        connect(&mut host, &mut joiner, 11, 21);
        // It was never away: it moved to a new link, which is nothing to tell the game.
        assert!(events(&mut host).is_empty());
        assert!(host.link_bound(11));
        // Same id, new incarnation, once the old one is away (the app restarted): the old
        // session ends. (While the old one is live, the newcomer is refused: see
        // `trust_tests::a_second_live_app_under_one_identity_is_refused`.) The first link was
        // kept as a standby; it drops first, quietly.
        host.handle_link_down(10, Duration::ZERO);
        assert!(events(&mut host).is_empty());
        host.handle_link_down(11, Duration::ZERO);
        assert_eq!(
            events(&mut host),
            vec![RoomEvent::Reconnecting { peer: peer(2) }]
        );
        let mut restarted = Room::new(
            LocalIdentity {
                incarnation: 999,
                ..joiner.local().clone()
            },
            SessionConfig::default(),
            2,
        );
        connect(&mut host, &mut restarted, 12, 22);
        assert_eq!(
            events(&mut host),
            vec![
                RoomEvent::Disconnected {
                    peer: peer(2),
                    reason: DisconnectReason::Replaced
                },
                RoomEvent::Connected {
                    peer: peer(2),
                    role: Role::Joiner
                }
            ]
        );
    }
}
