//! Messages larger than matchbox's 64 KiB limit are fragmented; larger than the configured
//! maximum are refused at `send`, never silently dropped.

use crate::harness::*;
use bevy_peer_message::prelude::*;
use std::time::Duration;

#[test]
fn one_mebibyte_message_arrives_whole_and_oversize_is_refused() {
    let (mut host, mut joiner) = connected_pair("large");
    let joiner_id = id(&mut joiner);
    // Encoded, a Vec<u8> of n bytes is n plus a small length prefix: stay within 1 MiB.
    let big: Vec<u8> = (0..(1 << 20) - 16)
        .map(|i: u32| (i * 7 + i / 251) as u8)
        .collect();
    net(&mut host, |n| n.send(joiner_id, Blob(big.clone())));
    net(&mut host, |n| n.send(joiner_id, Numbered(1)));
    let started = std::time::Instant::now();
    // A generous bound: debug builds on a loaded 2-core machine (the speed is the bench's job).
    run_until(
        &mut [&mut host, &mut joiner],
        Duration::from_secs(90),
        "the 1 MiB blob",
        |a| !inbox::<Received<Numbered>>(a[1]).is_empty(),
    );
    eprintln!(
        "1 MiB message delivered in {:?} (debug build)",
        started.elapsed()
    );
    let blobs = inbox::<Received<Blob>>(&joiner);
    assert_eq!(blobs.len(), 1);
    assert!(blobs[0].message.0 == big, "content intact");

    // Over the limit: refused with a typed error, and reported as a PeerError by `send`.
    let too_big = Blob(vec![0; 1 << 20]);
    let err = net(&mut host, |n| n.try_send(joiner_id, &too_big)).unwrap_err();
    assert!(
        matches!(
            err,
            SendError::TooLarge {
                delivery: Delivery::Reliable,
                ..
            }
        ),
        "{err}"
    );
    net(&mut host, |n| n.send(joiner_id, too_big));
    host.update();
    assert!(
        inbox::<PeerError>(&host)
            .iter()
            .any(|e| matches!(e.error, PeerErrorKind::Send(SendError::TooLarge { .. })))
    );

    // Unreliable messages over one packet are refused the same way.
    let err = net(&mut host, |n| {
        n.try_send(joiner_id, &Burst(vec![1; 20_000]))
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            SendError::TooLarge {
                delivery: Delivery::Unreliable,
                ..
            }
        ),
        "{err}"
    );
    assert!(net(&mut host, |n| n.try_send(joiner_id, &Burst(vec![1; 1000]))).is_ok());
    run_until(
        &mut [&mut host, &mut joiner],
        Duration::from_secs(5),
        "the small burst",
        |a| !inbox::<Received<Burst>>(a[1]).is_empty(),
    );
}
