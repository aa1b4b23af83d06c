//! Signaling scaled out: two `peer-message-signaling` instances behind Debian's nginx, which
//! routes each room to one instance (`hash $request_uri consistent`). All on loopback in the
//! test's private namespace; nginx and both instances are our own child processes, stopped by
//! PID. Many rooms spread over both instances and no room is split; when one instance is
//! killed mid-game, the room's established WebRTC links keep working, and new joins land on
//! the survivor, where the room's peers meet them again.

use crate::harness::*;
use bevy::prelude::*;
use bevy_peer_message::prelude::*;
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const SECOND: Duration = Duration::from_secs(1);

/// A child process killed (by PID) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(5 * SECOND));
    let _ = stream.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

fn metric(addr: SocketAddr, name: &str) -> u64 {
    get(addr, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{what}: not after {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signaling_instance() -> (Process, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let child = Command::new(env!("CARGO_BIN_EXE_peer-message-signaling"))
        .args(["--bind", &addr.to_string(), "--drain-secs", "0"])
        // Every test client comes from 127.0.0.1 (nginx passes it on in X-Real-IP).
        .args(["--behind-proxy", "true", "--max-connections-per-ip", "1000"])
        .stdout(Stdio::null())
        .spawn()
        .expect("the signaling binary");
    wait_until("an instance up", 10 * SECOND, || {
        get(addr, "/healthz").contains("ok")
    });
    (Process(child), addr)
}

/// nginx in front of `upstreams`, routing by room; its address.
fn nginx(upstreams: &[SocketAddr], dir: &std::path::Path) -> (Process, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let servers: String = upstreams
        .iter()
        .map(|u| format!("    server {u} max_fails=1 fail_timeout=30s;\n"))
        .collect();
    let conf = format!(
        "daemon off;
master_process off;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  upstream signaling {{
    hash $request_uri consistent;
{servers}  }}
  server {{
    listen {addr};
    location / {{
      proxy_pass http://signaling;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection \"upgrade\";
      proxy_set_header X-Real-IP $remote_addr;
      proxy_read_timeout 120s;
      proxy_next_upstream error timeout;
      proxy_connect_timeout 2s;
    }}
  }}
}}
",
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    let child = Command::new("nginx")
        .args([
            "-p",
            &dir.display().to_string(),
            "-c",
            &path.display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx starts");
    wait_until("nginx up", 10 * SECOND, || TcpStream::connect(addr).is_ok());
    (Process(child), addr)
}

/// A websocket joined to `room` through `addr`, open until dropped; `None` if refused.
fn raw_join(addr: SocketAddr, room: &str) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(5 * SECOND)).ok()?;
    stream
        .write_all(
            format!(
                "GET /{room} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: \
                 Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => {}
            other => {
                eprintln!("scale-out: join to {room}: {other:?} after {head:?}");
                return None;
            }
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        eprintln!("scale-out: join to {room} refused: {head}");
        return None;
    }
    Some(stream)
}

/// Whether nginx is there to test with (Debian's `nginx`; `.ci/run` installs it).
fn nginx_present() -> bool {
    let present = Command::new("nginx")
        .arg("-v")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        eprintln!("scale_out: no nginx here (apt-get install nginx); not run");
    }
    present
}

#[test]
fn two_instances_behind_nginx_route_by_room_and_survive_losing_one() {
    require_isolated_network();
    if !nginx_present() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pm-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("nginx dir");
    let (first, first_addr) = signaling_instance();
    let (_second, second_addr) = signaling_instance();
    let (_nginx, front) = nginx(&[first_addr, second_addr], &dir);

    // Many rooms, two peers each: spread over both instances, never split.
    let rooms = 100;
    let mut sockets = Vec::new();
    for r in 0..rooms {
        for _ in 0..2 {
            sockets.push(raw_join(front, &format!("spread{r}")).expect("a join through nginx"));
        }
    }
    wait_until("every peer counted", 10 * SECOND, || {
        metric(first_addr, "peer_message_signaling_peers")
            + metric(second_addr, "peer_message_signaling_peers")
            == 2 * rooms
    });
    let (rooms_a, rooms_b) = (
        metric(first_addr, "peer_message_signaling_rooms"),
        metric(second_addr, "peer_message_signaling_rooms"),
    );
    eprintln!(
        "scale-out: {rooms} rooms through nginx: {rooms_a} on one instance, {rooms_b} on the other"
    );
    assert_eq!(
        rooms_a + rooms_b,
        rooms,
        "no room is split across instances"
    );
    assert!(rooms_a > 10 && rooms_b > 10, "both instances take rooms");
    drop(sockets);

    // A game in a room that the first instance holds.
    let room = (0..)
        .map(|i| format!("game{i}"))
        .find(|room| {
            let Some(probe) = raw_join(front, room) else {
                return false;
            };
            let on_first = metric(first_addr, "peer_message_signaling_peers") == 1;
            drop(probe);
            wait_until("the probe gone", 5 * SECOND, || {
                metric(first_addr, "peer_message_signaling_peers")
                    + metric(second_addr, "peer_message_signaling_peers")
                    == 0
            });
            on_first
        })
        .expect("a room on the first instance");
    let url = format!("ws://{front}");
    let player = || {
        app(PeerMessagePlugin::default()
            .signaling(Signaling::server(url.clone()))
            .join_timeout(30 * SECOND))
    };
    let (mut host, mut joiner) = (player(), player());
    net(&mut host, |n| n.host(room.clone()));
    host.update();
    net(&mut joiner, |n| n.join(room.clone()));
    wait_connected(&mut [&mut host, &mut joiner], 1);
    assert_eq!(metric(first_addr, "peer_message_signaling_peers"), 2);

    // The room's instance dies mid-game.
    drop(first);
    let joiner_id = id(&mut joiner);
    net(&mut host, |n| n.send(joiner_id, Numbered(1)));
    run_until(
        &mut [&mut host, &mut joiner],
        10 * SECOND,
        "a message after the kill",
        |a| numbers(a[1]) == vec![1],
    );
    // A newcomer's join lands on the survivor; the room's peers re-open there and meet it.
    let mut newcomer = player();
    net(&mut newcomer, |n| n.join(room.clone()));
    run_until(
        &mut [&mut host, &mut joiner, &mut newcomer],
        40 * SECOND,
        "the newcomer in the room",
        |a| a.iter_mut().all(|app| net(app, |n| n.peers().count()) == 2),
    );
    assert_eq!(metric(second_addr, "peer_message_signaling_rooms"), 1);
    for app in [&host, &joiner] {
        assert!(
            inbox::<PeerDisconnected>(app).is_empty(),
            "nobody left the game"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
