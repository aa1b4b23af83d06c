//! Mesh or star: rooms of 4, 8, 16 and 32 peers over real WebRTC, in the same run. For each
//! room: the time until everyone is connected, the host's CPU per frame and memory, a joiner's
//! CPU per frame, and the round trip of a reliable message from one joiner to another and back
//! (through the host, in a star). Every peer broadcasts a small sequenced position each frame
//! at 60 Hz, as a game does.
//!
//! ```text
//! cargo bench --all-features --bench topology              # 4, 8, 16 and 32 peers
//! PM_SIZES=4,8 PM_WINDOW=3 cargo bench --all-features --bench topology
//! cargo test --all-features --bench topology               # the same, as a debug build
//! ```
//!
//! The host runs in a process of its own (this binary again, `--host`), so that its CPU time and
//! memory are its own; the joiners share another (`--joiners`; a joiner's CPU and memory are
//! that process's, divided by their number). Everything runs on loopback in the private network namespace Cargo's runner
//! (`tests/netns-run`) gives the binary, with no ICE servers. The machine has 2 cores: past a
//! dozen peers, the joiners' process competes with the host for them, which is what a mesh
//! costs.

#[allow(dead_code)]
#[path = "../tests/common/signaling_farm.rs"]
mod farm;

use bevy::prelude::*;
use bevy_peer_message::prelude::*;
use farm::{Process, free_addr};
use serde::{Deserialize, Serialize};
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const HOST_FLAG: &str = "--host";
const JOINERS_FLAG: &str = "--joiners";
const FRAME: Duration = Duration::from_micros(16_667);

#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
struct Pos {
    frame: u32,
    x: f32,
    y: f32,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
struct Ping(u32);

#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
struct Pong(u32);

fn param<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn topology_named(name: &str) -> Topology {
    match name {
        "star" => Topology::Star,
        _ => Topology::Mesh,
    }
}

/// User and system CPU time of this process so far (every thread).
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we hand it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// Resident memory of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn app(plugin: PeerMessagePlugin) -> App {
    let mut app = App::new();
    app.add_plugins((bevy::app::TaskPoolPlugin::default(), bevy::time::TimePlugin))
        .add_plugins(plugin.ice_servers(IceServers::none()))
        .add_peer_message::<Pos>(Delivery::UnreliableSequenced)
        .add_peer_message::<Ping>(Delivery::Reliable)
        .add_peer_message::<Pong>(Delivery::Reliable);
    app
}

fn net<R>(app: &mut App, f: impl FnOnce(&mut PeerMessage) -> R) -> R {
    let world = app.world_mut();
    let mut state = bevy::ecs::system::SystemState::<PeerMessage>::new(world);
    let mut param = state.get_mut(world).expect("PeerMessage");
    let r = f(&mut param);
    state.apply(world);
    r
}

/// What an app received of `M` since the last call.
fn drain<M: Message + Clone>(app: &mut App) -> Vec<M> {
    app.world_mut()
        .resource_mut::<Messages<M>>()
        .drain()
        .collect()
}

/// Peers connected now (from the `Peer` entities).
fn peers(app: &mut App) -> usize {
    let mut q = app.world_mut().query::<&Peer>();
    q.iter(app.world()).count()
}

/// The host's process: hosts on `PM_PORT` with the embedded server, broadcasts a position every
/// frame, prints `READY` once it has `PM_N - 1` joiners, then after a second's warm-up measures
/// `PM_WINDOW` seconds and prints `HOST <cpu µs per frame> <RSS MiB> <frames>`; runs until
/// killed.
fn host_main() {
    let topology = topology_named(&param("PM_TOPOLOGY", String::new()));
    let n: usize = param("PM_N", 4);
    let window = Duration::from_secs(param("PM_WINDOW", 5));
    let port: u16 = param("PM_PORT", 0);
    let bind = format!("127.0.0.1:{port}").parse().expect("address");
    let mut host = app(PeerMessagePlugin::default()
        .signaling(Signaling::embedded(bind, "ws://unused"))
        .topology(topology)
        .max_peers(n));
    net(&mut host, |n| n.host("bench"));
    let mut frame = 0u32;
    let mut next = Instant::now();
    let mut ready_at = None;
    let mut measured = false;
    let mut start = (Instant::now(), Duration::ZERO, 0u32);
    loop {
        host.update();
        let _ = drain::<Received<Pos>>(&mut host);
        if peers(&mut host) + 1 >= n {
            net(&mut host, |net| {
                net.broadcast(Pos {
                    frame,
                    x: 1.0,
                    y: 2.0,
                })
            });
            if ready_at.is_none() {
                ready_at = Some(Instant::now());
                println!("READY");
            }
        }
        frame += 1;
        if let Some(ready) = ready_at
            && !measured
        {
            if ready.elapsed() >= Duration::from_secs(1) && start.2 == 0 {
                start = (Instant::now(), cpu_time(), frame);
            }
            if start.2 > 0 && start.0.elapsed() >= window {
                let frames = frame - start.2;
                let cpu = (cpu_time() - start.1).as_micros() as f64 / frames as f64;
                println!("HOST {cpu:.0} {:.1} {frames}", rss_mib());
                measured = true;
            }
        }
        next += FRAME;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// One room's figures.
#[derive(Default)]
struct Row {
    topology: &'static str,
    n: usize,
    connect: Option<Duration>,
    host_cpu_us: f64,
    host_rss: f64,
    joiner_cpu_us: f64,
    joiner_rss: f64,
    fps: f64,
    rtt_p50: Option<Duration>,
    rtt_p95: Option<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied()
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("none".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
}

/// Microseconds on the wire between processes (`None`: not measured).
fn micros(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| d.as_micros().to_string())
}

fn parse_micros(s: Option<&str>) -> Option<Duration> {
    s?.parse().ok().map(Duration::from_micros)
}

/// The joiners' process: `PM_N - 1` joiners of the room on `PM_PORT`; prints
/// `JOINERS <connect µs> <CPU µs per joiner-frame> <RSS MiB per joiner> <frames/s> <RTT p50 µs>
/// <RTT p95 µs>` and exits.
fn joiners_main() {
    let topology = topology_named(&param("PM_TOPOLOGY", String::new()));
    let n: usize = param("PM_N", 4);
    let window = Duration::from_secs(param("PM_WINDOW", 5));
    let url = format!("ws://127.0.0.1:{}", param::<u16>("PM_PORT", 0));
    let rss_before = rss_mib();
    let mut joiners: Vec<App> = (1..n)
        .map(|_| {
            app(PeerMessagePlugin::default()
                .signaling(Signaling::server(url.clone()))
                .topology(topology)
                .max_peers(n)
                .join_timeout(Duration::from_secs(300)))
        })
        .collect();
    let started = Instant::now();
    for j in &mut joiners {
        net(j, |n| n.join("bench"));
    }
    let limit = Duration::from_secs(param("PM_CONNECT_LIMIT", 240));
    let mut connect = None;
    while started.elapsed() < limit {
        for j in &mut joiners {
            j.update();
            let _ = drain::<Received<Pos>>(j);
        }
        if joiners.iter_mut().all(|j| peers(j) + 1 >= n) {
            connect = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if connect.is_none() {
        let done = joiners.iter_mut().map(peers).filter(|p| p + 1 >= n).count();
        eprintln!("{n}: {done} of {} joiners connected in {limit:?}", n - 1);
        println!("JOINERS - 0 0 0 - -");
        return;
    }
    // Steady play, warm-up then the CPU window: every joiner broadcasts a position each frame.
    let ids: Vec<PeerId> = joiners.iter_mut().map(|j| net(j, |n| n.id())).collect();
    let mut frame = 0u32;
    play(&mut joiners, &mut frame, Duration::from_secs(1), None);
    let (at, cpu, f0) = (Instant::now(), cpu_time(), frame);
    play(&mut joiners, &mut frame, window, None);
    let frames = (frame - f0) as f64;
    let fps = frames / at.elapsed().as_secs_f64();
    let joiner_cpu = (cpu_time() - cpu).as_micros() as f64 / frames / joiners.len() as f64;
    let joiner_rss = (rss_mib() - rss_before) / joiners.len() as f64;
    // Then round trips: the first joiner pings the last every 50 ms, which answers at once;
    // both run flat out between frames (the others keep their 60 Hz), so that a round trip
    // is the network's and the relay's, not a wait for the next frame.
    let mut pinger = Pinger {
        first: 0,
        last: joiners.len() - 1,
        to: ids[joiners.len() - 1],
        rtt: Vec::new(),
    };
    play(&mut joiners, &mut frame, window, Some(&mut pinger));
    let mut rtt = pinger.rtt;
    rtt.sort();
    println!(
        "JOINERS {} {joiner_cpu:.0} {joiner_rss:.1} {fps:.1} {} {}",
        micros(connect),
        micros(percentile(&rtt, 0.5)),
        micros(percentile(&rtt, 0.95)),
    );
}

/// Starts this binary again as `role` for one room; its output lines.
fn spawn(
    role: &str,
    topology: &str,
    n: usize,
    port: u16,
    window: Duration,
) -> (Process, std::sync::mpsc::Receiver<String>) {
    let exe = std::env::current_exe().expect("this binary");
    let mut child = Command::new(exe)
        .arg(role)
        .env("PM_TOPOLOGY", topology)
        .env("PM_N", n.to_string())
        .env("PM_PORT", port.to_string())
        .env("PM_WINDOW", window.as_secs().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("a child process");
    let lines = BufReader::new(child.stdout.take().expect("its output")).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (Process(child), rx)
}

/// Waits for the line starting with `tag`; its fields.
fn fields(rx: &std::sync::mpsc::Receiver<String>, tag: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with(tag) => {
                return line.split_whitespace().skip(1).map(str::to_owned).collect();
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Vec::new()
}

fn room(topology: &'static str, n: usize, window: Duration) -> Row {
    let port = free_addr().port();
    let (host, host_out) = spawn(HOST_FLAG, topology, n, port, window);
    // Give the host's server a moment to listen (joiners retry anyway).
    std::thread::sleep(Duration::from_millis(300));
    let (joiners, joiners_out) = spawn(JOINERS_FLAG, topology, n, port, window);
    let limit = Duration::from_secs(param("PM_CONNECT_LIMIT", 240)) + window * 3;
    let j = fields(&joiners_out, "JOINERS", limit);
    let h = fields(&host_out, "HOST", Duration::from_secs(5));
    drop(joiners);
    drop(host);
    let f = |v: &[String], i: usize| v.get(i).and_then(|s| s.parse::<f64>().ok());
    Row {
        topology,
        n,
        connect: parse_micros(j.first().map(String::as_str)),
        host_cpu_us: f(&h, 0).unwrap_or(0.0),
        host_rss: f(&h, 1).unwrap_or(0.0),
        joiner_cpu_us: f(&j, 1).unwrap_or(0.0),
        joiner_rss: f(&j, 2).unwrap_or(0.0),
        fps: f(&j, 3).unwrap_or(0.0),
        rtt_p50: parse_micros(j.get(4).map(String::as_str)),
        rtt_p95: parse_micros(j.get(5).map(String::as_str)),
    }
}

/// Two joiners timing round trips: `first` pings `last` (whose id is `to`).
struct Pinger {
    first: usize,
    last: usize,
    to: PeerId,
    rtt: Vec<Duration>,
}

/// Plays `duration` of 60 Hz frames: each joiner broadcasts a position and updates. With a
/// pinger, its two joiners also update between frames, the first pings the last every 50 ms,
/// and the round trips are kept.
fn play(joiners: &mut [App], frame: &mut u32, duration: Duration, mut pinger: Option<&mut Pinger>) {
    let end = Instant::now() + duration;
    let mut next = Instant::now();
    let mut sent: std::collections::HashMap<u32, Instant> = Default::default();
    let mut seq = 0u32;
    let mut last_ping = Instant::now();
    while Instant::now() < end {
        for (i, j) in joiners.iter_mut().enumerate() {
            net(j, |net| {
                net.broadcast(Pos {
                    frame: *frame,
                    x: i as f32,
                    y: 0.0,
                })
            });
            j.update();
            let _ = drain::<Received<Pos>>(j);
        }
        *frame += 1;
        next += FRAME;
        loop {
            if let Some(p) = pinger.as_mut() {
                for Received { from, message } in drain::<Received<Ping>>(&mut joiners[p.last]) {
                    net(&mut joiners[p.last], |net| net.send(from, Pong(message.0)));
                }
                for Received { message, .. } in drain::<Received<Pong>>(&mut joiners[p.first]) {
                    if let Some(at) = sent.remove(&message.0) {
                        p.rtt.push(at.elapsed());
                    }
                }
                if last_ping.elapsed() >= Duration::from_millis(50) {
                    last_ping = Instant::now();
                    seq += 1;
                    sent.insert(seq, Instant::now());
                    let to = p.to;
                    net(&mut joiners[p.first], |net| net.send(to, Ping(seq)));
                }
                if Instant::now() < next {
                    joiners[p.first].update();
                    joiners[p.last].update();
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
            }
            break;
        }
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// Raises this process's open-file limit as far as it may: the joiners of a mesh of 32 share
/// this process, with 930 WebRTC connections between them, each several sockets (a real
/// joiner holds 31).
fn raise_file_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we hand them.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let wanted = 262_144.max(limit.rlim_cur);
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: wanted.max(limit.rlim_max),
        };
        // Root may raise the hard limit too; anyone may raise the soft one up to it.
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn main() {
    raise_file_limit();
    if std::env::args().any(|a| a == HOST_FLAG) {
        host_main();
        return;
    }
    if std::env::args().any(|a| a == JOINERS_FLAG) {
        joiners_main();
        return;
    }
    // `cargo test --bench topology` passes test-harness flags: run anyway.
    let sizes: Vec<usize> = param("PM_SIZES", "4,8,16,32".to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let window = Duration::from_secs(param("PM_WINDOW", 5));
    let mut rows = Vec::new();
    for &n in &sizes {
        // Interleaved, so that the machine's load drifts over both alike.
        for topology in ["mesh", "star"] {
            let row = room(topology, n, window);
            eprintln!(
                "{} {}: connected in {} ms, host {:.0} µs/frame {:.0} MiB, joiner {:.0} µs/frame, RTT p50 {} ms",
                row.topology,
                row.n,
                ms(row.connect),
                row.host_cpu_us,
                row.host_rss,
                row.joiner_cpu_us,
                ms(row.rtt_p50)
            );
            rows.push(row);
        }
    }
    println!(
        "\n| peers | topology | all connected (s) | host CPU/frame (µs) | host RSS (MiB) | joiner CPU/frame (µs) | joiners' RSS / joiner (MiB) | joiners' frame rate | RTT joiner→joiner p50 / p95 (ms) |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.0} | {} / {} |",
            row.n,
            row.topology,
            row.connect.map_or("not in the limit".into(), |d| format!(
                "{:.1}",
                d.as_secs_f64()
            )),
            row.host_cpu_us,
            row.host_rss,
            row.joiner_cpu_us,
            row.joiner_rss,
            row.fps,
            ms(row.rtt_p50),
            ms(row.rtt_p95),
        );
    }
    println!("\nstar / mesh:");
    println!("| peers | all connected | host CPU | host RSS | joiner CPU | RTT p50 |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for pair in rows.chunks(2) {
        let [mesh, star] = pair else { continue };
        let ratio = |s: f64, m: f64| match s / m {
            r if m <= 0.0 || !r.is_finite() => "-".into(),
            r if r < 0.1 => format!("{r:.4}"),
            r => format!("{r:.2}"),
        };
        let secs = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64());
        let p50 = |r: &Row| r.rtt_p50.map_or(0.0, |d| d.as_secs_f64());
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            mesh.n,
            ratio(secs(star.connect), secs(mesh.connect)),
            ratio(star.host_cpu_us, mesh.host_cpu_us),
            ratio(star.host_rss, mesh.host_rss),
            ratio(star.joiner_cpu_us, mesh.joiner_cpu_us),
            ratio(p50(star), p50(mesh)),
        );
    }
}
