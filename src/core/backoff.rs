//! Exponential backoff with a random spread, for re-opening the socket. Sans-IO: the random
//! value is passed in, so tests are deterministic.

use std::time::Duration;

/// Delays between reconnect attempts: `base * factor^(n-1)`, capped, minus up to `spread` of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// Delay before the second attempt (the first one is immediate).
    pub base: Duration,
    /// Growth per attempt.
    pub factor: f32,
    /// Largest delay.
    pub cap: Duration,
    /// Fraction (0..=1) of each delay that is randomly taken off, so that peers that lost the
    /// same server do not all come back in the same millisecond.
    pub spread: f32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            factor: 2.0,
            cap: Duration::from_secs(1),
            spread: 0.2,
        }
    }
}

impl Backoff {
    /// The wait after failed attempt number `attempt` (1 = the first failure). `random` is a
    /// uniform value in `0.0..1.0`.
    pub fn delay(&self, attempt: u32, random: f32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let growth = self
            .factor
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let raw = self.base.as_secs_f64() * growth as f64;
        let capped = raw.min(self.cap.as_secs_f64()).max(0.0);
        let cut = capped * (self.spread.clamp(0.0, 1.0) * random.clamp(0.0, 1.0)) as f64;
        Duration::from_secs_f64(capped - cut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::Rng;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            factor: 2.0,
            cap: Duration::from_secs(1),
            spread: 0.0,
        };
        let ms: Vec<u128> = (0..8).map(|n| b.delay(n, 0.5).as_millis()).collect();
        assert_eq!(ms, vec![0, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(1));
    }

    #[test]
    fn spread_takes_off_at_most_its_fraction() {
        let b = Backoff {
            spread: 0.25,
            ..Backoff::default()
        };
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(75));
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let r = rng.next_f32();
            assert!((0.0..1.0).contains(&r));
            let d = b.delay(3, r);
            assert!(d <= Duration::from_millis(400) && d >= Duration::from_millis(300));
        }
    }
}
