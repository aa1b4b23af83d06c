//! Packet loss, measured with probes: a `Ping` sent on the unreliable channel every
//! `ping_interval`, whose `Pong` comes back on the reliable one. A probe with no answer within
//! a grace period was lost on the way out; the share of such probes among the recent ones is
//! the loss that this peer's unreliable messages see.

use std::{collections::VecDeque, time::Duration};

/// Probes the estimate looks back over (10 s at the default 250 ms interval).
const WINDOW: usize = 40;
/// Settled probes needed before the estimate means anything.
const MIN_SETTLED: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Probe {
    nonce: u64,
    sent: Duration,
    answered: bool,
}

/// The recent probes and their answers. Bounded: at most [`WINDOW`] + the probes still
/// within their grace period, and never more than twice the window.
#[derive(Debug, Clone, Default)]
pub(crate) struct LossMeter {
    probes: VecDeque<Probe>,
}

impl LossMeter {
    /// A probe with `nonce` left at `now`.
    pub(crate) fn sent(&mut self, nonce: u64, now: Duration) {
        if self.probes.len() >= 2 * WINDOW {
            self.probes.pop_front();
        }
        self.probes.push_back(Probe {
            nonce,
            sent: now,
            answered: false,
        });
    }

    /// A pong for `nonce` came back: true if it answers one of our probes.
    pub(crate) fn answered(&mut self, nonce: u64) -> bool {
        match self.probes.iter_mut().rev().find(|p| p.nonce == nonce) {
            Some(probe) => {
                probe.answered = true;
                true
            }
            None => false,
        }
    }

    /// Forgets everything (a new link: the old one's probes say nothing about it).
    pub(crate) fn reset(&mut self) {
        self.probes.clear();
    }

    /// The share (0 to 1) of the last settled probes (sent more than `grace` before `now`)
    /// that got no answer; `None` until enough have settled.
    pub(crate) fn loss(&mut self, now: Duration, grace: Duration) -> Option<f64> {
        let settled = self
            .probes
            .iter()
            .take_while(|p| p.sent + grace <= now)
            .count();
        // Keep the window's worth of settled ones.
        for _ in WINDOW..settled {
            self.probes.pop_front();
        }
        let settled = settled.min(WINDOW);
        if settled < MIN_SETTLED {
            return None;
        }
        let lost = self
            .probes
            .iter()
            .take(settled)
            .filter(|p| !p.answered)
            .count();
        Some(lost as f64 / settled as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const GRACE: Duration = Duration::from_secs(1);

    #[test]
    fn counts_unanswered_probes_once_their_grace_is_over() {
        let mut m = LossMeter::default();
        for i in 0..20u64 {
            m.sent(i, i as u32 * 250 * MS);
            if i % 4 != 0 {
                assert!(m.answered(i));
            }
        }
        // At 4.75 s only the probes sent up to 3.75 s are settled: 16 of them, 4 lost.
        assert_eq!(m.loss(4750 * MS, GRACE), Some(0.25));
        assert!(!m.answered(999), "not ours");
    }

    #[test]
    fn says_nothing_until_enough_probes_settled() {
        let mut m = LossMeter::default();
        for i in 0..7u64 {
            m.sent(i, i as u32 * 250 * MS);
        }
        assert_eq!(m.loss(10_000 * MS, GRACE), None);
        m.sent(7, 1750 * MS);
        assert_eq!(m.loss(10_000 * MS, GRACE), Some(1.0));
        m.reset();
        assert_eq!(m.loss(10_000 * MS, GRACE), None);
    }

    #[test]
    fn looks_at_the_recent_window_only_and_stays_bounded() {
        let mut m = LossMeter::default();
        // 10 s of total loss, then 20 s of none.
        for i in 0..120u64 {
            m.sent(i, i as u32 * 250 * MS);
            if i >= 40 {
                m.answered(i);
            }
            m.loss(i as u32 * 250 * MS, GRACE);
            assert!(m.probes.len() <= 2 * WINDOW);
        }
        assert_eq!(m.loss(31_000 * MS, GRACE), Some(0.0));
        // Nobody calls `loss`: still bounded.
        for i in 0..1000u64 {
            m.sent(i, Duration::ZERO);
        }
        assert!(m.probes.len() <= 2 * WINDOW);
    }
}
