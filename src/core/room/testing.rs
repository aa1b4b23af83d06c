//! Rooms wired to each other by hand, for the core's tests and the benches (through
//! `internals::testing`): no transport, the caller's clock.

use crate::core::{
    peer::{PeerId, Role},
    room::{LocalIdentity, Room},
};
use std::time::Duration;

/// Who a test room is: `id`, `role`, an incarnation derived from the id, `protocol_hash`.
pub fn identity(id: u128, role: Role, protocol_hash: u64) -> LocalIdentity {
    LocalIdentity {
        id: PeerId(id),
        role,
        incarnation: id as u64 * 7,
        protocol_hash,
    }
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
    for _ in 0..3 {
        pump(a, la, b, lb, Duration::ZERO);
        pump(b, lb, a, la, Duration::ZERO);
    }
}
