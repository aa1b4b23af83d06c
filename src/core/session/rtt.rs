//! The round-trip estimate: smoothed RTT and its mean deviation, RFC 6298 style, from the
//! samples pings and pongs give.

use std::time::Duration;

/// A sample longer than this is not a round trip but a clock or peer gone wrong.
const MAX_SAMPLE: Duration = Duration::from_secs(60);

/// Smoothed round-trip time and mean deviation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl RttEstimator {
    /// Takes one round-trip sample (ignored when absurd).
    pub(crate) fn sample(&mut self, sample: Duration) {
        if sample > MAX_SAMPLE {
            return;
        }
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(sample);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
    }

    /// The smoothed round-trip time, once a sample exists.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The mean deviation of the samples.
    pub(crate) fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// The retransmit timeout: `srtt + 4 * rttvar` within `[min, max]`; `max` before any
    /// sample.
    pub(crate) fn rto(&self, min: Duration, max: Duration) -> Duration {
        match self.srtt {
            Some(srtt) => (srtt + 4 * self.rttvar).max(min).min(max),
            None => max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_estimate_follows_the_samples_and_bounds_the_timeout() {
        let mut rtt = RttEstimator::default();
        assert_eq!(rtt.rto(100 * MS, 1000 * MS), 1000 * MS, "no sample yet");
        rtt.sample(40 * MS);
        assert_eq!((rtt.srtt(), rtt.rttvar()), (Some(40 * MS), 20 * MS));
        for _ in 0..100 {
            rtt.sample(10 * MS);
        }
        let srtt = rtt.srtt().unwrap();
        assert!(srtt < 11 * MS, "{srtt:?}");
        assert_eq!(rtt.rto(100 * MS, 1000 * MS), 100 * MS, "floored");
        rtt.sample(2 * MAX_SAMPLE);
        assert_eq!(rtt.srtt(), Some(srtt), "an absurd sample is ignored");
    }
}
