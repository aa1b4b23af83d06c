//! Signaling scaled out: two `peer-message-signaling` instances behind Debian's nginx, which
//! routes each room to one instance (`hash $request_uri consistent`). All on loopback in the
//! test's private namespace; nginx and both instances are our own child processes, stopped by
//! PID. Many rooms spread over both instances and no room is split; when one instance is
//! killed mid-game, the room's established WebRTC links keep working, and new joins land on
//! the survivor, where the room's peers meet them again.

use crate::{harness::*, signaling_farm as farm};
use bevy::prelude::*;
use bevy_peer_message::prelude::*;
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

const SECOND: Duration = Duration::from_secs(1);

fn metric(addr: SocketAddr, name: &str) -> u64 {
    farm::metric(addr, name).unwrap_or(0)
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{what}: not after {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
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

#[test]
fn two_instances_behind_nginx_route_by_room_and_survive_losing_one() {
    require_isolated_network();
    if !farm::nginx_present() {
        eprintln!("scale_out: no nginx here (apt-get install nginx); not run");
        return;
    }
    // Every test client comes from 127.0.0.1 (nginx passes it on in X-Real-IP).
    let (first, first_addr) = farm::signaling_instance(1000);
    let (_second, second_addr) = farm::signaling_instance(1000);
    let nginx = farm::Nginx::start(&[first_addr, second_addr]);
    let front = nginx.addr;

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
}
