//! One transport link's handshake: its state, what it must send before any session data (our
//! `Hello`, our `Auth`, a `Welcome`, a `Bye`), and when that bundle goes out again.
//!
//! The handshake on every link: both sides send `Hello` (public key, a nonce for this link);
//! each side, once it has the other's `Hello`, sends its `Auth` (a signature over both, see
//! [`auth`](crate::core::auth)). A verified peer is then *bound* at once, or after a wait:
//! a host waits for the game's admission decision, a joiner waits for its host's `Welcome`
//! (the host admitted it), and for another joiner, until the host has admitted that one.
//!
//! webrtc-rs can lose the first messages on a fresh connection (they can reach the answering
//! side before its data channels are ready). So a side that sees its peer bound without having
//! the peer's whole handshake sends its own again, and a side that receives such a repeat
//! while it has no sign the peer has ours answers with its own. Only the first bundle is sent
//! unprompted, so nothing else goes out before both sides are up.

use crate::core::{
    auth::{LinkBinding, PublicKey},
    peer::{PeerId, Role},
    wire::{self, ByeReason, Hello},
};
use bytes::{Bytes, BytesMut};
use std::time::Duration;

/// Smallest gap between two repeats of our handshake on a link.
const HELLO_REPEAT_GAP: Duration = Duration::from_millis(200);

/// The most handshake records (`Hello`, `Auth`) a link may bring before it is bound. An
/// honest peer sends a handful (repeats after losses); more is a flood, and the link ends.
pub(super) const MAX_HANDSHAKE_RECORDS: u32 = 32;

/// What a verified peer's link waits for before it is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// Host: the game's admission decision.
    Decision,
    /// Joiner: the host's `Welcome`.
    Welcome,
    /// Joiner: the host to admit this (other) joiner.
    Roster,
}

/// A peer whose proof checked out, waiting to be bound.
#[derive(Debug, Clone)]
pub(super) struct Verified {
    /// Its id (derived from its key).
    pub peer: PeerId,
    /// Its key.
    pub key: PublicKey,
    /// Host or joiner.
    pub role: Role,
    /// Its incarnation.
    pub incarnation: u64,
    /// Our host it replaces (see `Admission::Accept`).
    pub replaces_host: Option<PeerId>,
    /// What it waits for.
    pub wait: Wait,
    /// Since when.
    pub since: Duration,
}

/// Where a link's handshake stands.
#[derive(Debug, Clone)]
pub(super) enum LinkState {
    /// Waiting for the peer's `Hello`; `since`: when the link was first seen writable in
    /// that state (the handshake timeout counts from there).
    AwaitingHello {
        /// First seen writable and waiting.
        since: Option<Duration>,
    },
    /// We have the peer's `Hello` (and sent our `Auth`); waiting for its `Auth`.
    AwaitingAuth {
        /// As for `AwaitingHello`.
        since: Option<Duration>,
        /// The peer's `Hello`.
        hello: Hello,
    },
    /// The peer proved who it is; waiting to be bound.
    Verified(Box<Verified>),
    /// Bound to a peer.
    Bound(PeerId),
    /// Ended by us: everything from it is ignored. Kept as a tombstone (a few bytes) until
    /// the transport reports it gone, so that whatever else arrives on it is not taken for a
    /// new link.
    Closed,
}

/// One transport link.
#[derive(Debug, Clone)]
pub(super) struct Link {
    state: LinkState,
    /// The link's two ends, as the signaling server named them.
    binding: LinkBinding,
    /// Our `Hello` on this link (its nonce is this link's own).
    hello: Bytes,
    /// Our handshake so far (`Hello`, then `Auth`, then `Welcome`), for repeats.
    bundle: BytesMut,
    /// Records to send on this link before any session data (the handshake, a `Bye`).
    pending: BytesMut,
    /// The transport said the link is up, so packets can go out on it. A link we only heard
    /// from (its data overtook the transport's notice) is not writable yet: matchbox drops
    /// what is sent to a peer whose handshake it has not finished.
    writable: bool,
    /// The peer has bound us on this link: it sent something other than handshake records
    /// (only a peer that has our whole handshake does).
    peer_has_our_hello: bool,
    /// Our handshake is to go out again.
    hello_wanted: bool,
    /// No repeat before this.
    next_hello: Duration,
    /// Handshake records received so far.
    handshake_records: u32,
    /// Bound: when the last packet came on it (a standby link unused this long is closed).
    heard: Duration,
}

impl Link {
    /// A new link; our `hello` goes out as soon as it is writable.
    pub(super) fn new(hello: Bytes, binding: LinkBinding, writable: bool) -> Self {
        Self {
            state: LinkState::AwaitingHello { since: None },
            binding,
            bundle: BytesMut::from(&hello[..]),
            pending: BytesMut::from(&hello[..]),
            hello,
            writable,
            peer_has_our_hello: false,
            hello_wanted: false,
            next_hello: Duration::ZERO,
            handshake_records: 0,
            heard: Duration::ZERO,
        }
    }

    /// The handshake's state.
    pub(super) fn state(&self) -> &LinkState {
        &self.state
    }

    /// The link's binding.
    pub(super) fn binding(&self) -> &LinkBinding {
        &self.binding
    }

    /// Our `Hello` on it, as sent.
    pub(super) fn our_hello(&self) -> &Bytes {
        &self.hello
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

    /// The verified peer waiting on it, if any.
    pub(super) fn verified(&self) -> Option<&Verified> {
        match &self.state {
            LinkState::Verified(v) => Some(v),
            _ => None,
        }
    }

    /// Whether session data can go out on it: writable and bound.
    pub(super) fn ready(&self) -> bool {
        self.writable && self.peer().is_some()
    }

    /// One more handshake record came; `false` once the link has brought too many.
    pub(super) fn count_handshake_record(&mut self) -> bool {
        self.handshake_records += 1;
        self.handshake_records <= MAX_HANDSHAKE_RECORDS
    }

    /// The peer's `Hello` came; `auth` (our `Auth` record for it) goes out.
    pub(super) fn got_hello(&mut self, hello: Hello, auth: &[u8]) {
        let since = match self.state {
            LinkState::AwaitingHello { since } => since,
            _ => None,
        };
        self.state = LinkState::AwaitingAuth { since, hello };
        self.pending.extend_from_slice(auth);
        self.bundle.extend_from_slice(auth);
    }

    /// The peer proved who it is and waits to be bound.
    pub(super) fn verify(&mut self, verified: Verified) {
        self.state = LinkState::Verified(Box::new(verified));
    }

    /// The peer is bound at `now`; `welcome`: we are its host and admit it (a `Welcome` goes
    /// out).
    pub(super) fn bind(&mut self, peer: PeerId, welcome: bool, now: Duration) {
        self.state = LinkState::Bound(peer);
        self.heard = now;
        if welcome {
            wire::encode_welcome(&mut self.pending);
            wire::encode_welcome(&mut self.bundle);
        }
    }

    /// Ends it; `bye` (if any) still goes out, after whatever is pending (our `Hello`, if it
    /// has not left yet, so the other side can see a mismatch for itself).
    pub(super) fn close(&mut self, bye: Option<ByeReason>) {
        self.state = LinkState::Closed;
        if let Some(reason) = bye {
            wire::encode_bye(&mut self.pending, reason);
        }
    }

    /// Ends it before anything went out on it: nothing is sent, ever.
    pub(super) fn refuse(&mut self) {
        self.state = LinkState::Closed;
        self.pending.clear();
        self.hello_wanted = false;
    }

    /// Whether it is still in its handshake (not bound, not closed).
    pub(super) fn in_handshake(&self) -> bool {
        matches!(
            self.state,
            LinkState::AwaitingHello { .. }
                | LinkState::AwaitingAuth { .. }
                | LinkState::Verified(_)
        )
    }

    /// Data came before the peer's handshake was complete here: the peer has bound us but
    /// part of its handshake was lost. Ours goes out again, which asks for its.
    pub(super) fn data_before_hello(&mut self) {
        self.peer_has_our_hello = true;
        self.hello_wanted = true;
    }

    /// A packet came on the bound link at `now`.
    pub(super) fn heard(&mut self, now: Duration) {
        self.heard = now;
    }

    /// Bound: when the last packet came on it (or it was bound).
    pub(super) fn last_heard(&self) -> Duration {
        self.heard
    }

    /// Session data came on the bound link: the peer has our handshake.
    pub(super) fn session_data(&mut self) {
        self.peer_has_our_hello = true;
    }

    /// The peer sent its `Hello` again: it lacks ours, unless we know it has it.
    pub(super) fn hello_repeated(&mut self) {
        if !self.peer_has_our_hello {
            self.hello_wanted = true;
        }
    }

    /// When the handshake clock started, for the states that have one.
    fn handshake_since(&mut self) -> Option<&mut Option<Duration>> {
        match &mut self.state {
            LinkState::AwaitingHello { since } | LinkState::AwaitingAuth { since, .. } => {
                Some(since)
            }
            _ => None,
        }
    }

    /// Whether a writable link has waited `timeout` for the peer's handshake by `now`; if so it
    /// is closed without a `Bye` (whatever we send may be what does not get through).
    pub(super) fn handshake_expired(&mut self, now: Duration, timeout: Duration) -> bool {
        if !self.writable {
            return false;
        }
        let Some(since) = self.handshake_since() else {
            return false;
        };
        let since = *since.get_or_insert(now);
        if now.saturating_sub(since) < timeout {
            return false;
        }
        self.state = LinkState::Closed;
        self.pending.clear();
        true
    }

    /// The next instant this link needs the room to run, given the handshake `timeout` and the
    /// longest a verified peer may `wait` to be bound.
    pub(super) fn poll_timeout(
        &self,
        now: Duration,
        timeout: Duration,
        wait: impl Fn(Wait) -> Duration,
    ) -> Option<Duration> {
        if !self.writable {
            return None;
        }
        let mut next: Option<Duration> = None;
        let mut at = |t: Duration| next = Some(next.map_or(t, |n| n.min(t)));
        if !self.pending.is_empty() {
            at(now);
        }
        match &self.state {
            LinkState::AwaitingHello { since } | LinkState::AwaitingAuth { since, .. } => {
                at(since.map_or(now, |since| since + timeout))
            }
            LinkState::Verified(v) => at(v.since + wait(v.wait)),
            _ => {}
        }
        if self.hello_wanted && !matches!(self.state, LinkState::Closed) {
            at(self.next_hello);
        }
        next
    }

    /// The handshake records due now, if any.
    pub(super) fn poll_transmit(&mut self, now: Duration) -> Option<Bytes> {
        if !self.writable {
            return None;
        }
        if self.pending.is_empty() {
            if self.hello_wanted
                && !matches!(self.state, LinkState::Closed)
                && now >= self.next_hello
            {
                self.pending.extend_from_slice(&self.bundle);
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

    fn link(writable: bool) -> Link {
        Link::new(
            Bytes::from_static(b"hello"),
            LinkBinding::new(1, 2),
            writable,
        )
    }

    fn no_wait(_: Wait) -> Duration {
        Duration::from_secs(10)
    }

    #[test]
    fn the_first_hello_goes_once_writable_and_a_repeat_waits_the_gap() {
        let mut link = link(false);
        assert_eq!(link.poll_transmit(Duration::ZERO), None);
        link.set_writable();
        assert_eq!(link.poll_timeout(MS, 5000 * MS, no_wait), Some(MS));
        assert_eq!(link.poll_transmit(MS).as_deref(), Some(&b"hello"[..]));
        link.data_before_hello();
        assert!(
            !link.handshake_expired(100 * MS, 5000 * MS),
            "the clock starts"
        );
        assert_eq!(link.poll_transmit(100 * MS), None, "the gap");
        assert_eq!(
            link.poll_timeout(100 * MS, 5000 * MS, no_wait),
            Some(201 * MS)
        );
        assert!(link.poll_transmit(201 * MS).is_some());
        assert_eq!(link.poll_transmit(500 * MS), None, "asked once");
    }

    #[test]
    fn a_repeat_carries_the_whole_handshake_so_far() {
        let mut link = link(true);
        link.poll_transmit(Duration::ZERO);
        let hello = Hello {
            version: wire::PROTOCOL_VERSION,
            protocol_hash: 0,
            public_key: [0; 32],
            nonce: [0; 16],
            incarnation: 0,
            role: 0,
        };
        link.got_hello(hello, b"+auth");
        assert_eq!(
            link.poll_transmit(MS).as_deref(),
            Some(&b"+auth"[..]),
            "the Auth follows the Hello"
        );
        link.hello_repeated();
        assert_eq!(
            link.poll_transmit(SECOND_LATER).as_deref(),
            Some(&b"hello+auth"[..])
        );
    }

    #[test]
    fn a_peer_that_has_our_hello_gets_no_repeat() {
        let mut link = link(true);
        link.poll_transmit(Duration::ZERO);
        link.bind(PeerId(2), false, Duration::ZERO);
        link.session_data();
        link.hello_repeated();
        assert_eq!(link.poll_transmit(SECOND_LATER), None);
        assert!(link.ready());
    }

    const SECOND_LATER: Duration = Duration::from_secs(1);

    #[test]
    fn a_handshake_that_never_comes_closes_the_link_quietly() {
        let mut link = link(true);
        assert!(!link.handshake_expired(MS, 100 * MS), "the clock starts");
        assert!(!link.handshake_expired(100 * MS, 100 * MS));
        assert!(link.handshake_expired(101 * MS, 100 * MS));
        assert!(matches!(link.state(), LinkState::Closed));
        assert_eq!(link.poll_transmit(200 * MS), None, "no Bye");
    }

    #[test]
    fn a_bye_follows_what_is_pending() {
        let mut link = link(true);
        link.close(Some(ByeReason::RoomFull));
        let sent = link.poll_transmit(Duration::ZERO).unwrap();
        assert!(sent.starts_with(b"hello") && sent.len() > 5);
        assert_eq!(link.peer(), None);
    }

    #[test]
    fn a_flood_of_handshake_records_is_cut_off() {
        let mut link = link(true);
        for _ in 0..MAX_HANDSHAKE_RECORDS {
            assert!(link.count_handshake_record());
        }
        assert!(!link.count_handshake_record());
    }
}
