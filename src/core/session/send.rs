//! The sending half of the reliable stream: numbered records kept until acknowledged, the
//! in-flight window, resume on a new link, and go-back-N after a timeout.

use crate::core::{
    error::{PeerErrorKind, SendError, Violation},
    peer::PeerId,
    wire,
};
use bytes::{Bytes, BytesMut};
use std::{collections::VecDeque, time::Duration};

/// Size of the blocks reliable records are written into (see `ReliableSender::arena`).
const RECORD_ARENA: usize = 64 * 1024;

/// Reliable records, from the oldest unacknowledged to the newest queued, and where sending
/// stands among them.
#[derive(Debug, Clone)]
pub(crate) struct ReliableSender {
    /// The number the next queued record gets.
    next_seq: u64,
    /// Every record not yet acknowledged, oldest first, with its number.
    unacked: VecDeque<(u64, Bytes)>,
    /// Their total size.
    unacked_bytes: usize,
    /// Reliable records are written here and split off (sharing its allocation), so a steady
    /// stream costs one allocation per `RECORD_ARENA` bytes rather than one per message.
    arena: BytesMut,
    /// The next record to put on the wire.
    send_next: u64,
    /// Bytes sent and not acknowledged: the records from the oldest unacked up to
    /// `send_next`, kept as a running sum.
    in_flight: usize,
    /// Whether the peer's first ack on the current link has said where to resume.
    resumed: bool,
    /// When an ack last freed something (or the link came up).
    last_progress: Duration,
}

impl ReliableSender {
    /// An empty stream, created at `now`.
    pub(crate) fn new(now: Duration) -> Self {
        Self {
            next_seq: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            arena: BytesMut::new(),
            send_next: 0,
            in_flight: 0,
            resumed: false,
            last_progress: now,
        }
    }

    /// Bytes of records waiting for an ack (queued or sent).
    pub(crate) fn unacked_bytes(&self) -> usize {
        self.unacked_bytes
    }

    /// Bytes sent and not yet acknowledged.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// A new link: nothing goes out until the peer's first ack says where to resume.
    pub(crate) fn link_up(&mut self, now: Duration) {
        self.resumed = false;
        self.last_progress = now;
    }

    /// Queues `payload` as one record, or as fragments of at most `chunk` bytes when it is
    /// larger than `single`. Refused whole when the resend buffer would pass `max_unacked`.
    pub(crate) fn push(
        &mut self,
        peer: PeerId,
        kind: u32,
        payload: &[u8],
        single: usize,
        chunk: usize,
        max_unacked: usize,
    ) -> Result<(), SendError> {
        let size = payload.len();
        let (records, header) = if size <= single {
            (1, wire::RELIABLE_HEADER)
        } else {
            (size.div_ceil(chunk.max(1)), wire::FRAGMENT_HEADER)
        };
        let needed = size + records * header;
        if self.unacked_bytes + needed > max_unacked {
            return Err(SendError::Backpressure {
                peer,
                unacked: self.unacked_bytes,
                limit: max_unacked,
            });
        }
        if size <= single {
            self.reserve(wire::RELIABLE_HEADER + size);
            wire::encode_reliable(&mut self.arena, self.next_seq, kind, payload);
            let record = self.arena.split().freeze();
            self.push_record(record);
        } else {
            for piece in payload.chunks(chunk.max(1)) {
                self.reserve(wire::FRAGMENT_HEADER + piece.len());
                wire::encode_fragment(&mut self.arena, self.next_seq, kind, size as u32, piece);
                let record = self.arena.split().freeze();
                self.push_record(record);
            }
        }
        Ok(())
    }

    /// Room for one record of `len` bytes in the arena: a fresh block when the current one is
    /// full (the old block lives on until its last record is acknowledged).
    fn reserve(&mut self, len: usize) {
        if self.arena.capacity() < len {
            self.arena = BytesMut::with_capacity(len.max(RECORD_ARENA));
        }
    }

    fn push_record(&mut self, record: Bytes) {
        self.unacked_bytes += record.len();
        self.unacked.push_back((self.next_seq, record));
        self.next_seq += 1;
    }

    /// The number the next queued record gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Every record before this one is acknowledged.
    pub(crate) fn acked(&self) -> u64 {
        self.oldest()
    }

    fn oldest(&self) -> u64 {
        self.unacked.front().map_or(self.next_seq, |(s, _)| *s)
    }

    /// The peer's cumulative ack: it has every record before `next`. Returns how many records
    /// resuming from it sends again (non-zero only for the first ack on a new link). An `Err`
    /// means the peer broke the protocol.
    pub(crate) fn handle_ack(&mut self, next: u64, now: Duration) -> Result<u64, PeerErrorKind> {
        if next > self.next_seq {
            return Err(PeerErrorKind::Violation(Violation::AckBeyondSent));
        }
        let oldest = self.oldest();
        if next < oldest {
            if !self.resumed {
                // The peer lost records we already freed: the stream cannot be repaired.
                return Err(PeerErrorKind::Violation(Violation::ResumeBeforeAcked));
            }
            return Ok(0); // A stale ack.
        }
        while let Some((seq, record)) = self.unacked.front() {
            if *seq >= next {
                break;
            }
            self.unacked_bytes -= record.len();
            if *seq < self.send_next {
                self.in_flight -= record.len();
            }
            self.unacked.pop_front();
        }
        if next > oldest {
            self.last_progress = now;
        }
        let mut resent = 0;
        if !self.resumed {
            // First ack on this link: resume from there.
            self.resumed = true;
            self.last_progress = now;
            resent = self.send_next.saturating_sub(next);
            self.go_back_to(next);
        } else if self.send_next < next {
            self.send_next = next;
        }
        Ok(resent)
    }

    /// Sending restarts at `seq` (at least the oldest unacked): nothing is in flight.
    fn go_back_to(&mut self, seq: u64) {
        self.send_next = seq.max(self.oldest());
        self.in_flight = 0;
    }

    /// Go-back-N: with records in flight and no ack progress for `timeout`, sends everything
    /// again from the oldest unacked. Returns how many records that repeats.
    pub(crate) fn check_timeout(&mut self, now: Duration, timeout: Duration) -> u64 {
        let oldest = self.oldest();
        if !self.resumed
            || self.send_next <= oldest
            || now.saturating_sub(self.last_progress) < timeout
        {
            return 0;
        }
        let resent = self.send_next - oldest;
        self.go_back_to(oldest);
        self.last_progress = now;
        resent
    }

    /// When [`check_timeout`](Self::check_timeout) fires, if something is in flight.
    pub(crate) fn timeout_at(&self, timeout: Duration) -> Option<Duration> {
        (self.resumed && self.in_flight > 0).then_some(self.last_progress + timeout)
    }

    /// Whether there are records the link may carry now: resumed, not all sent, and room in
    /// a window of `max_in_flight` bytes (one record always fits an empty window, however
    /// large, so a stream never stalls).
    pub(crate) fn ready(&self, max_in_flight: usize) -> bool {
        self.peek().is_some_and(|record| {
            self.in_flight == 0 || self.in_flight + record.len() <= max_in_flight
        })
    }

    fn peek(&self) -> Option<&Bytes> {
        if !self.resumed {
            return None;
        }
        let index = usize::try_from(self.send_next - self.oldest()).ok()?;
        self.unacked.get(index).map(|(_, record)| record)
    }

    /// The next record to send, if the window of `max_in_flight` bytes has room for it; it
    /// counts as in flight from now on.
    pub(crate) fn next_record(&mut self, max_in_flight: usize) -> Option<Bytes> {
        if !self.ready(max_in_flight) {
            return None;
        }
        let record = self.peek()?.clone();
        self.in_flight += record.len();
        self.send_next += 1;
        Some(record)
    }

    /// Checks the running sums against the records (tests).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        let oldest = self.oldest();
        let sent = (self.send_next - oldest) as usize;
        let in_flight: usize = self.unacked.iter().take(sent).map(|(_, r)| r.len()).sum();
        let unacked: usize = self.unacked.iter().map(|(_, r)| r.len()).sum();
        assert_eq!(self.in_flight, in_flight, "in flight");
        assert_eq!(self.unacked_bytes, unacked, "unacked");
        assert!(self.send_next >= oldest && self.send_next <= self.next_seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn sender(records: usize, size: usize) -> ReliableSender {
        let mut s = ReliableSender::new(Duration::ZERO);
        for _ in 0..records {
            s.push(PeerId(1), 1, &vec![0; size], 1200, 1000, usize::MAX)
                .unwrap();
        }
        s
    }

    fn drain(s: &mut ReliableSender, window: usize) -> usize {
        let mut n = 0;
        while s.next_record(window).is_some() {
            n += 1;
        }
        s.check();
        n
    }

    #[test]
    fn nothing_leaves_before_the_first_ack_then_the_window_paces() {
        let mut s = sender(10, 100 - wire::RELIABLE_HEADER);
        assert_eq!(drain(&mut s, 1000), 0, "not resumed");
        s.handle_ack(0, MS).unwrap();
        assert_eq!(drain(&mut s, 350), 3, "three 100-byte records in 350 bytes");
        assert_eq!(s.in_flight(), 300);
        s.handle_ack(2, 2 * MS).unwrap();
        s.check();
        assert_eq!(s.in_flight(), 100);
        assert_eq!(drain(&mut s, 350), 2);
        assert_eq!(drain(&mut s, 1), 0, "a full window");
        s.handle_ack(5, 3 * MS).unwrap();
        assert_eq!(
            drain(&mut s, 1),
            1,
            "an empty window takes one record, however large"
        );
    }

    #[test]
    fn a_new_link_resumes_from_the_peers_ack_and_counts_what_it_repeats() {
        let mut s = sender(10, 50);
        s.handle_ack(0, MS).unwrap();
        assert_eq!(drain(&mut s, usize::MAX), 10);
        s.handle_ack(4, 2 * MS).unwrap();
        s.link_up(3 * MS);
        assert_eq!(drain(&mut s, usize::MAX), 0);
        assert_eq!(s.handle_ack(7, 4 * MS), Ok(3), "records 7, 8, 9 again");
        s.check();
        assert_eq!(drain(&mut s, usize::MAX), 3);
        assert_eq!(s.unacked_bytes(), 3 * (50 + wire::RELIABLE_HEADER));
    }

    #[test]
    fn go_back_n_after_a_silent_timeout() {
        let mut s = sender(5, 50);
        s.handle_ack(0, Duration::ZERO).unwrap();
        assert_eq!(s.timeout_at(100 * MS), None, "nothing in flight");
        drain(&mut s, usize::MAX);
        assert_eq!(s.timeout_at(100 * MS), Some(100 * MS));
        assert_eq!(s.check_timeout(99 * MS, 100 * MS), 0);
        assert_eq!(s.check_timeout(100 * MS, 100 * MS), 5);
        s.check();
        assert_eq!(drain(&mut s, usize::MAX), 5);
    }

    #[test]
    fn lying_acks_are_errors_and_stale_ones_are_ignored() {
        let mut s = sender(3, 10);
        assert!(s.handle_ack(4, MS).is_err(), "never sent");
        s.handle_ack(2, MS).unwrap();
        drain(&mut s, usize::MAX);
        assert_eq!(s.handle_ack(1, MS), Ok(0), "stale");
        s.link_up(2 * MS);
        assert!(s.handle_ack(1, MS).is_err(), "resume before freed data");
    }

    #[test]
    fn the_resend_buffer_is_bounded_and_a_refused_message_leaves_no_trace() {
        let mut s = ReliableSender::new(Duration::ZERO);
        let big = vec![0u8; 60 * 1024];
        let mut sent = 0;
        while s.push(PeerId(1), 1, &big, 1200, 1000, 256 * 1024).is_ok() {
            sent += 1;
        }
        assert_eq!(sent, 4);
        let before = (s.unacked_bytes(), s.next_seq);
        assert!(matches!(
            s.push(PeerId(1), 1, &big, 1200, 1000, 256 * 1024),
            Err(SendError::Backpressure { .. })
        ));
        assert_eq!((s.unacked_bytes(), s.next_seq), before);
        s.check();
    }
}
