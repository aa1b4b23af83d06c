//! Codec and core microbenchmarks: `cargo bench --bench codec`.
//!
//! 1. Encoded sizes of four typical game messages under bincode 2 (our codec), bitcode (serde
//!    mode, which our serde-based API could use as it is, and its own derive), and postcard.
//! 2. Allocations per message in steady state through the Bevy-free core (codec + `Room` +
//!    `Session` + wire), counted by a global allocator: sending (encode, queue, build packets)
//!    and receiving (parse, deliver, decode), reliable and unreliable.
//! 3. Criterion: encode + frame + parse + decode of each message through our record framing
//!    (`wire::encode_reliable` → `Records::checked`), per codec.
//!
//! Pure CPU and memory; no network, so no namespace is needed (the Cargo runner still makes
//! one when run as root).

use bevy_peer_message::{
    Delivery, Role, SessionConfig,
    internals::{
        Room, RoomEvent, codec, testing,
        wire::{self, Record, Records},
    },
};
use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

// ---------------------------------------------------------------------------------------------
// Counting allocator.

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.load(Relaxed)
}

// ---------------------------------------------------------------------------------------------
// Typical game messages.

/// A transform update: entity id, translation, rotation.
#[derive(Serialize, Deserialize, bitcode::Encode, bitcode::Decode, Clone, Debug, PartialEq)]
struct Position {
    entity: u64,
    translation: [f32; 3],
    rotation: [f32; 4],
}

/// One frame of player input.
#[derive(Serialize, Deserialize, bitcode::Encode, bitcode::Decode, Clone, Debug, PartialEq)]
struct Input {
    tick: u32,
    buttons: u16,
    movement: [f32; 2],
    look: [f32; 2],
    jump: bool,
}

/// A chat line (200-byte text).
#[derive(Serialize, Deserialize, bitcode::Encode, bitcode::Decode, Clone, Debug, PartialEq)]
struct Chat {
    from: String,
    text: String,
}

/// A 64 KiB blob as a game would write it: a plain `Vec<u8>`.
#[derive(Serialize, Deserialize, bitcode::Encode, bitcode::Decode, Clone, Debug, PartialEq)]
struct Blob {
    data: Vec<u8>,
}

fn position() -> Position {
    Position {
        entity: 4_294_967_311,
        translation: [12.5, -3.25, 1024.0],
        rotation: [0.0, 0.707, 0.0, 0.707],
    }
}

fn input() -> Input {
    Input {
        tick: 183_402,
        buttons: 0b1010_0001,
        movement: [0.0, 1.0],
        look: [0.013, -0.002],
        jump: false,
    }
}

fn chat() -> Chat {
    Chat {
        from: "player-7".into(),
        text: "gg! ".repeat(50),
    }
}

fn blob() -> Blob {
    Blob {
        data: (0..64 * 1024).map(|i| (i * 31 % 251) as u8).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Codecs under test.

trait Msg: Serialize + DeserializeOwned + bitcode::Encode + bitcode::DecodeOwned + PartialEq {}
impl<T: Serialize + DeserializeOwned + bitcode::Encode + bitcode::DecodeOwned + PartialEq> Msg
    for T
{
}

#[derive(Clone, Copy, Debug)]
enum Codec {
    /// Ours: bincode 2, serde mode, standard config, bounded decode.
    Bincode,
    /// bitcode through serde (usable with our serde-based API as it is).
    BitcodeSerde,
    /// bitcode with its own derive (would need `bitcode::Encode/Decode` on every message).
    BitcodeDerive,
    /// postcard (serde).
    Postcard,
}

const CODECS: [Codec; 4] = [
    Codec::Bincode,
    Codec::BitcodeSerde,
    Codec::BitcodeDerive,
    Codec::Postcard,
];

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::Bincode => "bincode2",
            Codec::BitcodeSerde => "bitcode-serde",
            Codec::BitcodeDerive => "bitcode-derive",
            Codec::Postcard => "postcard",
        }
    }

    fn encode<T: Msg>(self, value: &T, out: &mut Vec<u8>, buffer: &mut bitcode::Buffer) {
        out.clear();
        match self {
            Codec::Bincode => codec::encode_into(value, out).expect("encode"),
            Codec::BitcodeSerde => *out = bitcode::serialize(value).expect("encode"),
            Codec::BitcodeDerive => out.extend_from_slice(buffer.encode(value)),
            Codec::Postcard => {
                *out = postcard::to_extend(value, std::mem::take(out)).expect("encode")
            }
        }
    }

    fn decode<T: Msg>(self, bytes: &[u8], buffer: &mut bitcode::Buffer) -> T {
        match self {
            Codec::Bincode => codec::decode_bounded(bytes, 16 << 20).expect("decode"),
            Codec::BitcodeSerde => bitcode::deserialize(bytes).expect("decode"),
            Codec::BitcodeDerive => buffer.decode(bytes).expect("decode"),
            Codec::Postcard => postcard::from_bytes(bytes).expect("decode"),
        }
    }
}

/// Encode, frame as our records (one reliable record, or 1200-byte-packet fragments for what
/// does not fit one, as the session does), parse them, reassemble, decode.
fn round_trip<T: Msg>(
    codec: Codec,
    value: &T,
    scratch: &mut Vec<u8>,
    packet: &mut BytesMut,
    reassembly: &mut Vec<u8>,
    buffer: &mut bitcode::Buffer,
) -> T {
    const SINGLE: usize = 1200 - wire::RELIABLE_HEADER;
    const CHUNK: usize = 1200 - wire::FRAGMENT_HEADER;
    codec.encode(value, scratch, buffer);
    let mut decoded = None;
    reassembly.clear();
    let mut parse = |packet: Bytes, decoded: &mut Option<T>| {
        for record in Records::checked(packet).expect("packet") {
            match record {
                Ok(Record::Reliable { payload, .. }) => {
                    *decoded = Some(codec.decode(&payload, buffer));
                }
                Ok(Record::Fragment { total, chunk, .. }) => {
                    reassembly.extend_from_slice(&chunk);
                    if reassembly.len() == total as usize {
                        *decoded = Some(codec.decode(reassembly, buffer));
                    }
                }
                _ => {}
            }
        }
    };
    if scratch.len() <= SINGLE {
        wire::encode_reliable(packet, 7, 0x1234_5678, scratch);
        parse(packet.split().freeze(), &mut decoded);
    } else {
        // One fragment per packet, as the session sends them.
        for (i, piece) in scratch.chunks(CHUNK).enumerate() {
            wire::encode_fragment(
                packet,
                7 + i as u64,
                0x1234_5678,
                scratch.len() as u32,
                piece,
            );
            parse(packet.split().freeze(), &mut decoded);
        }
    }
    decoded.expect("one message")
}

fn sizes() {
    println!("\n== Encoded size (bytes, payload only; our record header adds 15) ==");
    println!(
        "{:<10} {:>10} {:>14} {:>15} {:>10}",
        "message", "bincode2", "bitcode-serde", "bitcode-derive", "postcard"
    );
    fn row<T: Msg>(name: &str, value: &T) {
        let mut buffer = bitcode::Buffer::new();
        let mut cells = vec![];
        for codec in CODECS {
            let mut out = vec![];
            codec.encode(value, &mut out, &mut buffer);
            assert!(codec.decode::<T>(&out, &mut buffer) == *value, "round trip");
            cells.push(out.len());
        }
        println!(
            "{:<10} {:>10} {:>14} {:>15} {:>10}",
            name, cells[0], cells[1], cells[2], cells[3]
        );
    }
    row("position", &position());
    row("input", &input());
    row("chat", &chat());
    row("blob64k", &blob());
}

// ---------------------------------------------------------------------------------------------
// Allocations per message through the core.

/// Two connected rooms (link 10 on the host, 20 on the joiner), handshake done.
fn pair() -> (Room<u32>, Room<u32>) {
    let room = |id, role| Room::new(testing::identity(id, role, 1), SessionConfig::default(), 8);
    let (mut host, mut joiner) = (room(1, Role::Host), room(2, Role::Joiner));
    testing::connect(&mut host, &mut joiner, 10, 20);
    while host.poll_event().is_some() {}
    while joiner.poll_event().is_some() {}
    (host, joiner)
}

struct AllocRow {
    send: f64,
    receive: f64,
    packets_per_frame: f64,
}

/// Steady state: each frame the host sends `per_frame` messages, builds its packets; the
/// joiner takes them, decodes every message, and acks. Counts allocations per message on each
/// side over the last `frames` frames (after as many warm-up frames).
fn count_allocs<T: Msg + Clone>(
    value: &T,
    delivery: Delivery,
    per_frame: usize,
    frames: usize,
) -> AllocRow {
    let (mut host, mut joiner) = pair();
    let mut scratch = Vec::with_capacity(1024);
    let mut packets: Vec<Bytes> = Vec::with_capacity(64);
    let mut acks: Vec<Bytes> = Vec::with_capacity(64);
    let mut decoded: Vec<T> = Vec::with_capacity(per_frame);
    let (mut send, mut receive, mut sent_packets) = (0u64, 0u64, 0usize);
    for frame in 0..2 * frames {
        let now = Duration::from_millis(16 * frame as u64);
        let measuring = frame >= frames;
        let before = allocs();
        for _ in 0..per_frame {
            scratch.clear();
            codec::encode_into(value, &mut scratch).expect("encode");
            host.send(testing::peer(2), 0x1234_5678, &scratch, delivery)
                .expect("queued");
        }
        host.poll_transmit(now, &mut |_, _, p| packets.push(p));
        let after_send = allocs();
        if measuring {
            sent_packets += packets.len();
        }
        for p in packets.drain(..) {
            joiner.handle_packet(20, p, now);
        }
        while let Some(event) = joiner.poll_event() {
            if let RoomEvent::Message { payload, .. } = event {
                decoded.push(codec::decode_bounded(&payload, 16 << 20).expect("decode"));
            }
        }
        let after_receive = allocs();
        assert_eq!(decoded.len(), per_frame, "every message arrives");
        decoded.clear();
        joiner.poll_transmit(now, &mut |_, _, p| acks.push(p));
        for p in acks.drain(..) {
            host.handle_packet(10, p, now);
        }
        while host.poll_event().is_some() {}
        if measuring {
            send += after_send - before;
            receive += after_receive - after_send;
        }
    }
    let n = (per_frame * frames) as f64;
    AllocRow {
        send: send as f64 / n,
        receive: receive as f64 / n,
        packets_per_frame: sent_packets as f64 / frames as f64,
    }
}

fn alloc_table() {
    println!("\n== Allocations per message, steady state, core path (codec + room + session) ==");
    println!("20 messages per frame to one peer, 200 warm-up frames, then 200 counted.");
    println!(
        "{:<10} {:<11} {:>12} {:>15} {:>14}",
        "message", "delivery", "send/msg", "receive/msg", "packets/frame"
    );
    fn row<T: Msg + Clone>(name: &str, value: &T, delivery: Delivery) {
        let r = count_allocs(value, delivery, 20, 200);
        println!(
            "{:<10} {:<11} {:>12.2} {:>15.2} {:>14.1}",
            name,
            format!("{delivery:?}"),
            r.send,
            r.receive,
            r.packets_per_frame
        );
    }
    for delivery in [
        Delivery::Reliable,
        Delivery::Unreliable,
        Delivery::UnreliableSequenced,
    ] {
        row("position", &position(), delivery);
    }
    row("input", &input(), Delivery::Reliable);
    row("chat", &chat(), Delivery::Reliable);
}

// ---------------------------------------------------------------------------------------------
// Criterion.

fn bench_message<T: Msg>(c: &mut Criterion, name: &str, value: &T) {
    let mut group = c.benchmark_group(format!("codec/{name}"));
    for codec in CODECS {
        let mut scratch = Vec::with_capacity(1024);
        let mut packet = BytesMut::with_capacity(128 * 1024);
        let mut reassembly = Vec::with_capacity(128 * 1024);
        let mut buffer = bitcode::Buffer::new();
        group.bench_function(BenchmarkId::from_parameter(codec.name()), |b| {
            b.iter(|| {
                black_box(round_trip(
                    codec,
                    black_box(value),
                    &mut scratch,
                    &mut packet,
                    &mut reassembly,
                    &mut buffer,
                ))
            })
        });
    }
    group.finish();
}

fn main() {
    sizes();
    alloc_table();
    println!();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_message(&mut c, "position", &position());
    bench_message(&mut c, "input", &input());
    bench_message(&mut c, "chat200", &chat());
    bench_message(&mut c, "blob64k", &blob());
    c.final_summary();
}
