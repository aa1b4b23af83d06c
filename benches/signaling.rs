//! Load on the signaling path: a bounded number of websocket clients (default 2,000 across
//! 500 rooms) join the `peer-message-signaling` binary, run as its own process on loopback
//! inside the bench's private network namespace (the cargo runner's `tests/netns-run`): first
//! one instance directly, then (when Debian's nginx is installed) two instances behind nginx
//! routing by room, then the same with one of them killed (SIGKILL) half-way. Each join is
//! timed from the TCP connect to the server's first message (`IdAssigned`), as a matchbox socket
//! sees it. Prints joins per second and the latency
//! percentiles, and checks the servers' `/metrics` against what the clients did.
//!
//! ```text
//! cargo bench --features server --bench signaling
//! PM_CLIENTS=4000 PM_ROOMS=1000 PM_THREADS=16 cargo bench --features server --bench signaling
//! ```

#[path = "../tests/common/signaling_farm.rs"]
mod farm;

use farm::{Nginx, signaling_instance};
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

fn param(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads up to the end of an HTTP response head; the status code.
fn read_head(stream: &mut TcpStream) -> u16 {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return 0,
        }
    }
    String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Reads one unmasked websocket frame from the server; its payload.
fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).ok()?;
    let len = match header[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => return None,
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).ok()?;
    Some(payload)
}

/// One client joining `room`: the open stream and how long the join took.
fn join(addr: SocketAddr, room: &str) -> Result<(TcpStream, Duration), String> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let request = format!(
        "GET /{room} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let status = read_head(&mut stream);
    if status != 101 {
        return Err(format!("status {status}"));
    }
    let first = read_frame(&mut stream).ok_or("no first message")?;
    if !String::from_utf8_lossy(&first).contains("IdAssigned") {
        return Err(format!(
            "first message {:?}",
            String::from_utf8_lossy(&first)
        ));
    }
    Ok((stream, start.elapsed()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

struct Load {
    latencies: Vec<Duration>,
    failures: Vec<String>,
    wall: Duration,
    open: Vec<TcpStream>,
}

/// `clients` joins over `rooms` rooms through `addr`, from `threads` threads; every socket is
/// kept open.
fn load(addr: SocketAddr, clients: usize, rooms: usize, threads: usize) -> Load {
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(clients)));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let open = Arc::new(Mutex::new(Vec::with_capacity(clients)));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (latencies, failures, open) = (latencies.clone(), failures.clone(), open.clone());
            std::thread::spawn(move || {
                for i in (t..clients).step_by(threads) {
                    match join(addr, &format!("room{}", i % rooms)) {
                        Ok((stream, took)) => {
                            latencies.lock().expect("lock").push(took);
                            open.lock().expect("lock").push(stream);
                        }
                        Err(e) => failures.lock().expect("lock").push(e),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let wall = start.elapsed();
    let mut latencies = std::mem::take(&mut *latencies.lock().expect("lock"));
    latencies.sort();
    Load {
        latencies,
        failures: std::mem::take(&mut *failures.lock().expect("lock")),
        wall,
        open: std::mem::take(&mut *open.lock().expect("lock")),
    }
}

/// A row of the table: `setup`, the load's figures, and what the servers counted.
fn row(setup: &str, load: &Load, server: &str) {
    let l = &load.latencies;
    println!(
        "| {setup} | {} | {} | {:.2} s | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {server} |",
        l.len(),
        load.failures.len(),
        load.wall.as_secs_f64(),
        l.len() as f64 / load.wall.as_secs_f64(),
        percentile(l, 0.5).as_secs_f64() * 1e3,
        percentile(l, 0.9).as_secs_f64() * 1e3,
        percentile(l, 0.99).as_secs_f64() * 1e3,
        l.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    if let Some(e) = load.failures.first() {
        println!("first failure: {e}");
    }
}

fn counted(addr: SocketAddr) -> (u64, u64) {
    (
        farm::metric(addr, "peer_message_signaling_peers").unwrap_or(0),
        farm::metric(addr, "peer_message_signaling_rooms").unwrap_or(0),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let clients = param("PM_CLIENTS", 2_000);
    let rooms = param("PM_ROOMS", 500).max(1);
    let threads = param("PM_THREADS", 8).max(1);
    println!(
        "signaling load: {clients} websocket clients across {rooms} rooms, {threads} client \
         threads, loopback in a private namespace"
    );
    println!();
    println!(
        "| setup | joined | failed | wall | joins/s | p50 | p90 | p99 | max | counted by the servers (peers, rooms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");

    // All clients come from one address: no per-address limit in the way.
    let per_ip = clients + 1;
    let (server, addr) = signaling_instance(per_ip);
    let direct = load(addr, clients, rooms, threads);
    let (peers, server_rooms) = counted(addr);
    row("one instance", &direct, &format!("{peers}, {server_rooms}"));
    assert!(
        direct.failures.is_empty(),
        "{} joins failed",
        direct.failures.len()
    );
    assert_eq!(
        (peers, server_rooms),
        (clients as u64, rooms.min(clients) as u64)
    );
    drop(direct.open);
    drop(server);

    if !farm::nginx_present() {
        println!("(no nginx here: apt-get install nginx for the two-instance row)");
        return;
    }
    let (_a, a_addr) = signaling_instance(per_ip);
    let (_b, b_addr) = signaling_instance(per_ip);
    let nginx = Nginx::start(&[a_addr, b_addr]);
    let behind = load(nginx.addr, clients, rooms, threads);
    let (a_counted, b_counted) = (counted(a_addr), counted(b_addr));
    row(
        "two instances behind nginx",
        &behind,
        &format!(
            "{}, {} and {}, {}",
            a_counted.0, a_counted.1, b_counted.0, b_counted.1
        ),
    );
    assert!(
        behind.failures.is_empty(),
        "{} joins failed",
        behind.failures.len()
    );
    assert_eq!(a_counted.0 + b_counted.0, clients as u64);
    assert_eq!(
        a_counted.1 + b_counted.1,
        rooms.min(clients) as u64,
        "no room split"
    );
    drop(behind.open);
    drop(nginx);

    // The same, and one instance killed (SIGKILL) once half the clients joined: nginx takes it
    // out (`max_fails=1`) and every later join lands on the survivor.
    let (a, a_addr) = signaling_instance(per_ip);
    let (_b, b_addr) = signaling_instance(per_ip);
    let nginx = Nginx::start(&[a_addr, b_addr]);
    let target = nginx.addr;
    let running = std::thread::spawn(move || load(target, clients, rooms, threads));
    let joins = |addr| farm::metric(addr, "peer_message_signaling_joins_total").unwrap_or(0);
    while joins(a_addr) + joins(b_addr) < clients as u64 / 2 && !running.is_finished() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (a_before, b_before) = (joins(a_addr), joins(b_addr));
    drop(a);
    let killed = running.join().expect("the load");
    let b_after = joins(b_addr) - b_before;
    let joined_after =
        killed.latencies.len() as u64 - (a_before + b_before).min(killed.latencies.len() as u64);
    row(
        "two behind nginx, one killed half-way",
        &killed,
        &format!(
            "killed after {} joins ({a_before} on it); after: {b_after} joins on the survivor",
            a_before + b_before
        ),
    );
    // (A join or two may complete on the doomed instance between its count and the kill.)
    assert!(
        b_after + threads as u64 >= joined_after,
        "every join after the kill is on the survivor: {b_after} of {joined_after}"
    );
    println!(
        "after the kill: {joined_after} joins answered, {b_after} on the survivor; {} failed in all",
        killed.failures.len()
    );
    drop(killed.open);
}
