//! The handshake refuses incompatible peers with a clear error on both sides.

use crate::harness::*;
use bevy_peer_message::prelude::*;
use std::time::Duration;

/// Host and joiner registered different deliveries for the same type: a `ProtocolMismatch`
/// error on both sides, and no connection.
#[test]
fn protocol_mismatch_is_refused_on_both_sides() {
    let (mut host, url) = host_app("mismatch", PeerMessagePlugin::default());
    let mut joiner = app_with(
        PeerMessagePlugin::default().signaling(Signaling::server(url)),
        |app| {
            app.add_peer_message::<Chat>(Delivery::Unreliable); // the host has it Reliable
        },
    );
    net(&mut joiner, |n| n.join("mismatch"));
    run_until(
        &mut [&mut host, &mut joiner],
        Duration::from_secs(30),
        "mismatch errors",
        |a| {
            a.iter().all(|app| {
                inbox::<PeerError>(app)
                    .iter()
                    .any(|e| matches!(e.error, PeerErrorKind::ProtocolMismatch { .. }))
            })
        },
    );
    let host_id = id(&mut host);
    let joiner_error = inbox::<PeerError>(&joiner)
        .into_iter()
        .find(|e| matches!(e.error, PeerErrorKind::ProtocolMismatch { .. }))
        .unwrap();
    assert_eq!(joiner_error.peer, Some(host_id), "the error names the peer");
    assert!(joiner_error.to_string().contains("protocol mismatch"));
    assert!(inbox::<PeerConnected>(&host).is_empty());
    assert!(inbox::<PeerConnected>(&joiner).is_empty());
    assert_eq!(state(&joiner), ConnectionState::Connecting);
}
