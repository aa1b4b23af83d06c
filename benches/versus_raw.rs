//! bevy_peer_message against raw `matchbox_socket`, in the same run, alternating: connect time,
//! round trips (tight loop and 60 Hz frames), throughput of 1 KiB / 16 KiB reliable messages,
//! small-message rate (packing), and transfers the raw socket cannot do (1 MiB, 16 MiB).
//!
//! ```text
//! cargo bench --bench versus_raw
//! ```
//!
//! Both peers of each pair run in this process, each on its own thread, inside the private network
//! namespace Cargo's runner (`tests/netns-run`) gives the binary; signaling is a
//! `matchbox_signaling` server on 127.0.0.1. Prints a Markdown table of medians, p99 and the
//! plugin/raw ratio.

use bevy::{ecs::system::SystemState, prelude::*};
use bevy_peer_message::{EmbeddedServer, prelude::*};
use bytes::Bytes;
use matchbox_socket::{
    ChannelConfig, PeerId as LinkId, RtcIceServerConfig, WebRtcSocket, WebRtcSocketBuilder,
};
use serde::{Deserialize, Serialize};
use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

const SECOND: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Live heap bytes (a counting global allocator) and process CPU time, for the room-load rows.

struct Heap;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; it only counts bytes.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Heap = Heap;

fn live_heap() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// CPU time of the whole process (every thread), from /proc/self/stat (10 ms ticks).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of stat(5) (utime, stime); the slice starts at field 3.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

// ---------------------------------------------------------------------------------------------
// Raw matchbox.

struct Raw {
    socket: WebRtcSocket,
    peer: LinkId,
}

fn raw_socket(url: &str) -> WebRtcSocket {
    let (socket, message_loop) = WebRtcSocketBuilder::new(url)
        .ice_server(RtcIceServerConfig {
            urls: vec![],
            username: None,
            credential: None,
        })
        .add_channel(ChannelConfig::reliable())
        .add_channel(ChannelConfig::unreliable())
        .build();
    std::thread::spawn(move || futures::executor::block_on(message_loop));
    socket
}

fn raw_wait(socket: &mut WebRtcSocket) -> LinkId {
    let start = Instant::now();
    loop {
        let _ = socket.try_update_peers();
        if let Some(peer) = socket.connected_peers().next() {
            return peer;
        }
        assert!(start.elapsed() < 30 * SECOND, "raw sockets never connected");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Opens two raw sockets; returns the time until both see each other, and the pair.
fn raw_pair(url: &str, room: &str) -> (Duration, Raw, Raw) {
    let room_url = format!("{url}/{room}");
    let start = Instant::now();
    let mut a = raw_socket(&room_url);
    let mut b = raw_socket(&room_url);
    let pa = raw_wait(&mut a);
    let pb = raw_wait(&mut b);
    (
        start.elapsed(),
        Raw {
            socket: a,
            peer: pa,
        },
        Raw {
            socket: b,
            peer: pb,
        },
    )
}

/// Runs an echo on a thread: every packet of up to 64 bytes goes back on the channel it came
/// on; a larger one is answered with a single byte (as the plugin's echo does).
fn raw_echo(r: Raw, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let Raw { mut socket, .. } = r;
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            for ch in 0..2 {
                for (peer, packet) in socket.channel_mut(ch).receive() {
                    let answer = if packet.len() <= 64 {
                        packet
                    } else {
                        Bytes::from_static(&[0])
                    };
                    let _ = socket.channel_mut(ch).try_send(answer, peer);
                }
            }
            std::thread::yield_now();
        }
    })
}

fn raw_rtt(r: &mut Raw, channel: usize, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    let payload = Bytes::from(vec![7u8; 32]);
    for _ in 0..n {
        let start = Instant::now();
        let _ = r
            .socket
            .channel_mut(channel)
            .try_send(payload.clone(), r.peer);
        loop {
            if !r.socket.channel_mut(channel).receive().is_empty() {
                break;
            }
            if start.elapsed() > SECOND {
                eprintln!("  raw rtt: no answer within 1 s");
                break; // an unreliable packet lost: counted as a 1 s round trip
            }
            std::hint::spin_loop();
        }
        out.push(start.elapsed());
    }
    out
}

/// Sends `n` messages of `size` bytes at once and times until the echo answered them all.
fn raw_throughput(r: &mut Raw, size: usize, n: usize) -> Duration {
    let payload = Bytes::from(vec![1u8; size]);
    let start = Instant::now();
    for _ in 0..n {
        let _ = r.socket.channel_mut(0).try_send(payload.clone(), r.peer);
    }
    let mut got = 0;
    while got < n {
        got += r.socket.channel_mut(0).receive().len();
        if start.elapsed() > 120 * SECOND {
            break;
        }
        std::thread::yield_now();
    }
    start.elapsed()
}

// ---------------------------------------------------------------------------------------------
// The plugin.

#[derive(Serialize, Deserialize, Clone, Debug)]
struct Ping(u32, #[serde(with = "serde_bytes_like")] Vec<u8>);
#[derive(Serialize, Deserialize, Clone, Debug)]
struct UPing(u32);
/// A 16-byte unreliable message (the room-load rows).
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Small([u8; 16]);
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Blob(#[serde(with = "serde_bytes_like")] Vec<u8>);

mod serde_bytes_like {
    //! A `Vec<u8>` as one byte string (serde's default is a sequence of u8, decoded one by one).
    use serde::{Deserializer, Serializer, de::Visitor};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
        }
        d.deserialize_byte_buf(V)
    }
}

fn plugin_app(url: &str) -> App {
    // PM_PACKET: the plugin's packet size (default: the plugin's default), to compare.
    let mut session = PeerMessageSettings::default().session;
    if let Some(bytes) = std::env::var("PM_PACKET").ok().and_then(|v| v.parse().ok()) {
        session.max_packet = bytes;
    }
    // PM_WINDOW: the in-flight window in bytes (default: the plugin's default), to compare.
    if let Some(bytes) = std::env::var("PM_WINDOW").ok().and_then(|v| v.parse().ok()) {
        session.max_in_flight = bytes;
    }
    let mut app = App::new();
    app.add_plugins((bevy::app::TaskPoolPlugin::default(), bevy::time::TimePlugin))
        .add_plugins(
            PeerMessagePlugin::default()
                .signaling(Signaling::server(url))
                .ice_servers(IceServers::none())
                .session(session)
                .max_message_size(32 << 20),
        )
        .add_peer_message::<Ping>(Delivery::Reliable)
        .add_peer_message::<UPing>(Delivery::Unreliable)
        .add_peer_message::<Blob>(Delivery::Reliable)
        .add_peer_message::<Small>(Delivery::Unreliable);
    app
}

fn with_net<R>(app: &mut App, f: impl FnOnce(&mut PeerMessage) -> R) -> R {
    let world = app.world_mut();
    let mut state = SystemState::<PeerMessage>::new(world);
    let r = match state.get_mut(world) {
        Ok(mut p) => f(&mut p),
        Err(e) => panic!("PeerMessage unavailable: {e}"),
    };
    state.apply(world);
    r
}

/// What the measuring app has received so far (counted by a system in `Update`, the frame the
/// messages arrive in).
#[derive(Resource, Default)]
struct Counts {
    pings: usize,
    upings: usize,
    smalls: usize,
    connected: Option<PeerId>,
    connections: usize,
    /// Everything else the app was told, for diagnostics.
    events: Vec<String>,
}

fn count(
    mut counts: ResMut<Counts>,
    mut pings: MessageReader<Received<Ping>>,
    mut upings: MessageReader<Received<UPing>>,
    mut smalls: MessageReader<Received<Small>>,
    mut connected: MessageReader<PeerConnected>,
) {
    counts.pings += pings.read().count();
    counts.upings += upings.read().count();
    counts.smalls += smalls.read().count();
    for c in connected.read() {
        counts.connected = Some(c.peer);
        counts.connections += 1;
    }
}

fn log_events(
    mut counts: ResMut<Counts>,
    mut errors: MessageReader<PeerError>,
    mut away: MessageReader<PeerReconnecting>,
    mut back: MessageReader<PeerReconnected>,
    mut gone: MessageReader<PeerDisconnected>,
) {
    let log = &mut counts.events;
    log.extend(errors.read().map(|e| format!("{e:?}")));
    log.extend(away.read().map(|e| format!("{e:?}")));
    log.extend(back.read().map(|e| format!("{e:?}")));
    log.extend(gone.read().map(|e| format!("{e:?}")));
}

/// A load to send: `left` messages of `size` bytes to `peer`, as fast as the resend buffer
/// allows, from a system (as a game would).
#[derive(Resource, Default)]
struct Load {
    peer: Option<PeerId>,
    size: usize,
    left: usize,
}

fn pump_load(mut load: ResMut<Load>, mut net: PeerMessage) {
    let Some(peer) = load.peer else { return };
    let payload = Ping(0, vec![1; load.size]);
    while load.left > 0 && net.try_send(peer, &payload).is_ok() {
        load.left -= 1;
    }
}

fn counts(app: &App) -> (usize, usize) {
    let c = app.world().resource::<Counts>();
    (c.pings, c.upings)
}

/// Echo system: whatever arrives goes back to its sender.
fn echo(
    mut net: PeerMessage,
    mut pings: MessageReader<Received<Ping>>,
    mut upings: MessageReader<Received<UPing>>,
    mut blobs: MessageReader<Received<Blob>>,
) {
    for Received { from, message } in pings.read() {
        if message.1.len() <= 64 {
            net.send(*from, message.clone());
        } else {
            net.send(*from, Ping(0, vec![]));
        }
    }
    for Received { from, message } in upings.read() {
        net.send(*from, message.clone());
    }
    for Received { from, .. } in blobs.read() {
        net.send(*from, Ping(0, vec![]));
    }
}

/// A joiner app that echoes, on its own thread, `frame` apart (zero: tight loop).
fn plugin_echo(
    url: String,
    room: String,
    frame: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut app = plugin_app(&url);
        app.add_systems(Update, echo);
        with_net(&mut app, |n| n.join(room));
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            app.update();
            match frame.checked_sub(t.elapsed()) {
                Some(rest) if !rest.is_zero() => std::thread::sleep(rest),
                // A tight loop yields between frames, as raw's echo does between polls.
                _ => std::thread::yield_now(),
            }
        }
        with_net(&mut app, |n| n.leave());
        app.update();
    })
}

/// A host with an echoing joiner; returns the time from `host`/`join` to `PeerConnected` on
/// the host.
fn plugin_pair(
    url: &str,
    room: &str,
    frame: Duration,
) -> (
    Duration,
    App,
    PeerId,
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let mut host = plugin_app(url);
    host.init_resource::<Counts>()
        .init_resource::<Load>()
        .add_systems(Update, (count, pump_load));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    with_net(&mut host, |n| n.host(room.to_string()));
    host.update();
    let echo = plugin_echo(url.into(), room.into(), frame, stop.clone());
    let peer = loop {
        host.update();
        if let Some(peer) = host.world().resource::<Counts>().connected {
            break peer;
        }
        assert!(start.elapsed() < 30 * SECOND, "plugin pair never connected");
        std::thread::yield_now();
    };
    (start.elapsed(), host, peer, stop, echo)
}

fn plugin_rtt(host: &mut App, peer: PeerId, reliable: bool, n: usize) -> Vec<Duration> {
    eprintln!("  plugin rtt reliable={reliable}");
    let mut out = Vec::with_capacity(n);
    for i in 0..n as u32 {
        let before = counts(host);
        with_net(host, |net| {
            if reliable {
                net.send(peer, Ping(i, vec![7; 24]))
            } else {
                net.send(peer, UPing(i))
            }
        });
        // The clock starts once the message is queued, as a game system's send would be.
        let start = Instant::now();
        loop {
            host.update();
            let back = counts(host) != before;
            if back || start.elapsed() > SECOND {
                break;
            }
        }
        if counts(host) == before {
            eprintln!("  plugin rtt: no answer within 1 s (sample {i})");
        }
        out.push(start.elapsed());
    }
    out
}

/// Round trips counted in frames, both apps at 60 Hz.
fn plugin_frames(host: &mut App, peer: PeerId, n: usize) -> Vec<u32> {
    let frame = Duration::from_secs_f64(1.0 / 60.0);
    let mut out = Vec::with_capacity(n);
    for i in 0..n as u32 {
        let before = counts(host);
        with_net(host, |net| net.send(peer, Ping(i, vec![])));
        let mut frames = 0;
        loop {
            let t = Instant::now();
            host.update();
            frames += 1;
            if counts(host) != before || frames > 120 {
                break;
            }
            if let Some(rest) = frame.checked_sub(t.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        out.push(frames);
    }
    out
}

/// Sends `n` reliable messages of `size` bytes as fast as the resend buffer allows; times until
/// the echo acknowledged each with a message of its own.
fn plugin_throughput(host: &mut App, peer: PeerId, size: usize, n: usize) -> Duration {
    eprintln!("  plugin throughput {size} B x {n}");
    let first = counts(host).0;
    *host.world_mut().resource_mut::<Load>() = Load {
        peer: Some(peer),
        size,
        left: n,
    };
    let start = Instant::now();
    while counts(host).0 - first < n && start.elapsed() < 120 * SECOND {
        host.update();
        // As raw's loop does between polls.
        std::thread::yield_now();
    }
    start.elapsed()
}

fn plugin_transfer(host: &mut App, peer: PeerId, size: usize) -> Duration {
    eprintln!("  plugin transfer {size} B");
    let before = counts(host);
    let start = Instant::now();
    with_net(host, |net| net.try_send(peer, &Blob(vec![3; size]))).expect("within the limits");
    loop {
        host.update();
        if counts(host) != before || start.elapsed() > 120 * SECOND {
            return start.elapsed();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Room load: N peers in one room at 60 Hz, each sending 20 small unreliable messages per frame
// to every other peer.

const LOAD_PER_FRAME: usize = 20;

struct LoadResult {
    /// Process CPU time per 60 Hz frame (all N peers together, every thread).
    cpu_per_frame: Duration,
    /// Peak live heap bytes during the run, above what was live before the room opened.
    heap: i64,
    /// Messages received / messages sent.
    delivered: f64,
}

/// Runs `frame` at 60 Hz for `seconds`; returns the process CPU time used, the frame count and
/// the peak live heap seen after a frame.
fn frame_loop(seconds: f64, mut frame: impl FnMut()) -> (Duration, usize, i64) {
    let period = Duration::from_secs_f64(1.0 / 60.0);
    let frames = (seconds * 60.0) as usize;
    let cpu = cpu_time();
    let mut peak = i64::MIN;
    for _ in 0..frames {
        let t = Instant::now();
        frame();
        peak = peak.max(live_heap());
        if let Some(rest) = period.checked_sub(t.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    (cpu_time() - cpu, frames, peak)
}

/// The live heap once what earlier phases left behind has been freed (their sockets' threads
/// wind down in the background).
fn settled_heap() -> i64 {
    std::thread::sleep(2 * SECOND);
    live_heap()
}

fn raw_load(url: &str, room: &str, n: usize, seconds: f64) -> LoadResult {
    eprintln!("  raw load {n} peers");
    let heap = settled_heap();
    let room_url = format!("{url}/{room}");
    let mut sockets: Vec<WebRtcSocket> = (0..n).map(|_| raw_socket(&room_url)).collect();
    let start = Instant::now();
    while !sockets.iter_mut().all(|s| {
        let _ = s.try_update_peers();
        s.connected_peers().count() == n - 1
    }) {
        assert!(start.elapsed() < 60 * SECOND, "raw mesh never formed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let peers: Vec<Vec<LinkId>> = sockets
        .iter()
        .map(|s| s.connected_peers().collect())
        .collect();
    let payload = Bytes::from(vec![5u8; 16]);
    let mut received = 0usize;
    let (cpu, frames, peak) = frame_loop(seconds, || {
        for (socket, peers) in sockets.iter_mut().zip(&peers) {
            received += socket.channel_mut(1).receive().len();
            for _ in 0..LOAD_PER_FRAME {
                for peer in peers {
                    let _ = socket.channel_mut(1).try_send(payload.clone(), *peer);
                }
            }
        }
    });
    let heap = peak - heap;
    LoadResult {
        cpu_per_frame: cpu / frames as u32,
        heap,
        delivered: received as f64 / (frames * LOAD_PER_FRAME * n * (n - 1)) as f64,
    }
}

#[derive(Resource, Default)]
struct Blast(bool);

fn blast(on: Res<Blast>, mut net: PeerMessage) {
    if on.0 {
        for _ in 0..LOAD_PER_FRAME {
            net.broadcast(Small([5; 16]));
        }
    }
}

fn plugin_load(url: &str, room: &str, n: usize, seconds: f64) -> Option<LoadResult> {
    eprintln!("  plugin load {n} peers");
    let heap = settled_heap();
    let mut apps: Vec<App> = (0..n)
        .map(|_| {
            let mut app = plugin_app(url);
            app.init_resource::<Counts>()
                .init_resource::<Blast>()
                .add_systems(Update, (count, log_events, blast));
            app
        })
        .collect();
    with_net(&mut apps[0], |n| n.host(room.to_string()));
    for app in &mut apps[1..] {
        with_net(app, |n| n.join(room.to_string()));
    }
    let start = Instant::now();
    while !apps
        .iter()
        .all(|a| a.world().resource::<Counts>().connections >= n - 1)
    {
        for app in &mut apps {
            app.update();
        }
        if start.elapsed() > 60 * SECOND {
            for (i, app) in apps.iter_mut().enumerate() {
                let connections = app.world().resource::<Counts>().connections;
                let view = bevy_peer_message::internals::describe(app.world_mut());
                let events = &app.world().resource::<Counts>().events;
                eprintln!("app {i}: {connections} connections; events {events:?}; {view}");
            }
            eprintln!("  the plugin mesh of {n} did not form in 60 s: no figures this round");
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let before: usize = apps
        .iter()
        .map(|a| a.world().resource::<Counts>().smalls)
        .sum();
    for app in &mut apps {
        app.world_mut().resource_mut::<Blast>().0 = true;
    }
    let (cpu, frames, peak) = frame_loop(seconds, || {
        for app in &mut apps {
            app.update();
        }
    });
    let heap = peak - heap;
    let after: usize = apps
        .iter()
        .map(|a| a.world().resource::<Counts>().smalls)
        .sum();
    for app in &mut apps {
        with_net(app, |n| n.leave());
        app.update();
    }
    Some(LoadResult {
        cpu_per_frame: cpu / frames as u32,
        heap,
        delivered: (after - before) as f64 / (frames * LOAD_PER_FRAME * n * (n - 1)) as f64,
    })
}

// ---------------------------------------------------------------------------------------------
// Reporting.

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Row {
    metric: String,
    unit: &'static str,
    raw: Vec<f64>,
    plugin: Vec<f64>,
}

impl Row {
    fn print(&mut self) {
        self.raw.sort_by(f64::total_cmp);
        self.plugin.sort_by(f64::total_cmp);
        let cell = |v: &[f64], p| {
            if v.is_empty() {
                "—".to_string()
            } else {
                format!("{:.3}", pct(v, p))
            }
        };
        let ratio = |p| {
            if self.raw.is_empty() || self.plugin.is_empty() {
                "—".to_string()
            } else {
                format!("{:.2}", pct(&self.plugin, p) / pct(&self.raw, p))
            }
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            self.metric,
            self.unit,
            cell(&self.raw, 0.5),
            cell(&self.raw, 0.99),
            cell(&self.plugin, 0.5),
            cell(&self.plugin, 0.99),
            ratio(0.5),
            ratio(0.99),
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let server = EmbeddedServer::start("127.0.0.1:0".parse().expect("address")).expect("server");
    let url = format!("ws://127.0.0.1:{}", server.addr().port());
    let mut rows: Vec<Row> = Vec::new();
    let mut row = |metric: &str, unit: &'static str| {
        rows.push(Row {
            metric: metric.into(),
            unit,
            raw: vec![],
            plugin: vec![],
        });
        rows.len() - 1
    };
    let connect = row("connect (open → connected)", "ms");
    let rtt_rel = row("RTT reliable 32 B, tight loop", "ms");
    let rtt_unrel = row("RTT unreliable 32 B, tight loop", "ms");
    let rtt_est = row("RTT estimate (PeerStats::rtt) vs raw RTT", "ms");
    let tp1k = row("throughput reliable 1 KiB (echoed)", "MB/s");
    let tp16k = row("throughput reliable 16 KiB (echoed)", "MB/s");
    let small16 = row("small messages 16 B, reliable (echoed)", "k msg/s");
    let small64 = row("small messages 64 B, reliable (echoed)", "k msg/s");
    let big1 = row("one 1 MiB message (echo acks it)", "ms");
    let big16 = row("one 16 MiB message (echo acks it)", "ms");
    let frames = row("RTT at 60 Hz, both apps", "frames");
    let sizes = [2usize, 4, 8];
    let load_rows: Vec<(usize, usize, usize)> = sizes
        .iter()
        .map(|&n| {
            (
                row(
                    &format!("{n} peers at 60 Hz: CPU per frame, all peers"),
                    "ms",
                ),
                row(&format!("{n} peers at 60 Hz: peak heap"), "MB"),
                row(&format!("{n} peers at 60 Hz: messages delivered"), "%"),
            )
        })
        .collect();

    // PM_ROUNDS: how many alternating rounds (default 3).
    let rounds: usize = std::env::var("PM_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // PM_LOAD=0: skip the room-load rows (a quicker run while tuning the rest).
    let load = std::env::var("PM_LOAD").map_or(true, |v| v != "0");
    // PM_MAIN=0: only the room-load rows.
    let main_rows = std::env::var("PM_MAIN").map_or(true, |v| v != "0");
    for round in (0..rounds).filter(|_| main_rows) {
        eprintln!("round {} of {rounds}", round + 1);
        // Raw.
        let (t, mut a, b) = raw_pair(&url, &format!("raw{round}"));
        rows[connect].raw.push(ms(t));
        let stop = Arc::new(AtomicBool::new(false));
        let echo = raw_echo(b, stop.clone());
        let raw_rel: Vec<f64> = raw_rtt(&mut a, 0, 300).into_iter().map(ms).collect();
        rows[rtt_rel].raw.extend(&raw_rel);
        rows[rtt_unrel]
            .raw
            .extend(raw_rtt(&mut a, 1, 300).into_iter().map(ms));
        rows[rtt_est].raw.extend(raw_rel);
        let t = raw_throughput(&mut a, 1024, 10_000);
        rows[tp1k]
            .raw
            .push(10_000.0 * 1024.0 / t.as_secs_f64() / 1e6);
        let t = raw_throughput(&mut a, 16 * 1024, 1_000);
        rows[tp16k]
            .raw
            .push(1_000.0 * 16384.0 / t.as_secs_f64() / 1e6);
        let t = raw_throughput(&mut a, 16, 20_000);
        rows[small16].raw.push(20_000.0 / t.as_secs_f64() / 1e3);
        let t = raw_throughput(&mut a, 64, 20_000);
        rows[small64].raw.push(20_000.0 / t.as_secs_f64() / 1e3);
        stop.store(true, Ordering::Relaxed);
        let _ = echo.join();
        drop(a);

        // Plugin, tight loop.
        let (t, mut host, peer, stop, echo) =
            plugin_pair(&url, &format!("plugin{round}"), Duration::ZERO);
        rows[connect].plugin.push(ms(t));
        rows[rtt_rel]
            .plugin
            .extend(plugin_rtt(&mut host, peer, true, 300).into_iter().map(ms));
        rows[rtt_unrel]
            .plugin
            .extend(plugin_rtt(&mut host, peer, false, 300).into_iter().map(ms));
        // The protocol's own estimate (pings and pongs on the protocol's loop), after the
        // round trips above: what a game reads in `PeerStats`.
        if let Some(rtt) = with_net(&mut host, |net| net.stats(peer)).and_then(|s| s.rtt) {
            rows[rtt_est].plugin.push(ms(rtt));
        }
        let t = plugin_throughput(&mut host, peer, 1024, 10_000);
        rows[tp1k]
            .plugin
            .push(10_000.0 * 1024.0 / t.as_secs_f64() / 1e6);
        let t = plugin_throughput(&mut host, peer, 16 * 1024, 1_000);
        rows[tp16k]
            .plugin
            .push(1_000.0 * 16384.0 / t.as_secs_f64() / 1e6);
        let t = plugin_throughput(&mut host, peer, 16, 20_000);
        rows[small16].plugin.push(20_000.0 / t.as_secs_f64() / 1e3);
        let t = plugin_throughput(&mut host, peer, 64, 20_000);
        rows[small64].plugin.push(20_000.0 / t.as_secs_f64() / 1e3);
        rows[big1]
            .plugin
            .push(ms(plugin_transfer(&mut host, peer, 1 << 20)));
        rows[big16]
            .plugin
            .push(ms(plugin_transfer(&mut host, peer, 16 << 20)));
        stop.store(true, Ordering::Relaxed);
        let _ = echo.join();
        drop(host);

        // Plugin, 60 Hz.
        let (_, mut host, peer, stop, echo) = plugin_pair(
            &url,
            &format!("frames{round}"),
            Duration::from_secs_f64(1.0 / 60.0),
        );
        rows[frames].plugin.extend(
            plugin_frames(&mut host, peer, 60)
                .into_iter()
                .map(f64::from),
        );
        stop.store(true, Ordering::Relaxed);
        let _ = echo.join();
        drop(host);
    }

    // Room load, after the rest (many connections; alternating raw and plugin for each size).
    for round in (0..rounds).filter(|_| load) {
        eprintln!("room load, round {} of {rounds}", round + 1);
        for (&n, &(cpu, heap, delivered)) in sizes.iter().zip(&load_rows) {
            for plugin in [false, true] {
                let name = format!("load{n}{plugin}{round}");
                let r = if plugin {
                    match plugin_load(&url, &name, n, 4.0) {
                        Some(r) => r,
                        None => continue,
                    }
                } else {
                    raw_load(&url, &name, n, 4.0)
                };
                let values = [
                    (cpu, ms(r.cpu_per_frame)),
                    (heap, r.heap as f64 / 1e6),
                    (delivered, r.delivered * 100.0),
                ];
                for (index, value) in values {
                    if plugin {
                        rows[index].plugin.push(value);
                    } else {
                        rows[index].raw.push(value);
                    }
                }
            }
        }
    }

    println!(
        "\n| metric | unit | raw p50 | raw p99 | plugin p50 | plugin p99 | plugin/raw p50 | plugin/raw p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &mut rows {
        r.print();
    }
    println!(
        "\nEchoes: messages of up to 64 bytes come back whole, larger ones are answered with a \
         tiny message, on both sides; throughput counts the bytes sent one way until every \
         message is answered. Small messages: one raw send per message against the plugin's \
         packing of a frame's messages into few WebRTC messages. Room load: N peers in one \
         room, all in this process and updated one after another at 60 Hz, each sending \
         {LOAD_PER_FRAME} messages of 16 bytes per frame to every other peer (unreliable; raw: \
         one send per message per peer; plugin: `broadcast`); CPU is the whole process's (every \
         thread, 10 ms ticks) per frame, heap is the peak the counting allocator saw live \
         during the run above what was live before the room opened."
    );
}
