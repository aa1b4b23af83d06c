//! An in-memory network: the plugin's whole stack, handshake to reconnect, without WebRTC or a
//! signalling server, in one process and deterministic. For this crate's tests of the Bevy
//! side, and for games that test their own netcode the same way.

use crate::{
    core::error::SignalingError,
    core::peer::PeerId,
    core::wire::Channel,
    io::{Pump, RemoteId, SignalingPhase, Socket, SocketTarget, Transport},
};
use bytes::Bytes;
use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard, Weak},
    task::Waker,
    time::Duration,
};

/// Rounds of pumping at one instant while packets are still crossing (a handshake takes
/// three).
const MAX_ROUNDS: usize = 16;

/// Packets a socket holds unread at most; more are dropped, as a full buffer would.
const MAX_QUEUED: usize = 1 << 16;

/// An in-memory network shared by several apps in one process: a signalling server and the
/// links between the apps' sockets, with switches to take an app off the network or the
/// signalling server down. Give each app a clone through
/// [`PeerMessagePlugin::in_memory`](crate::PeerMessagePlugin::in_memory).
///
/// The network keeps its own clock, which moves only when you call
/// [`advance`](MemoryNetwork::advance): that runs every app's protocol (heartbeats, acks,
/// timeouts) as the socket loop would, whether or not the app is updated, so a test can stall
/// one app's frames and see what its peers see. Everything is delivered at once and in order;
/// sockets connect the moment they open. Use the
/// [`LinkConditionerConfig`](crate::LinkConditionerConfig) for latency and loss.
///
/// ```
/// # use bevy::prelude::*;
/// # use bevy_peer_message::prelude::*;
/// # use std::time::Duration;
/// let network = MemoryNetwork::default();
/// let mut host = App::new();
/// host.add_plugins((MinimalPlugins, PeerMessagePlugin::default().in_memory(&network)));
/// let mut joiner = App::new();
/// joiner.add_plugins((MinimalPlugins, PeerMessagePlugin::default().in_memory(&network)));
/// // Each step of the test: time on the network, then a frame of each app.
/// network.advance(Duration::from_millis(10));
/// host.update();
/// joiner.update();
/// ```
#[derive(Clone, Default)]
pub struct MemoryNetwork(Arc<Mutex<Hub>>);

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hub = self.hub();
        f.debug_struct("MemoryNetwork")
            .field("sockets", &hub.sockets.len())
            .field("signaling_down", &hub.signaling_down)
            .field("offline", &hub.offline)
            .finish()
    }
}

#[derive(Default)]
struct Hub {
    next_id: u128,
    signaling_down: bool,
    offline: BTreeSet<PeerId>,
    sockets: HashMap<RemoteId, Slot>,
    /// Pairs of sockets that signalling introduced while one side was off the network: their
    /// connection completes when both are on it again.
    pending: Vec<(RemoteId, RemoteId)>,
    opened: u64,
    /// The network's clock.
    clock: Duration,
    /// Every app's protocol, run by [`MemoryNetwork::advance`].
    pumps: Vec<Weak<Mutex<dyn Pump>>>,
    /// The ICE servers each socket was opened with, in order (the plugin's own tests).
    #[cfg(test)]
    ice: Vec<crate::io::ice::IceServers>,
}

struct Slot {
    room: String,
    owner: PeerId,
    /// Offers connections to later sockets (see [`SocketTarget::offers`]).
    offers: bool,
    phase: SignalingPhase,
    ended: Option<Result<(), SignalingError>>,
    links: HashSet<RemoteId>,
    link_changes: Vec<(RemoteId, bool)>,
    inbox: VecDeque<(RemoteId, Bytes)>,
}

impl MemoryNetwork {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock (in a test) must not hide the state from the rest.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the app whose peer id is `peer` off the network (`false`) or puts it back: while
    /// off, every packet to or from it is lost and the sockets it opens cannot reach the
    /// signalling server. Its links stay up but silent, as WebRTC connections do through a
    /// short outage; connections that other apps' new sockets started with it complete when
    /// it is back.
    pub fn set_online(&self, peer: PeerId, online: bool) {
        let mut hub = self.hub();
        if !online {
            hub.offline.insert(peer);
            return;
        }
        hub.offline.remove(&peer);
        let pending = std::mem::take(&mut hub.pending);
        for (a, b) in pending {
            hub.connect(a, b);
        }
    }

    /// Takes the signalling server down (`false`) or brings it back. While down, every socket's
    /// signalling is lost and new sockets fail; links already made keep working.
    pub fn set_signaling(&self, up: bool) {
        let mut hub = self.hub();
        hub.signaling_down = !up;
        if !up {
            for slot in hub.sockets.values_mut() {
                if slot.ended.is_none() {
                    slot.phase = SignalingPhase::Down;
                }
            }
        }
    }

    /// Moves the network's clock forward by `by`, running every app's protocol at each of its
    /// deadlines on the way (and again at once while packets are crossing), as the socket
    /// loop of a real transport would.
    pub fn advance(&self, by: Duration) {
        let target = self.hub().clock + by;
        loop {
            let (now, pumps) = {
                let mut hub = self.hub();
                hub.pumps.retain(|p| p.strong_count() > 0);
                (hub.clock, hub.pumps.clone())
            };
            let mut next = target;
            for _ in 0..MAX_ROUNDS {
                for pump in pumps.iter().filter_map(Weak::upgrade) {
                    if let Some(t) = crate::io::lock(&pump).pump(now, Waker::noop()) {
                        next = next.min(t.max(now + Duration::from_millis(1)));
                    }
                }
                if !self.hub().in_transit() {
                    break;
                }
            }
            if now >= target {
                return;
            }
            self.hub().clock = next.min(target);
        }
    }

    /// Now, on the network's clock.
    pub fn now(&self) -> Duration {
        self.hub().clock
    }

    /// The ICE servers the sockets were opened with, oldest first.
    #[cfg(test)]
    pub(crate) fn ice_of_sockets(&self) -> Vec<crate::io::ice::IceServers> {
        self.hub().ice.clone()
    }

    /// How many sockets have been opened so far, by every app.
    pub fn sockets_opened(&self) -> u64 {
        self.hub().opened
    }
}

impl Hub {
    /// Whether a socket has packets or link changes it has not taken yet.
    fn in_transit(&self) -> bool {
        self.sockets
            .values()
            .any(|s| !s.inbox.is_empty() || !s.link_changes.is_empty())
    }

    /// Links `a` and `b` if both are open and on the network; otherwise keeps the pair pending
    /// (while both are open).
    fn connect(&mut self, a: RemoteId, b: RemoteId) {
        let owner = |hub: &Hub, id| {
            hub.sockets
                .get(&id)
                .filter(|s| s.ended.is_none())
                .map(|s| s.owner)
        };
        let (Some(owner_a), Some(owner_b)) = (owner(self, a), owner(self, b)) else {
            return;
        };
        if self.offline.contains(&owner_a) || self.offline.contains(&owner_b) {
            self.pending.push((a, b));
            return;
        }
        for (from, to) in [(a, b), (b, a)] {
            if let Some(slot) = self.sockets.get_mut(&from)
                && slot.links.insert(to)
            {
                slot.link_changes.push((to, true));
            }
        }
    }

    fn close(&mut self, id: RemoteId, result: Result<(), SignalingError>) {
        let Some(slot) = self.sockets.get_mut(&id) else {
            return;
        };
        if slot.ended.is_some() {
            return;
        }
        slot.ended = Some(result);
        slot.phase = SignalingPhase::Down;
        slot.inbox.clear();
        let links: Vec<RemoteId> = slot.links.drain().collect();
        for other in links {
            if let Some(o) = self.sockets.get_mut(&other) {
                o.links.remove(&id);
                o.link_changes.push((id, false));
            }
        }
    }
}

impl Transport for MemoryNetwork {
    fn now(&self) -> Duration {
        MemoryNetwork::now(self)
    }

    fn drive(&self, pump: Weak<Mutex<dyn Pump>>) {
        self.hub().pumps.push(pump);
    }

    fn open(&self, target: &SocketTarget) -> Box<dyn Socket> {
        let mut hub = self.hub();
        #[cfg(test)]
        hub.ice.push(target.ice.clone());
        hub.opened += 1;
        hub.next_id += 1;
        let id = RemoteId(hub.next_id << 64 | 0x6d65_6d6f);
        let reachable = !hub.signaling_down && !hub.offline.contains(&target.local);
        hub.sockets.insert(
            id,
            Slot {
                room: target.room_url.clone(),
                owner: target.local,
                offers: target.offers,
                phase: if reachable {
                    SignalingPhase::Up
                } else {
                    SignalingPhase::Down
                },
                ended: (!reachable).then_some(Err(SignalingError::Unreachable)),
                links: HashSet::new(),
                link_changes: Vec::new(),
                inbox: VecDeque::new(),
            },
        );
        if reachable {
            // Signalling introduces it to every socket in the room (matchbox's full mesh), and
            // those that offer connect.
            let others: Vec<RemoteId> = hub
                .sockets
                .iter()
                .filter(|(other, s)| {
                    **other != id
                        && s.offers
                        && s.room == target.room_url
                        && s.ended.is_none()
                        && s.phase == SignalingPhase::Up
                })
                .map(|(other, _)| *other)
                .collect();
            for other in others {
                hub.connect(id, other);
            }
        }
        Box::new(MemorySocket {
            network: self.clone(),
            id,
        })
    }
}

/// One socket on a [`MemoryNetwork`].
#[derive(Debug)]
struct MemorySocket {
    network: MemoryNetwork,
    id: RemoteId,
}

impl MemorySocket {
    /// Empties one of this socket's queues (outside the lock's scope for the caller).
    fn take<T: Default>(&self, queue: impl FnOnce(&mut Slot) -> &mut T) -> T {
        let mut hub = self.network.hub();
        hub.sockets
            .get_mut(&self.id)
            .map(|slot| std::mem::take(queue(slot)))
            .unwrap_or_default()
    }
}

impl Socket for MemorySocket {
    fn signaling(&self) -> SignalingPhase {
        let hub = self.network.hub();
        hub.sockets
            .get(&self.id)
            .map_or(SignalingPhase::Down, |s| s.phase)
    }

    fn connect_time(&self) -> Option<Duration> {
        (self.signaling() == SignalingPhase::Up).then_some(Duration::from_millis(1))
    }

    fn poll_links(&mut self, _: &Waker, f: &mut dyn FnMut(RemoteId, bool)) {
        for (remote, up) in self.take(|slot| &mut slot.link_changes) {
            f(remote, up);
        }
    }

    fn receive(&mut self, _: &Waker, f: &mut dyn FnMut(RemoteId, Bytes)) {
        for (remote, packet) in self.take(|slot| &mut slot.inbox) {
            f(remote, packet);
        }
    }

    fn send(&mut self, remote: RemoteId, _channel: Channel, packet: Bytes) -> bool {
        let mut hub = self.network.hub();
        let Some(me) = hub.sockets.get(&self.id) else {
            return false;
        };
        if me.ended.is_some() {
            return false;
        }
        if !me.links.contains(&remote) {
            return true;
        }
        let owner = me.owner;
        let cut = hub.offline.contains(&owner);
        let Some(to) = hub.sockets.get(&remote).map(|s| s.owner) else {
            return true;
        };
        if cut || hub.offline.contains(&to) {
            return true;
        }
        if let Some(other) = hub.sockets.get_mut(&remote)
            && other.inbox.len() < MAX_QUEUED
        {
            other.inbox.push_back((self.id, packet));
        }
        true
    }

    fn ended(&mut self) -> Option<Result<(), SignalingError>> {
        let hub = self.network.hub();
        hub.sockets.get(&self.id).and_then(|s| s.ended)
    }

    fn close(&mut self) {
        self.network.hub().close(self.id, Ok(()));
    }

    fn local_id(&mut self) -> Option<RemoteId> {
        Some(self.id)
    }
}

impl Drop for MemorySocket {
    fn drop(&mut self) {
        let mut hub = self.network.hub();
        hub.close(self.id, Ok(()));
        hub.sockets.remove(&self.id);
    }
}
