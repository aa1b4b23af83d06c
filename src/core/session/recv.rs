//! The receiving half: in-order acceptance of reliable records, when to ack them, and the
//! newest-only filter of sequenced unreliable messages.

use std::{collections::HashMap, time::Duration};

/// What became of a reliable record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accept {
    /// The next one expected: deliver it.
    Next,
    /// Already delivered (a resend after a reconnect or timeout): dropped.
    Duplicate,
    /// Past a gap (something before it was lost above the transport): dropped; the sender
    /// resends from the gap.
    Gap,
}

/// In-order acceptance and the ack policy.
///
/// An ack waits for one of: `ack_delay` since the first record it would cover, a quarter of
/// the in-flight window received since the last ack (so the sender's window keeps turning
/// without an ack per packet), a packet going out anyway that it can ride on, or a new link
/// (the sender waits for it to resume).
#[derive(Debug, Clone, Default)]
pub(crate) struct ReliableReceiver {
    /// The next sequence number expected.
    next: u64,
    /// An ack is owed, since this instant.
    due_since: Option<Duration>,
    /// The owed ack goes out at the next chance, whatever the delay.
    forced: bool,
    /// Bytes of records accepted since the last ack went out.
    unacked_in: usize,
}

impl ReliableReceiver {
    /// The ack to send: every record before this number has arrived.
    pub(crate) fn ack_point(&self) -> u64 {
        self.next
    }

    /// Bytes accepted since our last ack: what the sender has in flight beyond it.
    pub(crate) fn unacked_in(&self) -> usize {
        self.unacked_in
    }

    /// A reliable record `seq` of `len` bytes arrived at `now`. Whatever it was, an ack is owed
    /// (a duplicate or a gap is answered with where we are).
    pub(crate) fn accept(
        &mut self,
        seq: u64,
        len: usize,
        now: Duration,
        ack_bytes: usize,
    ) -> Accept {
        self.due_since.get_or_insert(now);
        if seq != self.next {
            return if seq < self.next {
                Accept::Duplicate
            } else {
                Accept::Gap
            };
        }
        self.next += 1;
        self.unacked_in += len;
        if self.unacked_in >= ack_bytes {
            self.forced = true;
        }
        Accept::Next
    }

    /// Owes an ack at the next chance (a new link: the sender waits for it to resume).
    pub(crate) fn force_ack(&mut self, now: Duration) {
        self.due_since.get_or_insert(now);
        self.forced = true;
    }

    /// An owed ack goes out at the next chance (the game caught up with what we withheld
    /// acks for).
    pub(crate) fn hurry(&mut self) {
        if self.due_since.is_some() {
            self.forced = true;
        }
    }

    /// When the owed ack is due, if one is.
    pub(crate) fn ack_deadline(&self, ack_delay: Duration) -> Option<Duration> {
        let since = self.due_since?;
        Some(if self.forced {
            since
        } else {
            since + ack_delay
        })
    }

    /// Whether an ack is owed and due at `now`, or owed and may ride on a packet that goes
    /// out anyway (`riding`).
    pub(crate) fn ack_wanted(&self, now: Duration, ack_delay: Duration, riding: bool) -> bool {
        self.ack_deadline(ack_delay)
            .is_some_and(|at| riding || at <= now)
    }

    /// An ack for [`ack_point`](Self::ack_point) went out.
    pub(crate) fn acked(&mut self) {
        self.due_since = None;
        self.forced = false;
        self.unacked_in = 0;
    }
}

/// Sequenced unreliable messages: per message type, only one newer than the last delivered
/// gets through (serial-number comparison, so the counter may wrap).
#[derive(Debug, Clone, Default)]
pub(crate) struct SequencedFilter {
    last: HashMap<u32, u32>,
}

impl SequencedFilter {
    /// Whether `seq` of type `kind` is newer than anything delivered; if so it is the newest.
    pub(crate) fn admit(&mut self, kind: u32, seq: u32) -> bool {
        let newer = match self.last.get(&kind) {
            Some(&last) => (seq.wrapping_sub(last) as i32) > 0,
            None => true,
        };
        if newer {
            self.last.insert(kind, seq);
        }
        newer
    }
}

/// The sending side's counters for sequenced messages, one per type.
#[derive(Debug, Clone, Default)]
pub(crate) struct SequenceCounter {
    next: HashMap<u32, u32>,
}

impl SequenceCounter {
    /// The next number for a message of type `kind`.
    pub(crate) fn next(&mut self, kind: u32) -> u32 {
        let seq = self.next.entry(kind).or_insert(0);
        *seq = seq.wrapping_add(1);
        *seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn records_are_taken_in_order_only() {
        let mut r = ReliableReceiver::default();
        assert_eq!(r.accept(0, 10, MS, 100), Accept::Next);
        assert_eq!(r.accept(2, 10, MS, 100), Accept::Gap);
        assert_eq!(r.accept(0, 10, MS, 100), Accept::Duplicate);
        assert_eq!(r.accept(1, 10, MS, 100), Accept::Next);
        assert_eq!(r.ack_point(), 2);
        assert_eq!(r.unacked_in(), 20);
    }

    #[test]
    fn acks_wait_for_the_delay_a_quarter_window_or_a_ride() {
        let delay = 5 * MS;
        let mut r = ReliableReceiver::default();
        assert_eq!(r.ack_deadline(delay), None, "nothing owed");
        r.accept(0, 10, 10 * MS, 100);
        assert_eq!(r.ack_deadline(delay), Some(15 * MS));
        assert!(!r.ack_wanted(12 * MS, delay, false));
        assert!(r.ack_wanted(12 * MS, delay, true), "rides on a packet");
        assert!(r.ack_wanted(15 * MS, delay, false));
        r.acked();
        assert_eq!(r.ack_deadline(delay), None);
        // A quarter of the window's worth: at once.
        r.accept(1, 60, 20 * MS, 100);
        r.accept(2, 60, 21 * MS, 100);
        assert_eq!(r.ack_deadline(delay), Some(20 * MS));
        r.acked();
        r.force_ack(30 * MS);
        assert!(r.ack_wanted(30 * MS, delay, false), "a new link");
    }

    #[test]
    fn sequenced_messages_keep_the_newest_across_the_wrap() {
        let mut f = SequencedFilter::default();
        let got: Vec<u32> = [u32::MAX - 1, u32::MAX, 0, 1, u32::MAX, 1]
            .into_iter()
            .filter(|&s| f.admit(3, s))
            .collect();
        assert_eq!(got, vec![u32::MAX - 1, u32::MAX, 0, 1]);
        assert!(f.admit(4, 0), "another type counts on its own");
        let mut c = SequenceCounter::default();
        assert_eq!((c.next(1), c.next(1), c.next(2)), (1, 2, 1));
    }
}
