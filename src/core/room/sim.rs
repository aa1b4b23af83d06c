//! A simulated network of rooms for the core's tests: numbered sockets, links that name both
//! of their ends (as matchbox's socket ids do, so proofs are bound to them), one step per
//! millisecond of a simulated clock, and optional packet loss.

use super::testing::{identity, peer};
use super::*;

pub(super) const HASH: u64 = 0x5eed;
pub(super) const MS: Duration = Duration::from_millis(1);

/// A link as a socket names it: our socket's id and the other end's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) struct Wire {
    pub ours: u128,
    pub theirs: u128,
}

impl LinkEnds for Wire {
    fn ends(&self) -> (u128, u128) {
        (self.ours, self.theirs)
    }
}

/// Socket `a`'s link to socket `b`.
pub(super) fn wire(a: usize, b: usize) -> Wire {
    Wire {
        ours: a as u128 + 100,
        theirs: b as u128 + 100,
    }
}

/// Rooms at numbered sockets; a socket without a room is the attacker's, whose packets the
/// test writes by hand and whose mail is kept in `captured`.
pub(super) struct Mesh {
    pub rooms: Vec<Option<Room<Wire>>>,
    pub now: Duration,
    /// Every packet sent: (from socket, to socket, packet).
    pub captured: Vec<(usize, usize, Bytes)>,
    pub events: Vec<Vec<RoomEvent>>,
    /// Packets lost at random: the generator and the probability.
    pub loss: Option<(crate::core::rng::Rng, f32)>,
    /// Socket pairs whose packets are dropped, both ways, while their links stay up (an
    /// outage the transport does not report).
    pub blocked: Vec<(usize, usize)>,
}

impl Mesh {
    pub(super) fn new(rooms: Vec<Option<Room<Wire>>>) -> Self {
        let n = rooms.len();
        Self {
            rooms,
            now: Duration::ZERO,
            captured: Vec::new(),
            events: vec![Vec::new(); n],
            loss: None,
            blocked: Vec::new(),
        }
    }

    pub(super) fn room(&mut self, i: usize) -> &mut Room<Wire> {
        self.rooms[i].as_mut().expect("an honest socket")
    }

    /// Brings up the link between sockets `a` and `b`.
    pub(super) fn link(&mut self, a: usize, b: usize) {
        for (x, y) in [(a, b), (b, a)] {
            if let Some(r) = self.rooms[x].as_mut() {
                r.handle_link_up(wire(x, y));
            }
        }
    }

    /// Drops the link between `a` and `b` on both ends.
    pub(super) fn unlink(&mut self, a: usize, b: usize) {
        let now = self.now;
        for (x, y) in [(a, b), (b, a)] {
            if let Some(r) = self.rooms[x].as_mut() {
                r.handle_link_down(wire(x, y), now);
            }
        }
    }

    /// A packet from socket `from` (the attacker's, say) arrives at socket `to`.
    pub(super) fn inject(&mut self, from: usize, to: usize, packet: Bytes) {
        let now = self.now;
        self.room(to).handle_packet(wire(to, from), packet, now);
    }

    /// Runs every room for `ms` milliseconds, a step per millisecond, packets arriving in the
    /// step after they are sent.
    pub(super) fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now += MS;
            let now = self.now;
            let mut sent = Vec::new();
            for (i, slot) in self.rooms.iter_mut().enumerate() {
                if let Some(r) = slot {
                    r.handle_timeout(now);
                    r.poll_transmit(now, &mut |l: Wire, _, p| {
                        sent.push((i, (l.theirs - 100) as usize, p))
                    });
                    self.events[i].extend(std::iter::from_fn(|| r.poll_event()));
                }
            }
            for (from, to, p) in sent {
                if self.blocked.contains(&(from.min(to), from.max(to))) {
                    continue;
                }
                if let Some((rng, p)) = self.loss.as_mut()
                    && rng.next_f32() < *p
                {
                    continue;
                }
                self.captured.push((from, to, p.clone()));
                if let Some(r) = self.rooms[to].as_mut() {
                    r.handle_packet(wire(to, from), p, now);
                }
            }
            for (i, slot) in self.rooms.iter_mut().enumerate() {
                if let Some(r) = slot {
                    self.events[i].extend(std::iter::from_fn(|| r.poll_event()));
                }
            }
        }
    }

    pub(super) fn take_events(&mut self, i: usize) -> Vec<RoomEvent> {
        std::mem::take(&mut self.events[i])
    }

    /// The payloads of the messages room `i` received (first byte pairs as u16), and every
    /// other event.
    pub(super) fn split(&mut self, i: usize) -> (Vec<u16>, Vec<RoomEvent>) {
        let mut got = Vec::new();
        let mut other = Vec::new();
        for e in self.take_events(i) {
            match e {
                RoomEvent::Message { payload, .. } => {
                    got.push(u16::from_le_bytes([payload[0], payload[1]]))
                }
                e => other.push(e),
            }
        }
        (got, other)
    }
}

pub(super) fn room(n: u128, role: Role, access: Access) -> Option<Room<Wire>> {
    let mut r = Room::new(identity(n, role, HASH), SessionConfig::default(), 8);
    r.set_access(access);
    Some(r)
}

/// Host and two joiners, every link up, everyone connected to everyone.
pub(super) fn full_mesh(rooms: Vec<Option<Room<Wire>>>) -> Mesh {
    let mut mesh = Mesh::new(rooms);
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        mesh.link(a, b);
    }
    mesh.run(50);
    for i in 0..3 {
        assert_eq!(mesh.take_events(i).len(), 2, "everyone meets everyone");
    }
    mesh
}

pub(super) fn open() -> Access {
    Access::default()
}

pub(super) fn connected(n: u128, role: Role) -> RoomEvent {
    RoomEvent::Connected {
        peer: peer(n),
        role,
    }
}

/// Sends `range` of numbered reliable messages from room `from` to `to`'s peer `n`.
pub(super) fn stream(mesh: &mut Mesh, from: usize, to_peer: u128, range: std::ops::Range<u16>) {
    for i in range {
        mesh.room(from)
            .send(peer(to_peer), 1, &i.to_le_bytes(), Delivery::Reliable)
            .unwrap();
    }
}

pub(super) fn errors(events: &[RoomEvent]) -> Vec<PeerErrorKind> {
    events
        .iter()
        .filter_map(|e| match e {
            RoomEvent::Error { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}
