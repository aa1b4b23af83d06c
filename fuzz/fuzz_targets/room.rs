//! The room and session state machines fed arbitrary packets under a simulated clock. A host
//! and an honest joiner stream numbered reliable messages to each other over a link that is
//! cut and re-made; beside them, a *member* (a real peer that completed its handshake, so
//! the fuzzer's bytes on its link reach the session code) and a *stranger* (never proven) send
//! whatever the fuzzer says, including replays of the honest peers' own packets. Invariants, checked throughout:
//! nothing panics, the honest stream arrives exactly once and in order, nobody drops or
//! disturbs the honest pair, and what the host holds for any peer stays within its limits.
//!
//! The first byte's high bit picks the topology: a mesh, or a star, where the host relays
//! between its joiners (the fuzzer's routes reach the relay, and the member's relayed messages
//! ride the host's stream to the honest joiner between its numbered ones).
#![no_main]

use bevy_peer_message::{
    Delivery, PeerId, Role, SessionConfig, Topology,
    internals::{Room, RoomEvent, testing},
};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::{sync::OnceLock, time::Duration};

/// Every run starts from a copy of one connected world (the handshakes' signatures are the
/// expensive part, and the same every time).
static CONNECTED: OnceLock<World> = OnceLock::new();
static CONNECTED_STAR: OnceLock<World> = OnceLock::new();

const HASH: u64 = 0xf022;
const KIND: u32 = 1;
/// The host's links: to the honest joiner (10 + generation), to the member (30), the
/// stranger (31).
const MEMBER: u32 = 30;
const STRANGER: u32 = 31;

#[derive(Clone)]
struct World {
    host: Room<u32>,
    honest: Room<u32>,
    member: Room<u32>,
    now: Duration,
    generation: u32,
    /// Packets the honest pair sent each other (for replays).
    captured: Vec<Bytes>,
    sent: u32,
    delivered: u32,
    back_sent: u32,
    back_delivered: u32,
    last_cut: Duration,
    /// The host's and the honest joiner's ids (deriving one costs a curve multiplication).
    ids: [PeerId; 2],
}

fn room(n: u128, role: Role, topology: Topology) -> Room<u32> {
    let mut room = Room::new(
        testing::identity(n, role, HASH),
        SessionConfig::default(),
        4,
    );
    room.set_topology(topology);
    room
}

impl World {
    fn new(topology: Topology) -> Self {
        let mut w = World {
            host: room(1, Role::Host, topology),
            honest: room(2, Role::Joiner, topology),
            member: room(3, Role::Joiner, topology),
            now: Duration::ZERO,
            generation: 0,
            captured: Vec::new(),
            sent: 0,
            delivered: 0,
            back_sent: 0,
            back_delivered: 0,
            last_cut: Duration::ZERO,
            ids: [testing::peer(1), testing::peer(2)],
        };
        testing::connect(&mut w.host, &mut w.honest, 10, 20);
        testing::connect(&mut w.host, &mut w.member, MEMBER, 50);
        w.drain();
        w
    }

    fn honest_links(&self) -> (u32, u32) {
        (10 + 100 * self.generation, 20 + 100 * self.generation)
    }

    /// Moves the honest pair's packets both ways and runs their timers.
    fn pump(&mut self) {
        let now = self.now;
        let (h, j) = self.honest_links();
        for room in [&mut self.host, &mut self.honest, &mut self.member] {
            room.handle_timeout(now);
        }
        // Until nothing more is sent (a handshake takes three rounds; usually one round).
        for _ in 0..4 {
            let (mut to_honest, mut to_member) = (Vec::new(), Vec::new());
            self.host.poll_transmit(now, &mut |l, _, p| {
                if l == h {
                    to_honest.push(p)
                } else if l == MEMBER {
                    to_member.push(p)
                }
            });
            let mut to_host = Vec::new();
            self.honest.poll_transmit(now, &mut |l, _, p| {
                if l == j {
                    to_host.push(p)
                }
            });
            // The member's own traffic flows too (it stays in the room); the fuzzer's packets
            // come in between.
            let mut from_member = Vec::new();
            self.member
                .poll_transmit(now, &mut |_, _, p| from_member.push(p));
            let member_len = from_member.len() + to_member.len();
            for p in from_member {
                self.host.handle_packet(MEMBER, p, now);
            }
            for p in to_member {
                self.member.handle_packet(50, p, now);
            }
            let (to_honest_len, to_host_len) = (to_honest.len(), to_host.len());
            for p in to_honest {
                self.captured.push(p.clone());
                self.honest.handle_packet(j, p, now);
            }
            for p in to_host {
                self.captured.push(p.clone());
                self.host.handle_packet(h, p, now);
            }
            if self.captured.len() > 256 {
                self.captured.drain(..128);
            }
            if to_honest_len + to_host_len + member_len == 0 {
                break;
            }
        }
        self.drain();
    }

    /// Takes every event, checking the invariants.
    fn drain(&mut self) {
        let [host, honest] = self.ids;
        while let Some(e) = self.host.poll_event() {
            match e {
                RoomEvent::Message {
                    from, ref payload, ..
                } if from == honest => {
                    let n = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
                    assert_eq!(n, self.delivered, "exactly once, in order");
                    self.delivered += 1;
                }
                RoomEvent::Disconnected { peer, .. }
                | RoomEvent::Error {
                    peer: Some(peer), ..
                } if peer == honest => {
                    panic!("the host dropped the honest peer: {e:?}")
                }
                _ => {}
            }
        }
        while let Some(e) = self.honest.poll_event() {
            match e {
                RoomEvent::Message {
                    from, ref payload, ..
                } if from == host => {
                    let n = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
                    assert_eq!(n, self.back_delivered, "exactly once, in order");
                    self.back_delivered += 1;
                }
                RoomEvent::Disconnected { peer, .. }
                | RoomEvent::Error {
                    peer: Some(peer), ..
                } if peer == host => {
                    panic!("the honest peer dropped the host: {e:?}")
                }
                _ => {}
            }
        }
        while self.member.poll_event().is_some() {}
        // Bounded memory: whatever a peer sent, what the host holds for it stays within the
        // session's limits.
        let config = self.host.config().clone();
        let limit = config.max_undelivered_bytes + 4 * config.max_in_flight + (64 << 10);
        for (peer, _) in self.host.peers().collect::<Vec<_>>() {
            if let Some(s) = self.host.session(peer) {
                assert!(s.undelivered_bytes() <= limit, "{}", s.undelivered_bytes());
                assert!(s.unacked_bytes() <= config.max_unacked_bytes + config.max_message_size);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut w = match data.first() {
        Some(b) if b & 0x80 != 0 => CONNECTED_STAR.get_or_init(|| World::new(Topology::Star)),
        _ => CONNECTED.get_or_init(|| World::new(Topology::Mesh)),
    }
    .clone();
    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        match op % 8 {
            0 => {
                w.now += Duration::from_millis(arg as u64);
                w.pump();
            }
            1 => {
                for _ in 0..=arg % 8 {
                    let n = w.sent.to_le_bytes();
                    if w.honest
                        .send(w.ids[0], KIND, &n, Delivery::Reliable)
                        .is_ok()
                    {
                        w.sent += 1;
                    }
                    let n = w.back_sent.to_le_bytes();
                    if w.host.send(w.ids[1], KIND, &n, Delivery::Reliable).is_ok() {
                        w.back_sent += 1;
                    }
                    // In a star, the member's own messages to the honest joiner, relayed by
                    // the host between the numbered ones (in a mesh it has no link to it).
                    let _ = w.member.send(w.ids[1], KIND, &[0xee; 4], Delivery::Reliable);
                }
                w.pump();
            }
            // A packet of the fuzzer's from the member (bound) or the stranger (not).
            2 | 3 => {
                let len = arg as usize * 4;
                let packet: Vec<u8> = bytes.by_ref().take(len).collect();
                let link = if op % 8 == 2 { MEMBER } else { STRANGER };
                let now = w.now;
                w.host.handle_packet(link, Bytes::from(packet), now);
                w.drain();
            }
            // The stranger says something to the honest joiner.
            4 => {
                let packet: Vec<u8> = bytes.by_ref().take(arg as usize * 4).collect();
                let now = w.now;
                w.honest.handle_packet(41, Bytes::from(packet), now);
                w.drain();
            }
            // A replay of one of the honest pair's packets, by the member or the stranger.
            5 => {
                if !w.captured.is_empty() {
                    let p = w.captured[arg as usize % w.captured.len()].clone();
                    let link = if arg & 0x80 != 0 { MEMBER } else { STRANGER };
                    let now = w.now;
                    w.host.handle_packet(link, p.clone(), now);
                    w.honest.handle_packet(41, p, now);
                    w.drain();
                }
            }
            // The honest link drops and a new one comes up (a reconnect), no more often than
            // an honest peer's reconnect policy would (within its links-per-minute budget).
            6 => {
                if w.now < w.last_cut + Duration::from_millis(1500) && w.generation > 0 {
                    continue;
                }
                w.last_cut = w.now;
                let (h, j) = w.honest_links();
                let now = w.now;
                w.host.handle_link_down(h, now);
                w.honest.handle_link_down(j, now);
                w.generation += 1;
                let (h, j) = w.honest_links();
                w.host.handle_link_up(h);
                w.honest.handle_link_up(j);
                w.pump();
            }
            // The stranger's link goes down and comes back.
            _ => {
                let now = w.now;
                w.host.handle_link_down(STRANGER, now);
                w.host.handle_link_up(STRANGER);
                w.drain();
            }
        }
    }
    // Settle: everything the honest pair sent arrives (a retransmit timeout or two at most).
    for _ in 0..500 {
        if w.delivered == w.sent && w.back_delivered == w.back_sent {
            break;
        }
        w.now += Duration::from_millis(10);
        w.pump();
    }
    assert_eq!(w.delivered, w.sent, "every honest message arrived");
    assert_eq!(
        w.back_delivered, w.back_sent,
        "every message to the honest peer arrived"
    );
});
