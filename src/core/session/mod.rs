//! One remote peer's session: the reliable stream, unreliable sends, fragmentation, acks,
//! round-trip estimate. Sans-IO and Bevy-free: records in (`handle_record`), packets out
//! (`poll_transmit`), the next deadline from `poll_timeout`, time passed in as a [`Duration`]
//! since any fixed epoch, so tests drive it with a simulated clock.
//!
//! Reliability model. Every reliable record (a whole message, or one fragment of a large one)
//! gets the next sequence number of this session and stays in a bounded resend buffer
//! ([`send`]) until the peer's cumulative [`Ack`](crate::core::wire::Record::Ack) covers it.
//! The receiver ([`recv`]) delivers only the next expected number, drops duplicates and
//! anything past a gap, and acks. On a new link (a reconnect) the peer's first ack says where
//! to resume; everything after it is sent again. The result is exactly-once, in-order delivery
//! for as long as the session lives, across any number of links.
//!
//! Flow control. What the session hands up waits for the game (a frame) to take it. While
//! more than [`SessionConfig::max_undelivered_bytes`] waits, the session stops acking, so an
//! honest sender stops at its in-flight window and its game sees backpressure; unreliable
//! messages arriving meanwhile are shed. A peer that keeps sending past the window is dropped
//! ([`PeerErrorKind::Overrun`]).

mod loss;
mod progress;
mod reassembly;
mod recv;
mod rtt;
mod send;

pub use progress::{Transfer, TransferDirection};

use crate::core::{
    error::{PeerErrorKind, SendError, Violation},
    peer::PeerId,
    wire::{self, Channel, Delivery, Record},
};
use bytes::{Bytes, BytesMut};
use loss::LossMeter;
use reassembly::Reassembler;
use recv::{Accept, ReliableReceiver, SequenceCounter, SequencedFilter};
use rtt::RttEstimator;
use send::ReliableSender;
use std::time::Duration;

/// The shortest adaptive retransmit timeout.
const MIN_RTO: Duration = Duration::from_millis(100);

/// Round-trip samples on a link that is busy anyway come this often (at the least).
const RTT_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// A ping's nonce: when it left (microseconds since the session began; only we read it, the
/// peer echoes it), and in the lowest bit whether it is a loss probe.
fn ping_nonce(since_epoch: Duration, probe: bool) -> u64 {
    ((since_epoch.as_micros() as u64) << 1) | u64::from(probe)
}

/// Most pongs sent in one transmit.
const MAX_PONGS: usize = 4;

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
    /// SCTP a 1 s retransmit). The receiver acks at least every quarter of its own window.
    /// A peer that sends more than four windows past our last ack is dropped
    /// ([`PeerErrorKind::Overrun`]), so both sides should use the same value. Default 64 KiB:
    /// with per-packet kernel overhead that stays under the 208 KiB default UDP receive
    /// buffer.
    pub max_in_flight: usize,
    /// An unreliable message travels whole in one packet of at most this size (default 16 KiB;
    /// at most [`wire::MAX_TRANSPORT_PACKET`]); a larger one is refused at send.
    pub max_unreliable_packet: usize,
    /// Largest reliable message, sent or accepted, after fragmentation.
    pub max_message_size: usize,
    /// Most bytes of reliable records waiting for an ack, per peer.
    pub max_unacked_bytes: usize,
    /// Most bytes of received messages waiting for the game to take them, per peer, before
    /// the session stops acking (the sender then stops at its window) and sheds unreliable
    /// messages. Matters while frames stall: the protocol keeps running. Default 8 MiB.
    pub max_undelivered_bytes: usize,
    /// An ack with nothing else to carry it waits at most this long (default 1 ms), unless a
    /// quarter of the in-flight window has arrived since the last one: a stream gets an ack
    /// per 16 KiB, not one per packet, and a message answered within the delay carries the
    /// ack in its answer.
    pub ack_delay: Duration,
    /// With unacked data and no ack progress for this long, resend from the oldest unacked.
    /// The longest such wait: once round trips are measured, the timeout adapts
    /// (`srtt + 4 * rttvar`, at least 100 ms) under this cap.
    pub retransmit_timeout: Duration,
    /// Whether to retransmit on the adaptive timeout (`srtt + 4 * rttvar`). Over WebRTC's
    /// reliable channel nothing is lost within a link (and a new link resumes from the acks),
    /// so the plugin turns this on only when something above the transport drops packets: the
    /// link conditioner. Off, a stall of the full `retransmit_timeout` without ack progress
    /// still resends from the oldest unacked record (a safety net that costs nothing while
    /// acks flow).
    pub retransmit: bool,
    /// The longest the session stays silent toward the peer: when nothing else has gone to it
    /// for this long, a ping does (a heartbeat; the peer's liveness of us rests on it). Pings
    /// also sample the round trip, at least once per `max(ping_interval, 1 s)` whatever else
    /// flows. Default 250 ms.
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
            max_undelivered_bytes: 8 << 20,
            ack_delay: Duration::from_millis(1),
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

    /// Bytes received after which an ack goes out at once.
    fn ack_bytes(&self) -> usize {
        (self.max_in_flight / 4).max(1)
    }

    /// Most bytes a peer may send past our last ack.
    fn overrun_limit(&self) -> usize {
        self.max_in_flight
            .saturating_mul(4)
            .saturating_add(self.packet_budget())
    }
}

/// A message the session hands up, still encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// Message type id.
    pub kind: u32,
    /// The encoded message (zero-copy slice of the packet, or a reassembled buffer).
    pub payload: Bytes,
    /// How it travelled.
    pub delivery: Delivery,
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
    /// Messages received whole (a fragmented one counts once; the room's own few control
    /// messages count too).
    pub messages_in: u64,
    /// Messages queued for the peer (every delivery).
    pub messages_out: u64,
    /// Reliable records sent more than once (after a reconnect or a timeout).
    pub resent: u64,
    /// Reliable records received more than once (dropped).
    pub duplicates: u64,
    /// Unreliable messages dropped on arrival because the game had not taken
    /// `max_undelivered_bytes` of earlier ones (its frames stalled).
    pub shed: u64,
    /// Packet loss on the way to the peer, from 0 to 1: the share of the probes sent over the
    /// last 10 s or so (one per `ping_interval`, on the unreliable channel, answered on the
    /// reliable one) that were never answered. What the game's unreliable messages to this
    /// peer lose; reliable ones are resent (see `resent`). `None` for the first seconds of a
    /// link.
    pub loss: Option<f64>,
}

/// One remote peer's session state.
#[derive(Debug, Clone)]
pub struct Session {
    peer: PeerId,
    config: SessionConfig,
    sender: ReliableSender,
    sequence_out: SequenceCounter,
    /// Unreliable packets being filled, sent at the next transmit.
    unreliable: Vec<BytesMut>,
    /// Control records (ping, pong) for the next packet.
    control: BytesMut,
    /// The newest pings to answer (a heartbeat and a loss probe can arrive together): at most
    /// [`MAX_PONGS`] pongs per transmit, however many pings a peer sends.
    pongs_due: Vec<u64>,
    /// When the next loss probe goes out.
    next_probe: Duration,
    /// The probes sent and which were answered.
    loss: LossMeter,
    /// When the next round-trip sample is due (a ping whatever else flows).
    next_sample: Duration,
    /// When a packet last went to the peer: a heartbeat is due `ping_interval` after.
    last_sent: Duration,
    receiver: ReliableReceiver,
    reassembler: Reassembler,
    /// Fragmented messages sent, for their progress.
    outgoing: progress::OutgoingTransfers,
    /// The reliable number of the first fragment of the message being reassembled.
    incoming_id: u64,
    /// Fragmented messages received whole since the last `poll_transfers`.
    received_whole: Vec<Transfer>,
    sequence_in: SequencedFilter,
    /// Bytes handed up that the game has not taken yet.
    undelivered: usize,
    rtt: RttEstimator,
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
            sender: ReliableSender::new(now),
            sequence_out: SequenceCounter::default(),
            unreliable: Vec::new(),
            control: BytesMut::new(),
            pongs_due: Vec::with_capacity(MAX_PONGS),
            next_probe: now,
            loss: LossMeter::default(),
            next_sample: now,
            last_sent: now,
            receiver: ReliableReceiver::default(),
            reassembler: Reassembler::default(),
            outgoing: progress::OutgoingTransfers::default(),
            incoming_id: 0,
            received_whole: Vec::new(),
            sequence_in: SequencedFilter::default(),
            undelivered: 0,
            rtt: RttEstimator::default(),
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
        self.sender.unacked_bytes()
    }

    /// Bytes of messages handed up and not yet taken by the game.
    pub fn undelivered_bytes(&self) -> usize {
        self.undelivered
    }

    /// A new link to the peer is up (first link or a reconnect). Nothing reliable is sent on it
    /// until the peer's first ack says where to resume; our own first ack goes out at once.
    pub fn handle_link_up(&mut self, now: Duration) {
        self.sender.link_up(now);
        self.receiver.force_ack(now);
        self.last_heard = now;
        self.next_sample = now;
        // Unreliable records queued for the old link are not replayed.
        self.unreliable.clear();
        self.control.clear();
        self.pongs_due.clear();
        self.next_probe = now;
        self.loss.reset();
        self.stats.loss = None;
    }

    /// The peer's traffic moved to another link while the old one was still up (it was never
    /// away): the streams go on where they are; our next ack goes out at once, on the new link.
    pub fn handle_link_moved(&mut self, now: Duration) {
        self.receiver.force_ack(now);
        self.last_heard = now;
        self.next_sample = now;
    }

    /// Queues a message with the given delivery.
    pub fn send(&mut self, kind: u32, payload: &[u8], delivery: Delivery) -> Result<(), SendError> {
        match delivery {
            Delivery::Reliable => self.send_reliable(kind, payload),
            Delivery::Unreliable => self.send_unreliable(kind, payload, false),
            Delivery::UnreliableSequenced => self.send_unreliable(kind, payload, true),
        }?;
        self.stats.messages_out += 1;
        Ok(())
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
        let first = self.sender.next_seq();
        self.sender.push(
            self.peer,
            kind,
            payload,
            self.config.reliable_single_max(),
            self.config.fragment_chunk(),
            self.config.max_unacked_bytes,
        )?;
        let last = self.sender.next_seq().saturating_sub(1);
        if last > first {
            let acked = self.sender.acked();
            self.outgoing.started(
                kind,
                (first, last),
                size,
                self.config.fragment_chunk(),
                acked,
            );
        }
        Ok(())
    }

    /// Where each large (fragmented) reliable message stands, both ways: `out` hears of every
    /// one in transit, and once more of each that completed since the last call (then with
    /// `done == total`). Messages that fit one record are not reported.
    pub fn poll_transfers(&mut self, out: &mut impl FnMut(Transfer)) {
        self.outgoing.poll(self.sender.acked(), out);
        for t in self.received_whole.drain(..) {
            out(t);
        }
        if let Some((kind, done, total)) = self.reassembler.progress() {
            out(Transfer {
                direction: TransferDirection::Receiving,
                kind,
                id: self.incoming_id,
                done,
                total,
            });
        }
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
            let seq = self.sequence_out.next(kind);
            wire::encode_sequenced(packet, kind, seq, payload);
        } else {
            wire::encode_unreliable(packet, kind, payload);
        }
        Ok(())
    }

    /// Handles one record from the peer (not `Hello`/`Bye`, which the room handles).
    /// Delivered messages go to `deliver`, in order. An `Err` means the peer broke the protocol
    /// and must be dropped.
    pub fn handle_record(
        &mut self,
        record: Record,
        now: Duration,
        deliver: &mut impl FnMut(Inbound),
    ) -> Result<(), PeerErrorKind> {
        self.last_heard = now;
        match record {
            Record::Hello(_)
            | Record::ForeignHello(_)
            | Record::Auth(_)
            | Record::Welcome
            | Record::Bye(_) => {
                return Err(PeerErrorKind::Violation(Violation::HandshakeInSession));
            }
            Record::Ack(next) => self.stats.resent += self.sender.handle_ack(next, now)?,
            Record::Ping(nonce) => {
                if self.pongs_due.len() == MAX_PONGS {
                    self.pongs_due.remove(0);
                }
                self.pongs_due.push(nonce);
            }
            Record::Pong(nonce) => self.handle_pong(nonce, now),
            Record::Reliable { seq, kind, payload } => {
                if self.accept(seq, wire::RELIABLE_HEADER + payload.len(), now)? {
                    if self.reassembler.in_progress() {
                        return Err(PeerErrorKind::Violation(Violation::WholeInsideFragmented));
                    }
                    self.hand_up(kind, payload, Delivery::Reliable, deliver);
                }
            }
            Record::Fragment {
                seq,
                kind,
                total,
                chunk,
            } => {
                if self.accept(seq, wire::FRAGMENT_HEADER + chunk.len(), now)? {
                    if !self.reassembler.in_progress() {
                        self.incoming_id = seq;
                    }
                    if let Some((kind, message)) =
                        self.reassembler
                            .push(kind, total, &chunk, self.config.max_message_size)?
                    {
                        if self.received_whole.len() >= progress::MAX_RECEIVED_WHOLE {
                            self.received_whole.remove(0);
                        }
                        self.received_whole.push(Transfer {
                            direction: TransferDirection::Receiving,
                            kind,
                            id: self.incoming_id,
                            done: message.len(),
                            total: message.len(),
                        });
                        self.hand_up(kind, message, Delivery::Reliable, deliver);
                    }
                }
            }
            Record::Unreliable { kind, payload } => {
                self.hand_up_unreliable(kind, payload, Delivery::Unreliable, deliver)
            }
            Record::Sequenced { kind, seq, payload } => {
                if self.sequence_in.admit(kind, seq) {
                    self.hand_up_unreliable(kind, payload, Delivery::UnreliableSequenced, deliver);
                }
            }
        }
        Ok(())
    }

    /// Whether reliable record `seq` (`len` bytes on the wire) is the next one; a peer far
    /// past our last ack is an error.
    fn accept(&mut self, seq: u64, len: usize, now: Duration) -> Result<bool, PeerErrorKind> {
        match self.receiver.accept(seq, len, now, self.config.ack_bytes()) {
            Accept::Next => {
                let limit = self.config.overrun_limit();
                if self.receiver.unacked_in() > limit {
                    return Err(PeerErrorKind::Overrun {
                        bytes: self.receiver.unacked_in(),
                        limit,
                    });
                }
                Ok(true)
            }
            Accept::Duplicate => {
                self.stats.duplicates += 1;
                Ok(false)
            }
            Accept::Gap => Ok(false),
        }
    }

    fn hand_up(
        &mut self,
        kind: u32,
        payload: Bytes,
        delivery: Delivery,
        deliver: &mut impl FnMut(Inbound),
    ) {
        self.undelivered += payload.len();
        self.stats.messages_in += 1;
        deliver(Inbound {
            kind,
            payload,
            delivery,
        });
    }

    fn hand_up_unreliable(
        &mut self,
        kind: u32,
        payload: Bytes,
        delivery: Delivery,
        deliver: &mut impl FnMut(Inbound),
    ) {
        if self.undelivered > self.config.max_undelivered_bytes {
            self.stats.shed += 1;
        } else {
            self.hand_up(kind, payload, delivery, deliver);
        }
    }

    /// The game took a message of `len` bytes that this session handed up. Below
    /// `max_undelivered_bytes` again, acks resume at once.
    pub fn handle_taken(&mut self, len: usize) {
        let limit = self.config.max_undelivered_bytes;
        let was_over = self.undelivered > limit;
        self.undelivered = self.undelivered.saturating_sub(len);
        if was_over && self.undelivered <= limit {
            self.receiver.hurry();
        }
    }

    /// Acks go out only while the game keeps up (flow control).
    fn may_ack(&self) -> bool {
        self.undelivered <= self.config.max_undelivered_bytes
    }

    /// Turns retransmits on timeout on or off (see [`SessionConfig::retransmit`]).
    pub fn set_retransmit(&mut self, on: bool) {
        self.config.retransmit = on;
    }

    /// How long sent records may go without ack progress before they are sent again.
    fn retransmit_timeout(&self) -> Duration {
        if self.config.retransmit {
            self.rtt.rto(MIN_RTO, self.config.retransmit_timeout)
        } else {
            self.config.retransmit_timeout
        }
    }

    /// A packet of one `Ping`, for a link the peer may still hear us on while it is away (its
    /// answer is a round-trip sample like any other).
    pub fn wake_probe(&self, now: Duration) -> Bytes {
        let mut out = BytesMut::with_capacity(wire::SMALL_RECORD_LEN);
        wire::encode_ping(&mut out, ping_nonce(now.saturating_sub(self.epoch), false));
        out.freeze()
    }

    fn handle_pong(&mut self, nonce: u64, now: Duration) {
        self.loss.answered(nonce);
        let sent = self.epoch + Duration::from_micros(nonce >> 1);
        if let Some(sample) = now.checked_sub(sent) {
            self.rtt.sample(sample);
            self.stats.rtt = self.rtt.srtt();
            self.stats.jitter = self.rtt.rttvar();
        }
    }

    /// The next instant [`Session::poll_transmit`] has something to do, given whether a link
    /// is ready (`None`: nothing until an input arrives). `now`: at once.
    pub fn poll_timeout(&self, now: Duration, link_ready: bool) -> Option<Duration> {
        if !link_ready {
            return None;
        }
        if !self.pongs_due.is_empty()
            || !self.control.is_empty()
            || !self.unreliable.is_empty()
            || self.sender.ready(self.config.max_in_flight)
        {
            return Some(now);
        }
        let ack = self
            .receiver
            .ack_deadline(self.config.ack_delay)
            .filter(|_| self.may_ack());
        let resend = self.sender.timeout_at(self.retransmit_timeout());
        let ping = self
            .next_sample
            .min(self.last_sent + self.config.ping_interval);
        [Some(ping), Some(self.next_probe), ack, resend]
            .into_iter()
            .flatten()
            .min()
    }

    /// Builds the packets to send now and hands them to `out`. `link_ready`: a link to the
    /// peer exists (otherwise everything waits, except unreliable records, which are dropped).
    /// The last packets before a goodbye: what is queued, up to what a peer with our limits
    /// takes past its last ack (four in-flight windows, not one: nothing is sent after these,
    /// and a reliable transport carries them). The session is not used again.
    pub fn poll_farewell(&mut self, now: Duration, out: &mut impl FnMut(Channel, Bytes)) {
        self.config.max_in_flight = self.config.max_in_flight.saturating_mul(4);
        self.poll_transmit(now, true, out);
    }

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
        self.stats.resent += self.sender.check_timeout(now, self.retransmit_timeout());
        let window = self.config.max_in_flight;
        // A heartbeat only when nothing else goes out now; a sample whatever flows.
        let riding = self.sender.ready(window);
        let unreliable_data = !self.unreliable.is_empty();
        let silent = !unreliable_data && !riding;
        if now >= self.next_sample || (silent && now >= self.last_sent + self.config.ping_interval)
        {
            let nonce = ping_nonce(now.saturating_sub(self.epoch), false);
            wire::encode_ping(&mut self.control, nonce);
            self.next_sample = now + self.config.ping_interval.max(RTT_SAMPLE_INTERVAL);
        }
        if now >= self.next_probe {
            // The estimate moves as probes settle: once per probe is often enough (not on
            // every transmit).
            // (Within what the meter keeps: with a very short interval, 80 probes span little.)
            let grace = self
                .rtt
                .rto(Duration::from_secs(1), Duration::from_secs(5))
                .min(self.config.ping_interval * 40);
            self.stats.loss = self.loss.loss(now, grace);
            let nonce = ping_nonce(now.saturating_sub(self.epoch), true);
            self.probe(nonce, now);
            self.next_probe = now + self.config.ping_interval;
        }
        for nonce in self.pongs_due.drain(..) {
            wire::encode_pong(&mut self.control, nonce);
        }
        let budget = self.config.packet_budget();
        let sent_before = self.stats.packets_out;
        let mut packet = std::mem::take(&mut self.control);
        // Acks ride along with every control packet (pings included, so at least every
        // `ping_interval`): an ack lost above the transport (the conditioner) is repaired by
        // the next one, and a peer waiting for our resume point on a new link gets it.
        if self.may_ack()
            && (!packet.is_empty() || self.receiver.ack_wanted(now, self.config.ack_delay, riding))
        {
            wire::encode_ack(&mut packet, self.receiver.ack_point());
            self.receiver.acked();
        }
        while let Some(record) = self.sender.next_record(window) {
            if !packet.is_empty() && packet.len() + record.len() > budget {
                let full = std::mem::take(&mut packet).freeze();
                emit(&mut self.stats, Channel::Reliable, full, out);
            }
            if packet.is_empty() && record.len() > budget / 2 {
                // A record that fills most of a packet goes out as it is, without a copy.
                emit(&mut self.stats, Channel::Reliable, record, out);
                continue;
            }
            if packet.is_empty() {
                packet.reserve(record.len().max(1200).min(budget));
            }
            packet.extend_from_slice(&record);
        }
        if !packet.is_empty() {
            emit(&mut self.stats, Channel::Reliable, packet.freeze(), out);
        }
        // A probe alone is no heartbeat: it may be lost, and acks do not ride on it.
        if self.stats.packets_out != sent_before || unreliable_data {
            self.last_sent = now;
        }
        for packet in self.unreliable.drain(..) {
            emit(&mut self.stats, Channel::Unreliable, packet.freeze(), out);
        }
    }

    /// Queues a loss probe: a ping on the unreliable channel, in the last unreliable packet
    /// if it fits.
    fn probe(&mut self, nonce: u64, now: Duration) {
        let budget = self.config.packet_budget();
        let fits = self
            .unreliable
            .last()
            .is_some_and(|p| p.len() + wire::SMALL_RECORD_LEN <= budget);
        if !fits {
            self.unreliable
                .push(BytesMut::with_capacity(wire::SMALL_RECORD_LEN));
        }
        if let Some(packet) = self.unreliable.last_mut() {
            wire::encode_ping(packet, nonce);
            self.loss.sent(nonce, now);
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

    /// A fragmented message reports what arrived while it arrives, and once more when whole.
    #[test]
    fn a_fragmented_message_reports_its_progress_and_completion_once() {
        let now = Duration::ZERO;
        let mut s = Session::new(PeerId(1), config(), now);
        let mut sink = |_m: Inbound| {};
        let frag = |seq, chunk: &'static [u8]| Record::Fragment {
            seq,
            kind: 3,
            total: 6,
            chunk: Bytes::from_static(chunk),
        };
        let poll = |s: &mut Session| {
            let mut seen = vec![];
            s.poll_transfers(&mut |t| seen.push(t));
            seen
        };
        let at = |done| Transfer {
            direction: TransferDirection::Receiving,
            kind: 3,
            id: 0,
            done,
            total: 6,
        };
        s.handle_record(frag(0, b"abc"), now, &mut sink).unwrap();
        assert_eq!(poll(&mut s), vec![at(3)]);
        s.handle_record(frag(1, b"def"), now, &mut sink).unwrap();
        assert_eq!(poll(&mut s), vec![at(6)]);
        assert_eq!(poll(&mut s), vec![]);
    }

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
            a.handle_link_up(now);
            b.handle_link_up(now);
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
                    s.handle_record(r.unwrap(), now, &mut |m| got.push(m))
                        .unwrap();
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
        p.a.handle_link_up(p.now);
        p.b.handle_link_up(p.now);
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
            p.a.handle_link_up(p.now);
            p.b.handle_link_up(p.now);
            Pair::feed(&mut p.b, &stale, p.now, &mut p.got_b);
            p.run(3);
        }
        assert_eq!(numbers(&p.got_b), (0..55).collect::<Vec<_>>());
    }

    #[test]
    fn nothing_reliable_is_sent_before_the_resume_ack() {
        let mut s = Session::new(PeerId(1), config(), Duration::ZERO);
        s.handle_link_up(Duration::ZERO);
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
    fn a_ping_flood_gets_four_pongs_at_most() {
        let mut s = Session::new(PeerId(1), config(), Duration::ZERO);
        s.handle_link_up(Duration::ZERO);
        for nonce in 0..10_000 {
            s.handle_record(Record::Ping(nonce), Duration::ZERO, &mut |_| {})
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
        assert_eq!(
            pongs,
            (9_996..10_000)
                .map(Record::Pong)
                .collect::<Vec<_>>()
                .iter()
                .collect::<Vec<_>>(),
            "the newest ones"
        );
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

    /// Runs `a` → `b` for `steps` rounds of 10 ms; `b`'s game takes nothing (its frames
    /// stall): what `b` hands up is kept in `held`. Returns `b`'s first error.
    fn stalled_receiver(
        a: &mut Session,
        b: &mut Session,
        now: &mut Duration,
        steps: usize,
        held: &mut Vec<Inbound>,
    ) -> Result<(), PeerErrorKind> {
        for _ in 0..steps {
            *now += 10 * MS;
            let from_a = Pair::packets(a, *now);
            let from_b = Pair::packets(b, *now);
            for (_, p) in from_a {
                for rec in Records::checked(p).unwrap() {
                    b.handle_record(rec.unwrap(), *now, &mut |m| held.push(m))?;
                }
            }
            for (_, p) in from_b {
                for rec in Records::checked(p).unwrap() {
                    a.handle_record(rec.unwrap(), *now, &mut |_| {})?;
                }
            }
        }
        Ok(())
    }

    #[test]
    fn a_game_that_takes_nothing_stops_an_honest_sender_at_its_window() {
        let cfg = SessionConfig {
            max_in_flight: 8 * 1024,
            max_undelivered_bytes: 16 * 1024,
            max_unacked_bytes: 1 << 20,
            ..config()
        };
        let mut now = Duration::ZERO;
        let mut a = Session::new(PeerId(2), cfg.clone(), now);
        let mut b = Session::new(PeerId(1), cfg.clone(), now);
        a.handle_link_up(now);
        b.handle_link_up(now);
        for i in 0..200u32 {
            let mut m = vec![0u8; 1000];
            m[..4].copy_from_slice(&i.to_le_bytes());
            a.send_reliable(1, &m).unwrap();
        }
        let mut held = vec![];
        stalled_receiver(&mut a, &mut b, &mut now, 100, &mut held).unwrap();
        let bound = cfg.max_undelivered_bytes + cfg.max_in_flight + cfg.max_packet;
        assert!(
            b.undelivered_bytes() <= bound,
            "{} bytes held, bound {bound}",
            b.undelivered_bytes()
        );
        assert!(a.unacked_bytes() > 150 * 1000, "the sender keeps the rest");
        // Unreliable messages meanwhile are shed, not kept.
        a.send_unreliable(2, b"x", false).unwrap();
        stalled_receiver(&mut a, &mut b, &mut now, 1, &mut held).unwrap();
        assert_eq!(b.stats().shed, 1);
        assert!(held.iter().all(|m| m.kind == 1));
        // The game catches up: everything follows, once and in order.
        let mut got = vec![];
        for _ in 0..100 {
            for m in held.drain(..) {
                b.handle_taken(m.payload.len());
                got.push(m);
            }
            stalled_receiver(&mut a, &mut b, &mut now, 1, &mut held).unwrap();
        }
        got.append(&mut held);
        assert_eq!(numbers(&got), (0..200).collect::<Vec<_>>());
        assert_eq!(a.unacked_bytes(), 0);
    }

    #[test]
    fn a_peer_that_ignores_flow_control_is_an_error() {
        let honest = SessionConfig {
            max_in_flight: 8 * 1024,
            max_undelivered_bytes: 16 * 1024,
            ..config()
        };
        // The liar's window is far larger than the four windows we allow past our last ack.
        let liar = SessionConfig {
            max_in_flight: 1 << 20,
            max_unacked_bytes: 1 << 20,
            ..config()
        };
        let mut now = Duration::ZERO;
        let mut a = Session::new(PeerId(2), liar, now);
        let mut b = Session::new(PeerId(1), honest, now);
        a.handle_link_up(now);
        b.handle_link_up(now);
        for _ in 0..500 {
            a.send_reliable(1, &[0u8; 1000]).unwrap();
        }
        let mut held = vec![];
        let err = stalled_receiver(&mut a, &mut b, &mut now, 20, &mut held).unwrap_err();
        assert!(matches!(err, PeerErrorKind::Overrun { .. }), "{err}");
        assert!(b.undelivered_bytes() <= 16 * 1024 + 4 * 8 * 1024 + 1200);
    }

    #[test]
    fn a_stream_gets_an_ack_per_quarter_window_not_per_packet() {
        let mut p = Pair::new();
        p.run(1);
        for _ in 0..64 {
            p.a.send_reliable(1, &[0u8; 1000]).unwrap();
        }
        // One transmit of a's window (64 KiB), fed to b: b owes an ack at once, one of them.
        let packets = Pair::packets(&mut p.a, p.now + MS);
        assert!(packets.len() >= 50);
        Pair::feed(&mut p.b, &packets, p.now + MS, &mut p.got_b);
        let acks: usize = Pair::packets(&mut p.b, p.now + MS)
            .iter()
            .flat_map(|(_, p)| Records::new(p.clone()).map(Result::unwrap))
            .filter(|r| matches!(r, Record::Ack(_)))
            .count();
        assert_eq!(acks, 1);
        // A single small record waits for the ack delay.
        p.a.send_reliable(1, &[0u8; 10]).unwrap();
        let now = p.now + 2 * MS;
        let packets = Pair::packets(&mut p.a, now);
        Pair::feed(&mut p.b, &packets, now, &mut p.got_b);
        assert_eq!(p.b.poll_timeout(now, true), Some(now + config().ack_delay));
        assert!(Pair::packets(&mut p.b, now).is_empty());
        assert_eq!(Pair::packets(&mut p.b, now + config().ack_delay).len(), 1);
    }

    #[test]
    fn an_idle_link_pings_every_interval_a_busy_one_once_a_second() {
        // Reliable pings (heartbeats and round-trip samples); the unreliable loss probes go
        // every interval whatever flows.
        let mut probes = 0;
        let mut pings = |s: &mut Session, now| {
            let mut reliable = 0;
            for (channel, p) in Pair::packets(s, now) {
                let n = Records::new(p.clone())
                    .map(Result::unwrap)
                    .filter(|r| matches!(r, Record::Ping(_)))
                    .count();
                match channel {
                    Channel::Reliable => reliable += n,
                    Channel::Unreliable => probes += n,
                }
            }
            reliable
        };
        let mut s = Session::new(PeerId(1), config(), Duration::ZERO);
        s.handle_link_up(Duration::ZERO);
        // Idle for 5 s: a heartbeat every 250 ms.
        let idle: usize = (0..500).map(|i| pings(&mut s, i * 10 * MS)).sum();
        assert!((20..=21).contains(&idle), "{idle} pings while idle");
        // Busy for 5 s (an unreliable message every 10 ms): only the round-trip samples.
        let busy: usize = (500..1000)
            .map(|i| {
                s.send_unreliable(1, b"x", false).unwrap();
                pings(&mut s, i * 10 * MS)
            })
            .sum();
        assert!((5..=6).contains(&busy), "{busy} pings while busy");

        // Idle again: the heartbeat is back within an interval.
        let now = 1000 * 10 * MS;
        let heartbeat = now + config().ping_interval - 10 * MS;
        assert!(s.poll_timeout(now, true) <= Some(heartbeat));
        assert_eq!(pings(&mut s, heartbeat), 1);
        assert!((40..=42).contains(&probes), "{probes} probes in 10 s");
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
        assert!(s.handle_record(Record::Ack(5), now, &mut sink).is_err());
        let frag = |seq, kind, total| Record::Fragment {
            seq,
            kind,
            total,
            chunk: Bytes::from_static(b"xx"),
        };
        assert!(matches!(
            s.handle_record(frag(0, 1, 10_000_000), now, &mut sink),
            Err(PeerErrorKind::MessageTooLarge { .. })
        ));
        let mut s = Session::new(PeerId(1), config(), now);
        s.handle_record(frag(0, 1, 6), now, &mut sink).unwrap();
        assert!(s.handle_record(frag(1, 2, 6), now, &mut sink).is_err());
        let mut s = Session::new(PeerId(1), config(), now);
        s.handle_record(frag(0, 1, 3), now, &mut sink).unwrap();
        assert!(
            s.handle_record(frag(1, 1, 3), now, &mut sink).is_err(),
            "overrun"
        );
        let mut s = Session::new(PeerId(1), config(), now);
        s.handle_record(frag(0, 1, 6), now, &mut sink).unwrap();
        let whole = Record::Reliable {
            seq: 1,
            kind: 1,
            payload: Bytes::new(),
        };
        assert!(s.handle_record(whole, now, &mut sink).is_err());
    }

    #[test]
    fn loss_is_the_share_of_unanswered_probes() {
        let mut p = Pair::new();
        assert_eq!(p.a.stats().loss, None, "nothing measured yet");
        // Both send their probes in the same rounds: every other such round, both are lost.
        let mut unreliable = 0;
        for _ in 0..1500 {
            let mut half = |packets: Vec<(Channel, Bytes)>| {
                packets
                    .into_iter()
                    .filter(|(c, _)| {
                        *c == Channel::Reliable || {
                            unreliable += 1;
                            (unreliable - 1) / 2 % 2 == 0
                        }
                    })
                    .collect()
            };
            p.step(&mut half);
        }
        let loss = p.a.stats().loss.expect("measured");
        assert!((0.4..=0.6).contains(&loss), "{loss}");
        // The link gets better: within the window (10 s) the estimate follows.
        p.run(1500);
        assert_eq!(p.a.stats().loss, Some(0.0));
        // A new link starts afresh.
        p.a.handle_link_up(p.now);
        assert_eq!(p.a.stats().loss, None);
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
