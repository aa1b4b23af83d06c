//! The link conditioner: rehearse a bad network without root. Sans-IO and Bevy-free.
//!
//! It sits *above* WebRTC, on the packets the plugin receives from peers it has shaken hands
//! with: it delays them (latency plus jitter), drops a fraction of them, or drops everything
//! for a while (a blackout). So it simulates loss to our layer (our acks, retransmits,
//! liveness and reconnect all react to it) but not to SCTP or ICE underneath, which keep
//! working normally. The handshake of a new link is exempt, so that reconnects can complete.

use crate::core::rng::Rng;
use std::{cmp::Reverse, collections::BinaryHeap, time::Duration};

/// What the conditioner does to incoming packets.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkConditionerConfig {
    /// Added to every packet's delivery.
    pub latency: Duration,
    /// Up to this much more, at random per packet (so packets also get reordered).
    pub jitter: Duration,
    /// Fraction of packets dropped, `0.0..=1.0`.
    pub loss: f32,
}

/// Most packets held at once; past that, packets are dropped (the conditioner must not become
/// an unbounded buffer itself).
pub(crate) const MAX_HELD: usize = 65_536;

#[derive(Debug)]
struct Held<T> {
    due: Duration,
    order: u64,
    item: T,
}

impl<T> PartialEq for Held<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl<T> Eq for Held<T> {}
impl<T> PartialOrd for Held<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Held<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

/// A conditioner at work: holds items until they are due.
#[derive(Debug)]
pub(crate) struct LinkConditioner<T> {
    /// Current settings (may change at any time).
    pub settings: LinkConditionerConfig,
    blackout_until: Duration,
    random: Rng,
    held: BinaryHeap<Reverse<Held<T>>>,
    order: u64,
}

impl<T> LinkConditioner<T> {
    /// A conditioner with a random seed.
    pub(crate) fn new(settings: LinkConditionerConfig, seed: u64) -> Self {
        Self {
            settings,
            blackout_until: Duration::ZERO,
            random: Rng::new(seed),
            held: BinaryHeap::new(),
            order: 0,
        }
    }

    /// Drops everything that arrives until `until`.
    pub(crate) fn blackout(&mut self, until: Duration) {
        self.blackout_until = self.blackout_until.max(until);
    }

    /// Whether a blackout is on at `now`.
    pub(crate) fn in_blackout(&self, now: Duration) -> bool {
        now < self.blackout_until
    }

    /// Offers an item that arrives at `now`: dropped, or held until due.
    pub(crate) fn admit(&mut self, now: Duration, item: T) {
        if self.in_blackout(now)
            || self.held.len() >= MAX_HELD
            || (self.settings.loss > 0.0 && self.random.next_f32() < self.settings.loss)
        {
            return;
        }
        let extra = self.settings.jitter.mul_f32(self.random.next_f32());
        self.order += 1;
        self.held.push(Reverse(Held {
            due: now + self.settings.latency + extra,
            order: self.order,
            item,
        }));
    }

    /// When the earliest held item is due.
    pub(crate) fn poll_timeout(&self) -> Option<Duration> {
        self.held.peek().map(|Reverse(h)| h.due)
    }

    /// Hands every item due by `now` to `f`, earliest first.
    pub(crate) fn release(&mut self, now: Duration, mut f: impl FnMut(T)) {
        while self.held.peek().is_some_and(|Reverse(h)| h.due <= now) {
            if let Some(Reverse(h)) = self.held.pop() {
                f(h.item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn latency_delays_and_loss_drops_about_its_share() {
        let mut c = LinkConditioner::new(
            LinkConditionerConfig {
                latency: 50 * MS,
                jitter: Duration::ZERO,
                loss: 0.2,
            },
            99,
        );
        for i in 0..10_000u32 {
            c.admit(Duration::ZERO, i);
        }
        let mut out = vec![];
        c.release(49 * MS, |i| out.push(i));
        assert!(out.is_empty());
        c.release(50 * MS, |i| out.push(i));
        let lost = 10_000 - out.len();
        assert!((1_700..2_300).contains(&lost), "{lost} lost");
        assert!(
            out.windows(2).all(|w| w[0] < w[1]),
            "no jitter, no reordering"
        );
    }

    #[test]
    fn jitter_reorders_and_blackout_drops_everything() {
        let mut c = LinkConditioner::new(
            LinkConditionerConfig {
                latency: 10 * MS,
                jitter: 20 * MS,
                loss: 0.0,
            },
            5,
        );
        for i in 0..100u32 {
            c.admit(Duration::ZERO, i);
        }
        let mut out = vec![];
        c.release(30 * MS, |i| out.push(i));
        assert_eq!(out.len(), 100);
        assert!(out.windows(2).any(|w| w[0] > w[1]), "reordered");
        c.blackout(100 * MS);
        c.admit(50 * MS, 1);
        c.admit(100 * MS, 2);
        let mut out = vec![];
        c.release(Duration::from_secs(1), |i| out.push(i));
        assert_eq!(
            out,
            vec![2],
            "the packet admitted during the blackout is gone"
        );
    }
}
