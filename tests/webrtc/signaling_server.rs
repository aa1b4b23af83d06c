//! The deployable signaling server on loopback: health, readiness, metrics, its limits, a
//! drain and a graceful stop, over plain HTTP and websocket upgrades made by hand.

use bevy_peer_message::{EmbeddedServer, ServerLimits};
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

/// Sends `request` and reads the response's head (up to the blank line): the status code and
/// the head. The stream stays open (an accepted websocket stays connected).
fn exchange(addr: SocketAddr, request: &str) -> (u16, String, TcpStream) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, stream)
}

/// `GET path`: the status and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, mut stream) = exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    );
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    (status, body)
}

/// A websocket upgrade to `room`: the status (101: connected) and the open stream.
fn join(addr: SocketAddr, room: &str) -> (u16, TcpStream) {
    join_with(addr, room, "")
}

/// [`join`] with extra header lines (each ending in `\r\n`).
fn join_with(addr: SocketAddr, room: &str, headers: &str) -> (u16, TcpStream) {
    let (status, _, stream) = exchange(
        addr,
        &format!(
            "GET /{room} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
        ),
    );
    (status, stream)
}

/// Behind a proxy, the per-address limit counts the addresses the proxy names; directly, a
/// client's `X-Real-IP` is ignored.
#[test]
fn behind_a_proxy_the_address_limit_counts_players_not_the_proxy() {
    crate::harness::require_isolated_network();
    for behind_proxy in [true, false] {
        let limits = ServerLimits {
            max_connections_per_ip: 1,
            behind_proxy,
            ..ServerLimits::default()
        };
        let server = EmbeddedServer::start_with("127.0.0.1:0".parse().unwrap(), limits).unwrap();
        let addr = server.addr();
        let (a, _a) = join_with(addr, "r", "X-Real-IP: 10.1.1.1\r\n");
        wait_for_peers(&server, 1);
        let (b, _b) = join_with(addr, "r", "X-Real-IP: 10.1.1.2\r\n");
        let (c, _c) = join_with(addr, "r", "X-Real-IP: 10.1.1.1\r\n");
        if behind_proxy {
            assert_eq!((a, b, c), (101, 101, 429), "two players, one of them twice");
        } else {
            assert_eq!((a, b, c), (101, 429, 429), "one address: 127.0.0.1");
        }
    }
}

fn wait_for_peers(server: &EmbeddedServer, peers: usize) {
    let start = Instant::now();
    while server.metrics().peers != peers {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            server.metrics()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn health_metrics_limits_drain_and_a_graceful_stop() {
    crate::harness::require_isolated_network();
    let limits = ServerLimits {
        max_rooms: 2,
        max_peers_per_room: 2,
        max_connections_per_ip: 3,
        ..ServerLimits::default()
    };
    let server = EmbeddedServer::start_with("127.0.0.1:0".parse().unwrap(), limits).unwrap();
    let addr = server.addr();
    assert_eq!(get(addr, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(addr, "/readyz"), (200, "ready\n".into()));

    let (a1, _a1) = join(addr, "a");
    wait_for_peers(&server, 1);
    let (a2, _a2) = join(addr, "a");
    wait_for_peers(&server, 2);
    let (a3, _) = join(addr, "a");
    assert_eq!((a1, a2, a3), (101, 101, 403), "the room takes two");
    let (b1, mut b1_stream) = join(addr, "b");
    wait_for_peers(&server, 3);
    let (b2, _) = join(addr, "b");
    assert_eq!((b1, b2), (101, 429), "an address opens three connections");

    let (status, text) = get(addr, "/metrics");
    assert_eq!(status, 200);
    for line in [
        "peer_message_signaling_rooms 2",
        "peer_message_signaling_peers 3",
        "peer_message_signaling_joins_total 3",
        "peer_message_signaling_refused_total{reason=\"room_full\"} 1",
        "peer_message_signaling_refused_total{reason=\"per_ip\"} 1",
        "# TYPE peer_message_signaling_joins_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }
    // A peer leaves: its room and address count one less, and a third room is still too many.
    drop(_a1);
    wait_for_peers(&server, 2);
    let (c1, _c1) = join(addr, "c");
    assert_eq!(c1, 503, "two rooms at most");
    assert_eq!(server.metrics().refused_rooms, 1);

    server.drain();
    assert_eq!(get(addr, "/readyz"), (503, "draining\n".into()));
    assert_eq!(get(addr, "/healthz").0, 200, "draining is still healthy");
    assert_eq!(join(addr, "a").0, 503, "no new peers while draining");
    assert_eq!(server.metrics().refused_draining, 1);

    // The stop closes the websockets that are left.
    assert!(server.stop(Duration::from_secs(10)), "the server ends");
    let mut rest = Vec::new();
    let closed = b1_stream.read_to_end(&mut rest);
    assert!(closed.is_ok() || rest.is_empty(), "the websocket is closed");
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens any more"
    );
}

/// The `peer-message-signaling` binary: serves, and on SIGTERM drains (readiness 503) and
/// exits cleanly.
#[cfg(feature = "server")]
#[test]
fn the_binary_drains_and_exits_on_sigterm() {
    use std::io::BufRead;
    crate::harness::require_isolated_network();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_peer-message-signaling"))
        .args(["--bind", &format!("127.0.0.1:{port}"), "--drain-secs", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.contains("listening on"), "{first}");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(get(addr, "/healthz").0, 200);
    let (status, _peer) = join(addr, "room");
    assert_eq!(status, 101);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert_eq!(
        lines.next().and_then(Result::ok).unwrap_or_default(),
        "draining for 2s"
    );
    assert_eq!(get(addr, "/readyz").0, 503, "not ready while draining");
    let status = child.wait().expect("the binary exits");
    assert!(status.success(), "{status:?}");
    let last = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(last, "stopped; peers still connected: 1");
}

/// Writes one masked websocket text frame of `len` bytes (a client's frames are masked).
fn send_text(stream: &mut TcpStream, len: usize) -> std::io::Result<()> {
    let mut frame = vec![0x81u8];
    match len {
        0..=125 => frame.push(0x80 | len as u8),
        126..=65_535 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let mask = [1u8, 2, 3, 4];
    frame.extend_from_slice(&mask);
    frame.extend((0..len).map(|i| b' ' ^ mask[i % 4]));
    stream.write_all(&frame)
}

#[test]
fn a_message_over_the_size_limit_ends_its_peers_connection_and_no_other() {
    crate::harness::require_isolated_network();
    let limits = ServerLimits {
        max_message_size: 4096,
        ..ServerLimits::default()
    };
    let server = EmbeddedServer::start_with("127.0.0.1:0".parse().expect("address"), limits)
        .expect("server");
    let addr = server.addr();
    let (status, mut flooder) = join(addr, "room");
    assert_eq!(status, 101);
    let (status, mut honest) = join(addr, "room");
    assert_eq!(status, 101);
    wait_for_peers(&server, 2);
    // Whitespace is not JSON, but a message that size is refused before it is read as any.
    send_text(&mut honest, 1000).expect("a small message");
    // Announced whole in the header, 1 MiB: the connection ends while it is still arriving.
    let _ = send_text(&mut flooder, 1 << 20);
    wait_for_peers(&server, 1);
    let mut rest = Vec::new();
    let _ = flooder.read_to_end(&mut rest);
    // The honest peer is still connected and counted.
    send_text(&mut honest, 100).expect("still open");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.metrics().peers, 1);
}
