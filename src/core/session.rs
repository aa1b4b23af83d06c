//! One remote peer's session: the reliable stream, unreliable sends, fragmentation, acks,
//! round-trip estimate. Sans-IO and Bevy-free: records in, packets out, time passed in as a
//! [`Duration`] since any fixed epoch, so tests drive it with a simulated clock.
//!
//! Reliability model. Every reliable record (a whole message, or one fragment of a large one)
//! gets the next sequence number of this session and stays in a bounded resend buffer until the
//! peer's cumulative [`Ack`](crate::core::wire::Record::Ack) covers it. The receiver delivers only the
//! next expected number, drops duplicates and anything past a gap, and acks. On a new link (a
//! reconnect) the peer's first ack says where to resume; everything after it is sent again.
//! The result is exactly-once, in-order delivery for as long as the session lives, across any
//! number of links.

use crate::{
    core::error::{PeerErrorKind, SendError},
    core::peer::PeerId,
    core::wire::{self, Channel, Delivery, Record},
};
use bytes::{Bytes, BytesMut};
use std::{collections::HashMap, collections::VecDeque, time::Duration};

/// Size of the blocks reliable records are written into (see `Session::arena`).
const RECORD_ARENA: usize = 64 * 1024;

/// Limits and timings of a session. All of them bound what a peer can make us hold.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// The packets we pack records into (at most [`wire::MAX_TRANSPORT_PACKET`]); large
    /// reliable messages are cut into fragments that fit. Default 1200 bytes, one IP packet:
    /// measured (`cargo bench --bench versus_raw`), bigger SCTP messages overflow webrtc-rs's
    /// receive buffer under load and each loss costs a 1 s retransmit.
    pub max_packet: usize,
    /// Most bytes of reliable records sent but not yet acknowledged (the in-flight window).
    /// The rest waits in the resend buffer and goes out as acks come back, so a large send
    /// does not hit the transport as one burst (which overflows receive buffers and costs
    /// SCTP a 1 s retransmit). Default 64 KiB: with per-packet kernel overhead that stays
    /// under the 208 KiB default UDP receive buffer (measured: 256 KiB still lost packets).
    pub max_in_flight: usize,
    /// An unreliable message travels whole in one packet of at most this size (default 16 KiB;
    /// at most [`wire::MAX_TRANSPORT_PACKET`]); a larger one is refused at send.
    pub max_unreliable_packet: usize,
    /// Largest reliable message, sent or accepted, after fragmentation.
    pub max_message_size: usize,
    /// Most bytes of reliable records waiting for an ack, per peer.
    pub max_unacked_bytes: usize,
    /// An ack with nothing else to carry it waits at most this long (default zero: acks go
    /// out in the frame the data arrived, which is what paces the in-flight window).
    pub ack_delay: Duration,
    /// With unacked data and no ack progress for this long, resend from the oldest unacked.
    /// The longest such wait: once round trips are measured, the timeout adapts
    /// (`srtt + 4 * jitter`, at least 100 ms) under this cap.
    pub retransmit_timeout: Duration,
    /// Whether to retransmit on the adaptive timeout (`srtt + 4 * jitter`). Over WebRTC's
    /// reliable channel nothing is lost within a link (and a new link resumes from the acks),
    /// so the plugin turns this on only when something above the transport drops packets: the
    /// link conditioner. Off, a stall of the full `retransmit_timeout` without ack progress
    /// still resends from the oldest unacked record (a safety net that costs nothing while
    /// acks flow).
    pub retransmit: bool,
    /// Send a ping (round-trip sample and heartbeat) this often.
    pub ping_interval: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_packet: 1200,
            max_unreliable_packet: 16 * 1024,
            max_in_flight: 64 * 1024,
            max_message_size: 1 << 20,
            max_unacked_bytes: 8 << 20,
            ack_delay: Duration::ZERO,
            retransmit_timeout: Duration::from_secs(1),
            retransmit: true,
            ping_interval: Duration::from_millis(250),
        }
    }
}

impl SessionConfig {
    /// The largest unreliable payload: one record in one packet.
    pub fn max_unreliable_payload(&self) -> usize {
        self.max_unreliable_packet
            .max(self.max_packet)
            .min(wire::MAX_TRANSPORT_PACKET)
            .saturating_sub(wire::SEQUENCED_HEADER)
            .min(u16::MAX as usize)
    }

    fn packet_budget(&self) -> usize {
        self.max_packet.min(wire::MAX_TRANSPORT_PACKET)
    }

    fn reliable_single_max(&self) -> usize {
        self.packet_budget()
            .saturating_sub(wire::RELIABLE_HEADER)
            .min(u16::MAX as usize)
    }

    fn fragment_chunk(&self) -> usize {
        self.packet_budget()
            .saturating_sub(wire::FRAGMENT_HEADER)
            .clamp(1, u16::MAX as usize)
    }
}

/// A message the session hands up, still encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// Message type id.
    pub kind: u32,
    /// The encoded message (zero-copy slice of the packet, or a reassembled buffer).
    pub payload: Bytes,
}

/// Counters and estimates for one peer, exposed as the `PeerStats` component.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Smoothed round-trip time (RFC 6298 style), once a sample exists.
    pub rtt: Option<Duration>,
    /// Mean deviation of the round-trip time.
    pub jitter: Duration,
    /// Bytes of packets received from the peer.
    pub bytes_in: u64,
    /// Bytes of packets sent to the peer.
    pub bytes_out: u64,
    /// Packets received.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Reliable records sent more than once (after a reconnect or a timeout).
    pub resent: u64,
    /// Reliable records received more than once (dropped).
    pub duplicates: u64,
}

#[derive(Debug)]
struct Reassembly {
    kind: u32,
    total: usize,
    buf: Vec<u8>,
}

/// One remote peer's session state.
#[derive(Debug)]
pub struct Session {
    peer: PeerId,
    config: SessionConfig,
    // Sending.
    next_seq: u64,
    unacked: VecDeque<(u64, Bytes)>,
    /// Reliable records are written here and split off (sharing its allocation), so a steady
    /// stream costs one allocation per `RECORD_ARENA` bytes rather than one per message.
    arena: BytesMut,
    unacked_bytes: usize,
    send_next: u64,
    resumed: bool,
    last_ack_progress: Duration,
    seq_out: HashMap<u32, u32>,
    unreliable: Vec<BytesMut>,
    control: BytesMut,
    /// The newest ping to answer: one pong per transmit, however many pings a peer sends.
    pong_due: Option<u64>,
    next_ping: Duration,
    // Receiving.
    recv_next: u64,
    reassembly: Option<Reassembly>,
    ack_due: bool,
    ack_forced: bool,
    ack_due_since: Duration,
    seq_in: HashMap<u32, u32>,
    last_heard: Duration,
    epoch: Duration,
    stats: Stats,
}

impl Session {
    /// A new session with `peer`, created at `now`.
    pub fn new(peer: PeerId, config: SessionConfig, now: Duration) -> Self {
        Self {
            peer,
            config,
            next_seq: 0,
            unacked: VecDeque::new(),
            arena: BytesMut::new(),
            unacked_bytes: 0,
            send_next: 0,
            resumed: false,
            last_ack_progress: now,
            seq_out: HashMap::new(),
            unreliable: Vec::new(),
            control: BytesMut::new(),
            pong_due: None,
            next_ping: now,
            recv_next: 0,
            reassembly: None,
            ack_due: false,
            ack_forced: false,
            ack_due_since: now,
            seq_in: HashMap::new(),
            last_heard: now,
            epoch: now,
            stats: Stats::default(),
        }
    }

    /// The peer showed it is alive without a session record (it repeated its `Hello` because
    /// it has not heard from us yet).
    pub fn heard_from(&mut self, now: Duration) {
        self.last_heard = self.last_heard.max(now);
    }

    /// Counters and estimates.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// When we last received anything from the peer.
    pub fn last_heard(&self) -> Duration {
        self.last_heard
    }

    /// Bytes of reliable records not yet acknowledged.
    pub fn unacked_bytes(&self) -> usize {
        self.unacked_bytes
    }

    /// A new link to the peer is up (first link or a reconnect). Nothing reliable is sent on it
    /// until the peer's first ack says where to resume; our own first ack goes out at once.
    pub fn link_up(&mut self, now: Duration) {
        self.resumed = false;
        self.ack_forced = true;
        self.ack_due = true;
        self.last_heard = now;
        self.last_ack_progress = now;
        self.next_ping = now;
        // Unreliable records queued for the old link are not replayed.
        self.unreliable.clear();
        self.control.clear();
        self.pong_due = None;
    }

    /// Queues a message with the given delivery.
    pub fn send(&mut self, kind: u32, payload: &[u8], delivery: Delivery) -> Result<(), SendError> {
        match delivery {
            Delivery::Reliable => self.send_reliable(kind, payload),
            Delivery::Unreliable => self.send_unreliable(kind, payload, false),
            Delivery::UnreliableSequenced => self.send_unreliable(kind, payload, true),
        }
    }

    /// Queues a reliable message. Fragments it when it does not fit one packet.
    pub fn send_reliable(&mut self, kind: u32, payload: &[u8]) -> Result<(), SendError> {
        let size = payload.len();
        if size > self.config.max_message_size || size > u32::MAX as usize {
            return Err(SendError::TooLarge {
                size,
                limit: self.config.max_message_size,
                delivery: Delivery::Reliable,
            });
        }
        let single = self.config.reliable_single_max();
        let chunk = self.config.fragment_chunk();
        let (records, header) = if size <= single {
            (1, wire::RELIABLE_HEADER)
        } else {
            (size.div_ceil(chunk), wire::FRAGMENT_HEADER)
        };
        let needed = size + records * header;
        if self.unacked_bytes + needed > self.config.max_unacked_bytes {
            return Err(SendError::Backpressure {
                peer: self.peer,
                unacked: self.unacked_bytes,
                limit: self.config.max_unacked_bytes,
            });
        }
        if size <= single {
            self.reserve_record(wire::RELIABLE_HEADER + size);
            wire::encode_reliable(&mut self.arena, self.next_seq, kind, payload);
            let rec = self.arena.split().freeze();
            self.push_unacked(rec);
        } else {
            for piece in payload.chunks(chunk) {
                self.reserve_record(wire::FRAGMENT_HEADER + piece.len());
                wire::encode_fragment(&mut self.arena, self.next_seq, kind, size as u32, piece);
                let rec = self.arena.split().freeze();
                self.push_unacked(rec);
            }
        }
        Ok(())
    }

    /// Room for one record of `len` bytes in the arena: a fresh block when the current one is
    /// full (the old block lives on until its last record is acknowledged).
    fn reserve_record(&mut self, len: usize) {
        if self.arena.capacity() < len {
            self.arena = BytesMut::with_capacity(len.max(RECORD_ARENA));
        }
    }

    fn push_unacked(&mut self, record: Bytes) {
        self.unacked_bytes += record.len();
        self.unacked.push_back((self.next_seq, record));
        self.next_seq += 1;
    }

    /// Queues an unreliable message (`sequenced`: only the newest of its type is delivered).
    pub fn send_unreliable(
        &mut self,
        kind: u32,
        payload: &[u8],
        sequenced: bool,
    ) -> Result<(), SendError> {
        let limit = self.config.max_unreliable_payload();
        if payload.len() > limit {
            return Err(SendError::TooLarge {
                size: payload.len(),
                limit,
                delivery: if sequenced {
                    Delivery::UnreliableSequenced
                } else {
                    Delivery::Unreliable
                },
            });
        }
        let record_len = payload.len()
            + if sequenced {
                wire::SEQUENCED_HEADER
            } else {
                wire::UNRELIABLE_HEADER
            };
        let budget = self.config.packet_budget();
        let fits = self
            .unreliable
            .last()
            .is_some_and(|p| p.len() + record_len <= budget);
        if !fits {
            self.unreliable
                .push(BytesMut::with_capacity(record_len.max(budget.min(1200))));
        }
        let Some(packet) = self.unreliable.last_mut() else {
            return Ok(());
        };
        if sequenced {
            let seq = self.seq_out.entry(kind).or_insert(0);
            *seq = seq.wrapping_add(1);
            wire::encode_sequenced(packet, kind, *seq, payload);
        } else {
            wire::encode_unreliable(packet, kind, payload);
        }
        Ok(())
    }

    /// Handles one record from the peer (not `Hello`/`Bye`, which the room handles).
    /// Delivered messages go to `deliver`, in order. An `Err` means the peer broke the protocol
    /// and must be dropped.
    pub fn on_record(
        &mut self,
        record: Record,
        now: Duration,
        deliver: &mut impl FnMut(Inbound),
    ) -> Result<(), PeerErrorKind> {
        self.last_heard = now;
        match record {
            Record::Hello(_) | Record::Bye(_) => {
                return Err(PeerErrorKind::Violation(
                    "handshake record inside a session",
                ));
            }
            Record::Ack(next) => self.on_ack(next, now)?,
            Record::Ping(nonce) => self.pong_due = Some(nonce),
            Record::Pong(nonce) => self.on_pong(nonce, now),
            Record::Reliable { seq, kind, payload } => {
                if self.accept_seq(seq, now) {
                    if self.reassembly.is_some() {
                        return Err(PeerErrorKind::Violation(
                            "whole message inside a fragmented one",
                        ));
                    }
                    deliver(Inbound { kind, payload });
                }
            }
            Record::Fragment {
                seq,
                kind,
                total,
                chunk,
            } => {
                if self.accept_seq(seq, now) {
                    self.on_fragment(kind, total, &chunk, deliver)?;
                }
            }
            Record::Unreliable { kind, payload } => deliver(Inbound { kind, payload }),
            Record::Sequenced { kind, seq, payload } => {
                let newer = match self.seq_in.get(&kind) {
                    Some(&last) => (seq.wrapping_sub(last) as i32) > 0,
                    None => true,
                };
                if newer {
                    self.seq_in.insert(kind, seq);
                    deliver(Inbound { kind, payload });
                }
            }
        }
        Ok(())
    }

    /// Whether `seq` is the next one expected; duplicates and gaps are dropped (and re-acked).
    fn accept_seq(&mut self, seq: u64, now: Duration) -> bool {
        if !self.ack_due {
            self.ack_due_since = now;
        }
        self.ack_due = true;
        if seq == self.recv_next {
            self.recv_next += 1;
            true
        } else {
            if seq < self.recv_next {
                self.stats.duplicates += 1;
            }
            false
        }
    }

    fn on_fragment(
        &mut self,
        kind: u32,
        total: u32,
        chunk: &[u8],
        deliver: &mut impl FnMut(Inbound),
    ) -> Result<(), PeerErrorKind> {
        let total = total as usize;
        let reassembly = match &mut self.reassembly {
            Some(r) => {
                if r.kind != kind || r.total != total {
                    return Err(PeerErrorKind::Violation(
                        "fragment does not continue the message in progress",
                    ));
                }
                r
            }
            None => {
                if total > self.config.max_message_size {
                    return Err(PeerErrorKind::MessageTooLarge {
                        size: total as u64,
                        limit: self.config.max_message_size,
                    });
                }
                // Grow with what actually arrives, not with what the peer claims.
                self.reassembly.insert(Reassembly {
                    kind,
                    total,
                    buf: Vec::with_capacity(total.min(64 * 1024)),
                })
            }
        };
        if reassembly.buf.len() + chunk.len() > reassembly.total {
            return Err(PeerErrorKind::Violation(
                "fragments overrun the message length",
            ));
        }
        reassembly.buf.extend_from_slice(chunk);
        if reassembly.buf.len() == reassembly.total
            && let Some(done) = self.reassembly.take()
        {
            deliver(Inbound {
                kind: done.kind,
                payload: Bytes::from(done.buf),
            });
        }
        Ok(())
    }

    fn on_ack(&mut self, next: u64, now: Duration) -> Result<(), PeerErrorKind> {
        if next > self.next_seq {
            return Err(PeerErrorKind::Violation(
                "ack for a sequence number never sent",
            ));
        }
        let oldest = self.unacked.front().map_or(self.next_seq, |(s, _)| *s);
        if next < oldest {
            if !self.resumed {
                // The peer lost records we already freed: the stream cannot be repaired.
                return Err(PeerErrorKind::Violation(
                    "resume point before acknowledged data",
                ));
            }
            return Ok(()); // A stale ack.
        }
        while let Some((seq, rec)) = self.unacked.front() {
            if *seq >= next {
                break;
            }
            self.unacked_bytes -= rec.len();
            self.unacked.pop_front();
        }
        if next > oldest {
            self.last_ack_progress = now;
        }
        if !self.resumed {
            // First ack on this link: resume from there.
            self.resumed = true;
            self.last_ack_progress = now;
            if self.send_next > next {
                self.stats.resent += self.send_next - next;
            }
            self.send_next = next;
        } else if self.send_next < next {
            self.send_next = next;
        }
        Ok(())
    }

    /// Turns retransmits on timeout on or off (see [`SessionConfig::retransmit`]).
    pub fn set_retransmit(&mut self, on: bool) {
        self.config.retransmit = on;
    }

    /// The current retransmit timeout.
    pub fn rto(&self) -> Duration {
        match self.stats.rtt {
            Some(srtt) => (srtt + 4 * self.stats.jitter)
                .max(Duration::from_millis(100))
                .min(self.config.retransmit_timeout),
            None => self.config.retransmit_timeout,
        }
    }

    fn on_pong(&mut self, nonce: u64, now: Duration) {
        let sent = self.epoch + Duration::from_micros(nonce);
        let Some(sample) = now.checked_sub(sent) else {
            return;
        };
        if sample > Duration::from_secs(60) {
            return;
        }
        match self.stats.rtt {
            None => {
                self.stats.rtt = Some(sample);
                self.stats.jitter = sample / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(sample);
                self.stats.jitter = (self.stats.jitter * 3 + diff) / 4;
                self.stats.rtt = Some((srtt * 7 + sample) / 8);
            }
        }
    }

    /// Bytes of reliable records sent and not yet acknowledged, and whether the window has
    /// room for the next unsent record.
    fn window(&self) -> (usize, bool) {
        let oldest = self.unacked.front().map_or(self.next_seq, |(s, _)| *s);
        let start = self.send_next.saturating_sub(oldest) as usize;
        let in_flight: usize = self.unacked.iter().take(start).map(|(_, r)| r.len()).sum();
        let open = match self.unacked.get(start) {
            Some((_, next)) => {
                in_flight == 0 || in_flight + next.len() <= self.config.max_in_flight
            }
            None => false,
        };
        (in_flight, open)
    }

    /// The next instant [`Session::poll_transmit`] has something to do, given whether a link
    /// is ready (`None`: nothing until an input arrives). Zero: at once.
    pub fn poll_timeout(&self, now: Duration, link_ready: bool) -> Option<Duration> {
        if !link_ready {
            return None;
        }
        let mut next = self.next_ping;
        if self.pong_due.is_some() || !self.control.is_empty() || !self.unreliable.is_empty() {
            return Some(now);
        }
        if self.ack_due {
            next = next.min(if self.ack_forced {
                now
            } else {
                self.ack_due_since + self.config.ack_delay
            });
        }
        if self.resumed {
            let (in_flight, open) = self.window();
            if open {
                return Some(now);
            }
            if in_flight > 0 {
                let timeout = if self.config.retransmit {
                    self.rto()
                } else {
                    self.config.retransmit_timeout
                };
                next = next.min(self.last_ack_progress + timeout);
            }
        }
        Some(next)
    }

    /// Builds the packets to send now and hands them to `out`. `link_ready`: a link to the
    /// peer exists (otherwise everything waits, except unreliable records, which are dropped).
    pub fn poll_transmit(
        &mut self,
        now: Duration,
        link_ready: bool,
        out: &mut impl FnMut(Channel, Bytes),
    ) {
        if !link_ready {
            self.unreliable.clear();
            return;
        }
        // Go-back-N after a retransmit timeout (only matters when something above the
        // transport drops records, such as the link conditioner). Without `retransmit` the
        // fixed `retransmit_timeout` still applies, as a safety net: over SCTP acks progress
        // every round trip, and a stall that long means records were lost above it.
        let timeout = if self.config.retransmit {
            self.rto()
        } else {
            self.config.retransmit_timeout
        };
        if self.resumed
            && self.send_next > self.unacked.front().map_or(self.next_seq, |(s, _)| *s)
            && now.saturating_sub(self.last_ack_progress) >= timeout
            && let Some((oldest, _)) = self.unacked.front()
        {
            self.stats.resent += self.send_next - oldest;
            self.send_next = *oldest;
            self.last_ack_progress = now;
        }
        if now >= self.next_ping {
            let nonce = now.saturating_sub(self.epoch).as_micros() as u64;
            wire::encode_ping(&mut self.control, nonce);
            self.next_ping = now + self.config.ping_interval;
        }

        let budget = self.config.packet_budget();
        if let Some(nonce) = self.pong_due.take() {
            wire::encode_pong(&mut self.control, nonce);
        }
        let mut packet = std::mem::take(&mut self.control);
        let has_reliable = self.resumed && self.send_next < self.next_seq;
        // Acks ride along with every reliable-channel packet (pings included, so at least every
        // `ping_interval`): an ack lost above the transport (the conditioner) is repaired by
        // the next one, and a peer waiting for our resume point on a new link gets it.
        let ack_now = (self.ack_due
            && (self.ack_forced
                || has_reliable
                || now.saturating_sub(self.ack_due_since) >= self.config.ack_delay))
            || !packet.is_empty();
        if ack_now {
            wire::encode_ack(&mut packet, self.recv_next);
            self.ack_due = false;
            self.ack_forced = false;
        }
        if has_reliable {
            let oldest = self.unacked.front().map_or(self.next_seq, |(s, _)| *s);
            let start = (self.send_next - oldest) as usize;
            let mut in_flight: usize = self.unacked.iter().take(start).map(|(_, r)| r.len()).sum();
            for (_, rec) in self.unacked.iter().skip(start) {
                // Always let one record out, however large, so a stream never stalls.
                if in_flight > 0 && in_flight + rec.len() > self.config.max_in_flight {
                    break;
                }
                in_flight += rec.len();
                if !packet.is_empty() && packet.len() + rec.len() > budget {
                    let full = std::mem::take(&mut packet).freeze();
                    emit(&mut self.stats, Channel::Reliable, full, out);
                }
                if packet.is_empty() {
                    packet.reserve(rec.len().max(1200).min(budget));
                }
                packet.extend_from_slice(rec);
                self.send_next += 1;
            }
        }
        if !packet.is_empty() {
            emit(&mut self.stats, Channel::Reliable, packet.freeze(), out);
        }
        for packet in self.unreliable.drain(..) {
            emit(&mut self.stats, Channel::Unreliable, packet.freeze(), out);
        }
    }

    /// Counts a received packet.
    pub fn count_in(&mut self, bytes: usize) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += bytes as u64;
    }
}

fn emit(stats: &mut Stats, channel: Channel, packet: Bytes, out: &mut impl FnMut(Channel, Bytes)) {
    stats.packets_out += 1;
    stats.bytes_out += packet.len() as u64;
    out(channel, packet);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::wire::Records;

    const MS: Duration = Duration::from_millis(1);

    fn config() -> SessionConfig {
        SessionConfig {
            max_packet: 1200,
            max_unreliable_packet: 1200,
            max_message_size: 64 * 1024,
            max_unacked_bytes: 256 * 1024,
            ..Default::default()
        }
    }

    /// Two sessions joined by a simulated link that can drop, duplicate and reorder.
    struct Pair {
        a: Session,
        b: Session,
        now: Duration,
        got_a: Vec<Inbound>,
        got_b: Vec<Inbound>,
    }

    impl Pair {
        fn new() -> Self {
            let now = Duration::ZERO;
            let mut a = Session::new(PeerId(2), config(), now);
            let mut b = Session::new(PeerId(1), config(), now);
            a.link_up(now);
            b.link_up(now);
            Pair {
                a,
                b,
                now,
                got_a: vec![],
                got_b: vec![],
            }
        }

        fn packets(s: &mut Session, now: Duration) -> Vec<(Channel, Bytes)> {
            let mut v = vec![];
            s.poll_transmit(now, true, &mut |c, p| v.push((c, p)));
            v
        }

        fn feed(
            s: &mut Session,
            packets: &[(Channel, Bytes)],
            now: Duration,
            got: &mut Vec<Inbound>,
        ) {
            for (_, p) in packets {
                s.count_in(p.len());
                for r in Records::checked(p.clone()).unwrap() {
                    s.on_record(r.unwrap(), now, &mut |m| got.push(m)).unwrap();
                }
            }
        }

        /// One round: each side transmits, `filter` decides what arrives.
        fn step(
            &mut self,
            filter: &mut impl FnMut(Vec<(Channel, Bytes)>) -> Vec<(Channel, Bytes)>,
        ) {
            self.now += 10 * MS;
            let from_a = filter(Self::packets(&mut self.a, self.now));
            let from_b = filter(Self::packets(&mut self.b, self.now));
            Self::feed(&mut self.b, &from_a, self.now, &mut self.got_b);
            Self::feed(&mut self.a, &from_b, self.now, &mut self.got_a);
        }

        fn run(&mut self, rounds: usize) {
            for _ in 0..rounds {
                self.step(&mut |p| p);
            }
        }
    }

    fn numbers(got: &[Inbound]) -> Vec<u32> {
        got.iter()
            .filter(|m| m.kind == 1)
            .map(|m| u32::from_le_bytes(m.payload[..4].try_into().unwrap()))
            .collect()
    }

    #[test]
    fn reliable_messages_arrive_in_order_and_get_acked() {
        let mut p = Pair::new();
        for i in 0..100u32 {
            p.a.send_reliable(1, &i.to_le_bytes()).unwrap();
        }
        p.run(5);
        assert_eq!(numbers(&p.got_b), (0..100).collect::<Vec<_>>());
        assert_eq!(p.a.unacked_bytes(), 0, "everything acknowledged");
    }

    #[test]
    fn small_messages_are_packed_into_few_packets() {
        let mut p = Pair::new();
        p.run(2);
        for i in 0..100u32 {
            p.a.send_reliable(1, &i.to_le_bytes()).unwrap();
        }
        let packets = Pair::packets(&mut p.a, p.now + MS);
        // 100 records of 19 bytes in 1200-byte packets: 2 packets, not 100.
        assert!(packets.len() <= 3, "{} packets", packets.len());
    }

    #[test]
    fn large_messages_are_fragmented_and_reassembled() {
        let mut p = Pair::new();
        let big: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
        p.a.send_reliable(9, &big).unwrap();
        p.a.send_reliable(1, &7u32.to_le_bytes()).unwrap();
        p.run(5);
        assert_eq!(p.got_b.len(), 2);
        assert_eq!(p.got_b[0].kind, 9);
        assert_eq!(&p.got_b[0].payload[..], &big[..]);
        assert_eq!(numbers(&p.got_b), vec![7]);
        for (_, packet) in Pair::packets(&mut p.a, p.now) {
            assert!(packet.len() <= 1200);
        }
    }

    #[test]
    fn oversized_sends_are_refused_not_dropped() {
        let mut s = Session::new(PeerId(1), config(), Duration::ZERO);
        let err = s.send_reliable(1, &vec![0; 64 * 1024 + 1]).unwrap_err();
        assert!(matches!(
            err,
            SendError::TooLarge {
                delivery: Delivery::Reliable,
                ..
            }
        ));
        let max = config().max_unreliable_payload();
        assert!(s.send_unreliable(1, &vec![0; max], false).is_ok());
        let err = s.send_unreliable(1, &vec![0; max + 1], true).unwrap_err();
        assert!(matches!(
            err,
            SendError::TooLarge {
                delivery: Delivery::UnreliableSequenced,
                ..
            }
        ));
    }

    #[test]
    fn resend_buffer_is_bounded() {
        let mut s = Session::new(PeerId(1), config(), Duration::ZERO);
        let chunk = vec![0u8; 60 * 1024];
        let mut sent = 0;
        let err = loop {
            match s.send_reliable(1, &chunk) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(sent, 4);
        assert!(matches!(err, SendError::Backpressure { .. }));
        assert!(s.unacked_bytes() <= config().max_unacked_bytes);
    }

    #[test]
    fn unreliable_is_delivered_and_sequenced_drops_stale() {
        let mut p = Pair::new();
        p.run(1);
        p.a.send_unreliable(1, &1u32.to_le_bytes(), false).unwrap();
        for i in 10..13u32 {
            p.a.send_unreliable(2, &i.to_le_bytes(), true).unwrap();
        }
        let mut packets = Pair::packets(&mut p.a, p.now);
        // Deliver the sequenced packet twice: the replay is stale.
        packets.extend(packets.clone());
        Pair::feed(&mut p.b, &packets, p.now, &mut p.got_b);
        assert_eq!(numbers(&p.got_b), vec![1, 1]);
        let seq: Vec<u8> = p
            .got_b
            .iter()
            .filter(|m| m.kind == 2)
            .map(|m| m.payload[0])
            .collect();
        assert_eq!(seq, vec![10, 11, 12]);
    }

    #[test]
    fn sequence_comparison_wraps() {
        let mut s = Session::new(PeerId(1), config(), Duration::ZERO);
        let mut got = vec![];
        let mut d = |m: Inbound| got.push(m.payload[0]);
        for (seq, tag) in [
            (u32::MAX - 1, 1u8),
            (u32::MAX, 2),
            (0, 3),
            (1, 4),
            (u32::MAX, 5),
        ] {
            let r = Record::Sequenced {
                kind: 3,
                seq,
                payload: Bytes::copy_from_slice(&[tag]),
            };
            s.on_record(r, Duration::ZERO, &mut d).unwrap();
        }
        assert_eq!(got, vec![1, 2, 3, 4]);
    }

    #[test]
    fn loss_duplication_and_reordering_still_deliver_exactly_once_in_order() {
        let mut p = Pair::new();
        p.run(1);
        let mut rng = crate::core::rng::Rng::new(12345);
        let mut next = || rng.next_u64();
        let mut sent = 0u32;
        for round in 0..400 {
            if round < 300 {
                for _ in 0..(next() % 5) {
                    p.a.send_reliable(1, &sent.to_le_bytes()).unwrap();
                    sent += 1;
                }
            }
            p.now += 10 * MS;
            let mut from_a = Pair::packets(&mut p.a, p.now);
            let mut from_b = Pair::packets(&mut p.b, p.now);
            for packets in [&mut from_a, &mut from_b] {
                let mut kept = vec![];
                for pk in packets.drain(..) {
                    match next() % 10 {
                        0 | 1 => {}                         // 20 % lost
                        2 => kept.extend([pk.clone(), pk]), // 10 % duplicated
                        _ => kept.push(pk),
                    }
                }
                if next() % 4 == 0 {
                    kept.reverse(); // reordered
                }
                *packets = kept;
            }
            Pair::feed(&mut p.b, &from_a, p.now, &mut p.got_b);
            Pair::feed(&mut p.a, &from_b, p.now, &mut p.got_a);
        }
        // Let retransmit timeouts finish the job on a clean link.
        for _ in 0..300 {
            p.run(1);
        }
        assert_eq!(numbers(&p.got_b), (0..sent).collect::<Vec<_>>());
        assert!(p.a.stats().resent > 0);
    }

    #[test]
    fn resume_after_a_link_drop_resends_exactly_what_is_missing() {
        let mut p = Pair::new();
        p.run(1);
        for i in 0..10u32 {
            p.a.send_reliable(1, &i.to_le_bytes()).unwrap();
        }
        p.run(3);
        // Link drops: everything sent in the meantime is lost, both ways.
        for i in 10..20u32 {
            p.a.send_reliable(1, &i.to_le_bytes()).unwrap();
        }
        for _ in 0..3 {
            p.step(&mut |_| vec![]);
        }
        // Queued while down, then a new link; the first acks resume the stream.
        for i in 20..30u32 {
            p.a.send_reliable(1, &i.to_le_bytes()).unwrap();
        }
        p.now += 5 * MS;
        p.a.link_up(p.now);
        p.b.link_up(p.now);
        p.run(4);
        assert_eq!(numbers(&p.got_b), (0..30).collect::<Vec<_>>());
        assert_eq!(p.a.stats().resent, 10);
        // Repeated drops right after resuming, with duplicates replayed from the old link.
        for round in 0..5u32 {
            for i in 0..5u32 {
                p.a.send_reliable(1, &(30 + round * 5 + i).to_le_bytes())
                    .unwrap();
            }
            let stale = Pair::packets(&mut p.a, p.now);
            p.a.link_up(p.now);
            p.b.link_up(p.now);
            Pair::feed(&mut p.b, &stale, p.now, &mut p.got_b);
            p.run(3);
        }
        assert_eq!(numbers(&p.got_b), (0..55).collect::<Vec<_>>());
    }

    #[test]
    fn nothing_reliable_is_sent_before_the_resume_ack() {
        let mut s = Session::new(PeerId(1), config(), Duration::ZERO);
        s.link_up(Duration::ZERO);
        s.send_reliable(1, b"abcd").unwrap();
        let packets = Pair::packets(&mut s, Duration::ZERO);
        let records: Vec<Record> = packets
            .iter()
            .flat_map(|(_, p)| Records::new(p.clone()).map(Result::unwrap))
            .collect();
        assert!(
            records
                .iter()
                .all(|r| !matches!(r, Record::Reliable { .. }))
        );
        assert!(records.contains(&Record::Ack(0)));
    }

    #[test]
    fn a_ping_flood_gets_one_pong() {
        let mut s = Session::new(PeerId(1), config(), Duration::ZERO);
        s.link_up(Duration::ZERO);
        for nonce in 0..10_000 {
            s.on_record(Record::Ping(nonce), Duration::ZERO, &mut |_| {})
                .unwrap();
        }
        let records: Vec<Record> = Pair::packets(&mut s, Duration::ZERO)
            .iter()
            .flat_map(|(_, p)| Records::new(p.clone()).map(Result::unwrap))
            .collect();
        let pongs: Vec<&Record> = records
            .iter()
            .filter(|r| matches!(r, Record::Pong(_)))
            .collect();
        assert_eq!(pongs, vec![&Record::Pong(9_999)]);
    }

    #[test]
    fn the_in_flight_window_paces_large_sends() {
        let mut p = Pair::new();
        p.a.config.max_in_flight = 4 * 1024;
        p.run(1);
        for i in 0..20u32 {
            let mut m = vec![0u8; 1000];
            m[..4].copy_from_slice(&i.to_le_bytes());
            p.a.send_reliable(1, &m).unwrap();
        }
        let first: usize = Pair::packets(&mut p.a, p.now + MS)
            .iter()
            .map(|(_, b)| b.len())
            .sum();
        assert!(first <= 4 * 1024 + 100, "{first} bytes in the first burst");
        // The rest follows as acks come back, all of it, in order.
        p.run(20);
        assert_eq!(numbers(&p.got_b), (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn a_lost_resume_ack_is_repaired_by_the_next_ping() {
        let mut p = Pair::new();
        // Everything of the first round is lost, including both resume acks.
        p.step(&mut |_| vec![]);
        p.a.send_reliable(1, &7u32.to_le_bytes()).unwrap();
        // Within a ping interval or two the acks ride again and the stream starts.
        for _ in 0..60 {
            p.run(1);
        }
        assert_eq!(numbers(&p.got_b), vec![7]);
    }

    #[test]
    fn protocol_violations_are_errors() {
        let now = Duration::ZERO;
        let mut s = Session::new(PeerId(1), config(), now);
        let mut sink = |_m: Inbound| {};
        assert!(s.on_record(Record::Ack(5), now, &mut sink).is_err());
        let frag = |seq, kind, total| Record::Fragment {
            seq,
            kind,
            total,
            chunk: Bytes::from_static(b"xx"),
        };
        assert!(matches!(
            s.on_record(frag(0, 1, 10_000_000), now, &mut sink),
            Err(PeerErrorKind::MessageTooLarge { .. })
        ));
        let mut s = Session::new(PeerId(1), config(), now);
        s.on_record(frag(0, 1, 6), now, &mut sink).unwrap();
        assert!(s.on_record(frag(1, 2, 6), now, &mut sink).is_err());
        let mut s = Session::new(PeerId(1), config(), now);
        s.on_record(frag(0, 1, 3), now, &mut sink).unwrap();
        assert!(
            s.on_record(frag(1, 1, 3), now, &mut sink).is_err(),
            "overrun"
        );
        let mut s = Session::new(PeerId(1), config(), now);
        s.on_record(frag(0, 1, 6), now, &mut sink).unwrap();
        let whole = Record::Reliable {
            seq: 1,
            kind: 1,
            payload: Bytes::new(),
        };
        assert!(s.on_record(whole, now, &mut sink).is_err());
    }

    #[test]
    fn round_trip_time_is_estimated_from_pings() {
        let mut p = Pair::new();
        // Each step is 10 ms one way (the answer arrives a step later): samples of ~10-20 ms.
        for _ in 0..60 {
            p.run(1);
        }
        let rtt = p.a.stats().rtt.expect("a sample");
        assert!(rtt >= 10 * MS && rtt <= 30 * MS, "{rtt:?}");
        assert!(p.a.stats().packets_out > 0 && p.b.stats().packets_in > 0);
    }
}
