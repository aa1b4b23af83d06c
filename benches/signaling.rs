//! Load on the signaling path: a bounded number of websocket clients (default 2,000 across
//! 500 rooms) join the `peer-message-signaling` binary, run as its own process on loopback
//! inside the bench's private network namespace (the cargo runner's `tests/netns-run`). Each
//! join is timed from the TCP connect to the server's first message (`IdAssigned`), as a
//! matchbox socket sees it. Prints joins per second and the latency percentiles, and checks the
//! server's `/metrics` against what the clients did.
//!
//! ```text
//! cargo bench --features server --bench signaling
//! PM_CLIENTS=4000 PM_ROOMS=1000 PM_THREADS=16 cargo bench --features server --bench signaling
//! ```

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
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

fn get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = stream.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// The signaling binary on a free loopback port, once it listens.
fn start_server() -> (Child, SocketAddr) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let child = Command::new(env!("CARGO_BIN_EXE_peer-message-signaling"))
        .args([
            "--bind",
            &addr.to_string(),
            "--max-connections-per-ip",
            "100000",
            "--drain-secs",
            "0",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("the signaling binary");
    let start = Instant::now();
    while !get(addr, "/healthz").contains("ok") {
        assert!(start.elapsed() < Duration::from_secs(10), "server up");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, addr)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let clients = param("PM_CLIENTS", 2_000);
    let rooms = param("PM_ROOMS", 500).max(1);
    let threads = param("PM_THREADS", 8).max(1);
    let (mut server, addr) = start_server();
    // Each thread joins its share in turn and keeps every socket open to the end.
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
    let failures = std::mem::take(&mut *failures.lock().expect("lock"));
    let metrics = get(addr, "/metrics");
    let peers = metric(&metrics, "peer_message_signaling_peers");
    let server_rooms = metric(&metrics, "peer_message_signaling_rooms");
    let joins = latencies.len();
    println!(
        "signaling load: {clients} websocket clients across {rooms} rooms, {threads} client \
         threads, one server process, loopback in a private namespace"
    );
    println!();
    println!(
        "| joined | failed | wall | joins/s | p50 | p90 | p99 | max | server peers | server rooms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {joins} | {} | {:.2} s | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} |",
        failures.len(),
        wall.as_secs_f64(),
        joins as f64 / wall.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.9).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        peers.map_or("?".into(), |p| p.to_string()),
        server_rooms.map_or("?".into(), |r| r.to_string()),
    );
    if let Some(e) = failures.first() {
        println!("first failure: {e}");
    }
    drop(open);
    let _ = server.kill();
    let _ = server.wait();
    assert!(failures.is_empty(), "{} joins failed", failures.len());
    assert_eq!(
        peers,
        Some(clients as u64),
        "the server counts every client"
    );
    assert_eq!(server_rooms, Some(rooms.min(clients) as u64));
}
