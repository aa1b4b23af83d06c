//! Exponential backoff with jitter, for re-opening the socket. Sans-IO: the random source is
//! passed in, so tests are deterministic.

use std::time::Duration;

/// Delays between reconnect attempts: `base * factor^(n-1)`, capped, minus up to `jitter` of it.
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
    pub jitter: f32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            factor: 2.0,
            cap: Duration::from_secs(1),
            jitter: 0.2,
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
        let cut = capped * (self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0)) as f64;
        Duration::from_secs_f64(capped - cut)
    }
}

/// A tiny deterministic random source (xorshift64*), seeded once per app.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// A source seeded with `seed` (any value; zero is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next value in `0.0..1.0`.
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (v >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            factor: 2.0,
            cap: Duration::from_secs(1),
            jitter: 0.0,
        };
        let ms: Vec<u128> = (0..8).map(|n| b.delay(n, 0.5).as_millis()).collect();
        assert_eq!(ms, vec![0, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let b = Backoff {
            jitter: 0.25,
            ..Backoff::default()
        };
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(75));
        let mut j = Jitter::new(7);
        for _ in 0..1000 {
            let r = j.next_f32();
            assert!((0.0..1.0).contains(&r));
            let d = b.delay(3, r);
            assert!(d <= Duration::from_millis(400) && d >= Duration::from_millis(300));
        }
    }

    #[test]
    fn jitter_source_spreads_values() {
        let mut j = Jitter::new(0);
        let values: Vec<f32> = (0..1000).map(|_| j.next_f32()).collect();
        let low = values.iter().filter(|v| **v < 0.5).count();
        assert!((400..600).contains(&low), "{low}");
    }
}
