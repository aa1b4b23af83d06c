//! A peer that joins the room and vanishes mid-handshake, again and again, costs the room
//! nothing: no reconnect, no lost message, no crashed socket loop. (matchbox_socket 0.15.0
//! panicked its whole loop then, "Sender closed before channel was ready", and every connection
//! of that socket went down with it; the crate ships it patched: patches/matchbox_socket.)
//!
//! `PM_VANISH_SECONDS` (default 15) sets how long the vanishing goes on: the note on issue 11
//! quotes a 60 s run of this test, with and without the patch.

use crate::harness::*;
use bevy::prelude::*;
use bevy_peer_message::prelude::*;
use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

/// Counts panics whose message contains `needle` (and still prints them as before).
fn count_panics(needle: &'static str) -> Arc<AtomicU32> {
    let count = Arc::new(AtomicU32::new(0));
    let seen = count.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.to_string().contains(needle) {
            seen.fetch_add(1, Ordering::Relaxed);
        }
        previous(info);
    }));
    count
}

/// A raw matchbox socket that joins `url` and is dropped after `after`, with whatever
/// handshakes it started.
fn vanish(url: String, after: Duration) {
    std::thread::spawn(move || {
        let (socket, looping) = raw_socket(&url);
        std::thread::sleep(after);
        drop(socket);
        let _ = looping.join();
    });
}

/// When the `n`th vanishing peer goes: spread over the WebRTC handshake and the first moments
/// of the links (30 ms to 2.5 s; offers, answers, ICE, DTLS and the data channels take tens to
/// hundreds of milliseconds here, more under load).
fn spread(n: u32) -> u64 {
    let step = (n as u64 * 7919) % 100;
    if n.is_multiple_of(2) {
        30 + step * 3
    } else {
        300 + step * 22
    }
}

#[test]
fn a_peer_vanishing_mid_handshake_every_second_costs_the_room_nothing() {
    let seconds: u64 = std::env::var("PM_VANISH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let crashes = count_panics("Sender closed before channel was ready");
    let (mut host, url) = host_app("vanish", PeerMessagePlugin::default());
    let joiner = || app(PeerMessagePlugin::default().signaling(Signaling::server(url.clone())));
    let (mut a, mut b) = (joiner(), joiner());
    net(&mut a, |n| n.join("vanish"));
    net(&mut b, |n| n.join("vanish"));
    wait_connected(&mut [&mut host, &mut a, &mut b], 2);
    let room_url = format!("{url}/vanish");
    let start = Instant::now();
    let mut next_vanisher = Instant::now();
    let mut vanishers = 0u32;
    let mut sent = 0u32;
    while start.elapsed() < Duration::from_secs(seconds) {
        if Instant::now() >= next_vanisher {
            let after = Duration::from_millis(spread(vanishers));
            vanish(room_url.clone(), after);
            vanishers += 1;
            next_vanisher += Duration::from_secs(1);
        }
        net(&mut host, |n| n.broadcast(Numbered(sent)));
        sent += 1;
        run_for(&mut [&mut host, &mut a, &mut b], Duration::from_millis(16));
    }
    run_for(&mut [&mut host, &mut a, &mut b], Duration::from_secs(2));
    let crashed = crashes.load(Ordering::Relaxed);
    let report: Vec<String> = [("host", &host), ("a", &a), ("b", &b)]
        .iter()
        .map(|(name, app)| {
            format!(
                "{name}: reconnecting {}, errors {:?}",
                inbox::<PeerReconnecting>(app).len(),
                inbox::<PeerError>(app)
            )
        })
        .collect();
    eprintln!(
        "{vanishers} vanishing peers over {seconds} s; matchbox loop panics: {crashed}; {report:?}"
    );
    for joiner in [&a, &b] {
        assert_eq!(
            numbers(joiner),
            (0..sent).collect::<Vec<_>>(),
            "every message once, in order"
        );
    }
    assert_eq!(crashed, 0, "no socket loop crashed");
    for app in [&host, &a, &b] {
        assert!(inbox::<PeerReconnecting>(app).is_empty(), "{report:?}");
        assert!(inbox::<PeerError>(app).is_empty(), "{report:?}");
    }
}
