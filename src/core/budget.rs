//! Per-peer budgets: how much one peer may make us do, whatever its messages say. Sizes and
//! buffered bytes are bounded by the session's limits ([`SessionConfig`](crate::SessionConfig));
//! the rates here bound the work: messages and bytes per second, new links per minute.

use std::time::Duration;

/// Which budget a peer went over (see [`Budgets`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    /// [`Budgets::messages_per_second`].
    MessagesPerSecond,
    /// [`Budgets::bytes_per_second`].
    BytesPerSecond,
    /// [`Budgets::links_per_minute`].
    LinksPerMinute,
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::MessagesPerSecond => "messages per second",
            Self::BytesPerSecond => "bytes per second",
            Self::LinksPerMinute => "new links per minute",
        })
    }
}

/// What each peer may send us. A peer over any of them is dropped with
/// [`PeerErrorKind::OverBudget`](crate::PeerErrorKind::OverBudget) naming the budget; every
/// other peer carries on.
///
/// Rates are measured as token buckets that hold `burst` worth of the rate, so a peer may
/// catch up after a stall (a reconnect's resends, a hidden tab) without tripping them.
///
/// The defaults are far above what a game at 60 Hz sends (500 messages and 1 MiB per frame,
/// sustained), so only a flood trips them. A game that streams bulk data faster (a level
/// download at full speed on a LAN) raises `bytes_per_second`.
///
/// ```
/// use bevy_peer_message::prelude::*;
///
/// let plugin = PeerMessagePlugin::default().budgets(Budgets {
///     messages_per_second: 2_000,
///     ..Budgets::default()
/// });
/// # let _ = plugin;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Messages (records: a whole message, a fragment of a large one, an unreliable one)
    /// per second.
    pub messages_per_second: u32,
    /// Payload bytes per second.
    pub bytes_per_second: u64,
    /// How much of a rate may come at once: the bucket holds `burst` worth of it.
    pub burst: Duration,
    /// New links one peer may bind per minute (each a fresh handshake with a signature to
    /// check). An honest peer makes one per reconnect, and the reconnect policy's backoff
    /// keeps that far below the default of 60.
    pub links_per_minute: u32,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            messages_per_second: 30_000,
            bytes_per_second: 64 << 20,
            burst: Duration::from_secs(2),
            links_per_minute: 60,
        }
    }
}

impl Budgets {
    /// No rate limits at all (benchmarks; a trusted LAN).
    pub fn unlimited() -> Self {
        Self {
            messages_per_second: u32::MAX,
            bytes_per_second: u64::MAX,
            burst: Duration::from_secs(1),
            links_per_minute: u32::MAX,
        }
    }
}

/// A token bucket: refills at `rate` per second up to `rate × burst`.
#[derive(Debug, Clone)]
struct Bucket {
    rate: u64,
    capacity: u64,
    tokens: u64,
    /// Sub-token remainder of the last refill, in rate × nanoseconds.
    carry: u128,
    at: Duration,
}

impl Bucket {
    fn new(rate: u64, burst: Duration, now: Duration) -> Self {
        let capacity =
            (rate as u128 * burst.as_nanos() / 1_000_000_000).clamp(1, u64::MAX as u128) as u64;
        Self {
            rate,
            capacity,
            tokens: capacity,
            carry: 0,
            at: now,
        }
    }

    fn take(&mut self, now: Duration, n: u64) -> bool {
        if self.rate == u64::MAX {
            return true;
        }
        if now > self.at {
            let scaled = self.rate as u128 * (now - self.at).as_nanos() + self.carry;
            let add = scaled / 1_000_000_000;
            self.carry = scaled % 1_000_000_000;
            self.tokens = (self.tokens as u128 + add).min(self.capacity as u128) as u64;
            if self.tokens == self.capacity {
                self.carry = 0;
            }
            self.at = now;
        }
        match self.tokens.checked_sub(n) {
            Some(left) => {
                self.tokens = left;
                true
            }
            None => false,
        }
    }
}

/// One peer's message and byte rates.
#[derive(Debug, Clone)]
pub(crate) struct RateMeter {
    messages: Bucket,
    bytes: Bucket,
}

impl RateMeter {
    /// A full meter for `budgets`.
    pub(crate) fn new(budgets: &Budgets, now: Duration) -> Self {
        let messages = if budgets.messages_per_second == u32::MAX {
            u64::MAX
        } else {
            budgets.messages_per_second as u64
        };
        Self {
            messages: Bucket::new(messages, budgets.burst, now),
            bytes: Bucket::new(budgets.bytes_per_second, budgets.burst, now),
        }
    }

    /// Counts one message of `bytes` payload bytes at `now`; the budget it goes over, if any,
    /// with its limit per second.
    pub(crate) fn take(&mut self, now: Duration, bytes: usize) -> Result<(), (Budget, u64)> {
        if !self.messages.take(now, 1) {
            return Err((Budget::MessagesPerSecond, self.messages.rate));
        }
        if !self.bytes.take(now, bytes as u64) {
            return Err((Budget::BytesPerSecond, self.bytes.rate));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn budgets(messages: u32, bytes: u64) -> Budgets {
        Budgets {
            messages_per_second: messages,
            bytes_per_second: bytes,
            burst: Duration::from_secs(1),
            links_per_minute: 10,
        }
    }

    #[test]
    fn a_steady_rate_under_the_budget_never_trips_it() {
        let mut meter = RateMeter::new(&budgets(1000, 1 << 20), Duration::ZERO);
        // 900 messages a second of 1 KiB for 10 s, one every ~1.1 ms.
        for i in 0..9000u64 {
            let now = Duration::from_micros(i * 1111);
            assert_eq!(meter.take(now, 1024), Ok(()), "message {i}");
        }
    }

    #[test]
    fn a_flood_trips_the_budget_it_exceeds_after_the_burst() {
        let mut meter = RateMeter::new(&budgets(1000, u64::MAX - 1), Duration::ZERO);
        let taken = (0..5000).take_while(|_| meter.take(MS, 1).is_ok()).count();
        assert_eq!(taken, 1000, "one second's worth of burst, then the limit");
        assert_eq!(meter.take(MS, 1), Err((Budget::MessagesPerSecond, 1000)));
        // Refilled after a quiet half second: 500 more.
        let taken = (0..5000)
            .take_while(|_| meter.take(501 * MS, 1).is_ok())
            .count();
        assert_eq!(taken, 500);
        let mut meter = RateMeter::new(&budgets(u32::MAX, 4096), Duration::ZERO);
        assert!(meter.take(MS, 4096).is_ok());
        assert_eq!(meter.take(MS, 1), Err((Budget::BytesPerSecond, 4096)));
    }

    #[test]
    fn unlimited_is_unlimited() {
        let mut meter = RateMeter::new(&Budgets::unlimited(), Duration::ZERO);
        for _ in 0..100_000 {
            assert!(meter.take(Duration::ZERO, usize::MAX >> 8).is_ok());
        }
    }
}
