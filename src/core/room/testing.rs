//! Rooms wired to each other by hand, for the core's tests and the benches (through
//! `internals::testing`): no transport, the caller's clock.

use crate::core::{
    auth::Identity,
    peer::{PeerId, Role},
    room::{LinkEnds, LocalIdentity, Room},
};
use std::time::Duration;

/// Hand-wired links are plain numbers, and the two ends of one link number it differently, so
/// they carry no channel binding (every hand-wired link binds the same). Tests of the binding
/// use a link type that names both ends.
impl LinkEnds for u32 {
    fn ends(&self) -> (u128, u128) {
        (0, 0)
    }
}

/// The key of test peer number `n` (the same for every call).
pub fn key(n: u128) -> Identity {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(&n.to_le_bytes());
    seed[16] = 0xb5;
    Identity::from_secret_bytes(seed)
}

/// The id of test peer number `n` (derived from [`key`]).
pub fn peer(n: u128) -> PeerId {
    key(n).peer_id()
}

/// Who test room number `id` is: its [`key`], `role`, an incarnation derived from the number,
/// `protocol_hash`.
pub fn identity(id: u128, role: Role, protocol_hash: u64) -> LocalIdentity {
    LocalIdentity::new(key(id), role, id as u64 * 7, protocol_hash)
}

/// Moves everything `from` sends on its link `link_from` to `to`, arriving on `to`'s link
/// `link_to`, at `now`.
pub fn pump(from: &mut Room<u32>, link_from: u32, to: &mut Room<u32>, link_to: u32, now: Duration) {
    let mut packets = vec![];
    from.poll_transmit(now, &mut |l, _, p| {
        if l == link_from {
            packets.push(p)
        }
    });
    for p in packets {
        to.handle_packet(link_to, p, now);
    }
}

/// Brings up a link between `a` (its id for it: `la`) and `b` (`lb`) and runs the handshake
/// at time zero.
pub fn connect(a: &mut Room<u32>, b: &mut Room<u32>, la: u32, lb: u32) {
    a.handle_link_up(la);
    b.handle_link_up(lb);
    for _ in 0..4 {
        pump(a, la, b, lb, Duration::ZERO);
        pump(b, lb, a, la, Duration::ZERO);
    }
}
