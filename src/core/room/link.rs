//! One transport link's handshake: its state, what it must send before any session data
//! (our `Hello`, a `Bye`), and when our `Hello` goes out again.
//!
//! webrtc-rs can lose the first messages on a fresh connection (they can reach the answering
//! side before its data channels are ready). So a side that sees its peer bound without having
//! the peer's `Hello` sends its own again, and a side that receives such a repeat while it has
//! no sign the peer has ours answers with its own. Only the first `Hello` is sent unprompted,
//! so nothing else goes out before both sides are up.

use crate::core::{
    peer::PeerId,
    wire::{self, ByeReason},
};
use bytes::{Bytes, BytesMut};
use std::time::Duration;

/// Smallest gap between two `Hello`s on a link.
const HELLO_REPEAT_GAP: Duration = Duration::from_millis(200);

/// Where a link's handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkState {
    /// Waiting for the peer's `Hello`; `since`: when the link was first seen writable in
    /// that state (the handshake timeout counts from there).
    AwaitingHello {
        /// First seen writable and waiting.
        since: Option<Duration>,
    },
    /// Bound to a peer.
    Bound(PeerId),
    /// Ended by us: everything from it is ignored. Kept as a tombstone (a few bytes) until
    /// the transport reports it gone, so that whatever else arrives on it is not taken for a
    /// new link.
    Closed,
}

/// One transport link.
#[derive(Debug)]
pub(super) struct Link {
    state: LinkState,
    /// Records to send on this link before any session data (`Hello`, `Bye`).
    pending: BytesMut,
    /// The transport said the link is up, so packets can go out on it. A link we only heard
    /// from (its data overtook the transport's notice) is not writable yet: matchbox drops
    /// what is sent to a peer whose handshake it has not finished.
    writable: bool,
    /// The peer has bound us on this link: it sent something other than a `Hello` (only a
    /// peer that has our `Hello` does).
    peer_has_our_hello: bool,
    /// Our `Hello` is to go out again.
    hello_wanted: bool,
    /// No `Hello` before this.
    next_hello: Duration,
}

impl Link {
    /// A new link; our `hello` goes out as soon as it is writable.
    pub(super) fn new(hello: &[u8], writable: bool) -> Self {
        Self {
            state: LinkState::AwaitingHello { since: None },
            pending: BytesMut::from(hello),
            writable,
            peer_has_our_hello: false,
            hello_wanted: false,
            next_hello: Duration::ZERO,
        }
    }

    /// The handshake's state.
    pub(super) fn state(&self) -> LinkState {
        self.state
    }

    /// Whether packets can go out on it.
    pub(super) fn writable(&self) -> bool {
        self.writable
    }

    /// The transport reported it up.
    pub(super) fn set_writable(&mut self) {
        self.writable = true;
    }

    /// The peer it is bound to.
    pub(super) fn peer(&self) -> Option<PeerId> {
        match self.state {
            LinkState::Bound(peer) => Some(peer),
            _ => None,
        }
    }

    /// Whether session data can go out on it: writable and bound.
    pub(super) fn ready(&self) -> bool {
        self.writable && self.peer().is_some()
    }

    /// The peer's `Hello` was accepted.
    pub(super) fn bind(&mut self, peer: PeerId) {
        self.state = LinkState::Bound(peer);
    }

    /// Ends it; `bye` (if any) still goes out, after whatever is pending (our `Hello`, if it
    /// has not left yet, so the other side can see a mismatch for itself).
    pub(super) fn close(&mut self, bye: Option<ByeReason>) {
        self.state = LinkState::Closed;
        if let Some(reason) = bye {
            wire::encode_bye(&mut self.pending, reason);
        }
    }

    /// Data came before the peer's `Hello`: the peer has bound us but its `Hello` was lost.
    /// Ours goes out again, which asks for its.
    pub(super) fn data_before_hello(&mut self) {
        self.peer_has_our_hello = true;
        self.hello_wanted = true;
    }

    /// Session data came on the bound link: the peer has our `Hello`.
    pub(super) fn session_data(&mut self) {
        self.peer_has_our_hello = true;
    }

    /// The bound peer sent its `Hello` again: it lacks ours, unless we know it has it.
    pub(super) fn hello_repeated(&mut self) {
        if !self.peer_has_our_hello {
            self.hello_wanted = true;
        }
    }

    /// Whether a writable link has waited `timeout` for the peer's `Hello` by `now`; if so it
    /// is closed without a `Bye` (whatever we send may be what does not get through).
    pub(super) fn handshake_expired(&mut self, now: Duration, timeout: Duration) -> bool {
        let LinkState::AwaitingHello { since } = &mut self.state else {
            return false;
        };
        if !self.writable {
            return false;
        }
        let since = *since.get_or_insert(now);
        if now.saturating_sub(since) < timeout {
            return false;
        }
        self.state = LinkState::Closed;
        self.pending.clear();
        true
    }

    /// The next instant this link needs the room to run, given the handshake `timeout`.
    pub(super) fn poll_timeout(&self, now: Duration, timeout: Duration) -> Option<Duration> {
        if !self.writable {
            return None;
        }
        let mut next: Option<Duration> = None;
        let mut at = |t: Duration| next = Some(next.map_or(t, |n| n.min(t)));
        if !self.pending.is_empty() {
            at(now);
        }
        if let LinkState::AwaitingHello { since } = self.state {
            at(since.map_or(now, |since| since + timeout));
        }
        if self.hello_wanted && self.state != LinkState::Closed {
            at(self.next_hello);
        }
        next
    }

    /// The handshake records due now, if any (`hello`: our `Hello`, for a repeat).
    pub(super) fn poll_transmit(&mut self, now: Duration, hello: &[u8]) -> Option<Bytes> {
        if !self.writable {
            return None;
        }
        if self.pending.is_empty() {
            if self.hello_wanted && self.state != LinkState::Closed && now >= self.next_hello {
                self.pending.extend_from_slice(hello);
                self.hello_wanted = false;
                self.next_hello = now + HELLO_REPEAT_GAP;
            }
        } else {
            // The first Hello (or a Bye) leaves now; a repeat waits the gap after it.
            self.next_hello = now + HELLO_REPEAT_GAP;
        }
        (!self.pending.is_empty()).then(|| self.pending.split().freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_first_hello_goes_once_writable_and_a_repeat_waits_the_gap() {
        let mut link = Link::new(b"hello", false);
        assert_eq!(link.poll_transmit(Duration::ZERO, b"hello"), None);
        link.set_writable();
        assert_eq!(link.poll_timeout(MS, 5000 * MS), Some(MS));
        assert_eq!(
            link.poll_transmit(MS, b"hello").as_deref(),
            Some(&b"hello"[..])
        );
        link.data_before_hello();
        assert!(
            !link.handshake_expired(100 * MS, 5000 * MS),
            "the clock starts"
        );
        assert_eq!(link.poll_transmit(100 * MS, b"hello"), None, "the gap");
        assert_eq!(link.poll_timeout(100 * MS, 5000 * MS), Some(201 * MS));
        assert!(link.poll_transmit(201 * MS, b"hello").is_some());
        assert_eq!(link.poll_transmit(500 * MS, b"hello"), None, "asked once");
    }

    #[test]
    fn a_peer_that_has_our_hello_gets_no_repeat() {
        let mut link = Link::new(b"hello", true);
        link.poll_transmit(Duration::ZERO, b"hello");
        link.bind(PeerId(2));
        link.session_data();
        link.hello_repeated();
        assert_eq!(link.poll_transmit(SECOND_LATER, b"hello"), None);
        assert!(link.ready());
    }

    const SECOND_LATER: Duration = Duration::from_secs(1);

    #[test]
    fn a_handshake_that_never_comes_closes_the_link_quietly() {
        let mut link = Link::new(b"hello", true);
        assert!(!link.handshake_expired(MS, 100 * MS), "the clock starts");
        assert!(!link.handshake_expired(100 * MS, 100 * MS));
        assert!(link.handshake_expired(101 * MS, 100 * MS));
        assert_eq!(link.state(), LinkState::Closed);
        assert_eq!(link.poll_transmit(200 * MS, b"hello"), None, "no Bye");
    }

    #[test]
    fn a_bye_follows_what_is_pending() {
        let mut link = Link::new(b"hello", true);
        link.close(Some(ByeReason::RoomFull));
        let sent = link.poll_transmit(Duration::ZERO, b"hello").unwrap();
        assert!(sent.starts_with(b"hello") && sent.len() > 5);
        assert_eq!(link.peer(), None);
    }
}
