//! The crate's one random-number generator: xorshift64*, small, fast and deterministic for a
//! given seed. It spreads reconnect delays, drives the link conditioner and feeds the core's
//! randomised tests. Not for secrets.

/// A xorshift64* generator.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value; zero, which xorshift cannot leave, is
    /// replaced).
    pub(crate) fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The next value in `0.0..1.0`.
    pub(crate) fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_in_range_and_spread() {
        for seed in [0, 1, 7, u64::MAX] {
            let mut rng = Rng::new(seed);
            let values: Vec<f32> = (0..1000).map(|_| rng.next_f32()).collect();
            assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
            let low = values.iter().filter(|v| **v < 0.5).count();
            assert!(
                (400..600).contains(&low),
                "seed {seed}: {low} of 1000 below 0.5"
            );
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
