//! Peer identity: our own stable [`PeerId`] (not matchbox's per-socket uuid) and [`Role`].

use std::fmt;

/// A peer's stable identity: drawn at random once per app (or supplied by the game), the same
/// on every link and across reconnects, unlike matchbox's per-socket id.
///
/// Displays as 8 hex digits (the full id with `{:#}`). Serde: its number, so games can put
/// it in their messages and replicated components ("who scored").
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct PeerId(pub u128);

impl PeerId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(random_u128())
    }
}

/// 128 random bits from the OS (the browser's `crypto.getRandomValues` on wasm). Should the OS
/// refuse, falls back to hashing the wall clock (native), a per-process counter and a stack
/// address: unique enough for ids, not for secrets.
pub(crate) fn random_u128() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static FALLBACKS: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_ok() {
        return u128::from_le_bytes(bytes);
    }
    #[cfg(not(target_arch = "wasm32"))]
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    #[cfg(target_arch = "wasm32")]
    let clock = 0u128;
    let count = FALLBACKS.fetch_add(1, Ordering::Relaxed);
    let address = &bytes as *const _ as usize as u64;
    let (clock, count, address) = (
        clock.to_le_bytes(),
        count.to_le_bytes(),
        address.to_le_bytes(),
    );
    let a = crate::core::codec::hash64([clock.as_slice(), &count, &address]);
    let b = crate::core::codec::hash64([&a.to_le_bytes(), b"peer-id".as_slice()]);
    ((a as u128) << 64) | b as u128
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{:032x}", self.0)
        } else {
            write!(f, "{:08x}", (self.0 >> 96) as u32)
        }
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

/// A peer's part in the room.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Role {
    /// The room's authority: called `host()`.
    Host,
    /// Called `join()`.
    Joiner,
}

impl Role {
    pub(crate) fn to_wire(self) -> u8 {
        match self {
            Role::Joiner => 0,
            Role::Host => 1,
        }
    }
    pub(crate) fn from_wire(v: u8) -> Self {
        if v == 1 { Role::Host } else { Role::Joiner }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Host => "host",
            Role::Joiner => "joiner",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_short_and_alternate_is_full() {
        let id = PeerId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(id.to_string(), "01234567");
        assert_eq!(format!("{id:#}"), "0123456789abcdef0011223344556677");
        assert_ne!(PeerId::random(), PeerId::random());
    }
}
