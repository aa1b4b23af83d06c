//! Real link cuts under a streaming host, shared by the reconnect test (which asserts) and the
//! `link_cut` bench (which reports): a host in namespace B streams numbered reliable messages
//! and unreliable ones at 50 per second; the joiner in our namespace counts what arrives while
//! the veth between them is cut and restored.

use crate::{harness::*, netns::*};
use bevy::prelude::*;
use bevy_peer_message::prelude::*;
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

fn peer_entities(app: &mut App) -> usize {
    let mut q = app.world_mut().query::<&Peer>();
    q.iter(app.world()).count()
}

/// The host side, run in namespace B (parameters from the environment: `PM_PORT`,
/// `PM_COUNT`, `PM_RESUME` seconds). Streams, prints `AWAY`/`BACK` as it sees the joiner go and
/// return, and `ALL ACKED` once the joiner acknowledged every message; panics if the joiner is
/// ever given up on.
pub fn streaming_host() {
    let port: u16 = param("PM_PORT").parse().expect("port");
    let count: u32 = param("PM_COUNT").parse().expect("count");
    let resume = SECOND * param("PM_RESUME").parse::<u32>().expect("seconds");
    let bind = format!("0.0.0.0:{port}").parse().expect("address");
    let mut host = app(PeerMessagePlugin::default()
        .signaling(Signaling::embedded(bind, "ws://unused"))
        .resume_timeout(resume));
    net(&mut host, |n| n.host("cut"));
    run_until(&mut [&mut host], 60 * SECOND, "the joiner", |a| {
        !inbox::<PeerConnected>(a[0]).is_empty()
    });
    let joiner = inbox::<PeerConnected>(&host)[0].peer;
    println!("CONNECTED");
    let start = Instant::now();
    let mut next = Instant::now();
    let mut sent = 0;
    let (mut away, mut back) = (0, 0);
    loop {
        host.update();
        if sent < count && Instant::now() >= next {
            net(&mut host, |n| {
                n.send(joiner, Numbered(sent));
                n.send(joiner, Spark(sent));
            });
            sent += 1;
            next += Duration::from_millis(20);
        }
        let a = inbox::<PeerReconnecting>(&host).len();
        let b = inbox::<PeerReconnected>(&host);
        if a > away {
            away = a;
            println!("AWAY at {:?}", start.elapsed());
        }
        if b.len() > back {
            back = b.len();
            println!("BACK after {:?}", b[back - 1].downtime);
        }
        let mut stats = host.world_mut().query::<&PeerStats>();
        let unacked = stats.iter(host.world()).next().map(|s| s.unacked_bytes);
        if sent == count && unacked == Some(0) {
            println!("ALL ACKED {sent}");
            break;
        }
        assert!(
            start.elapsed() < 150 * SECOND,
            "not all acknowledged in time"
        );
        assert!(
            inbox::<PeerDisconnected>(&host).is_empty(),
            "the joiner must never be given up on: {:?}",
            inbox::<PeerDisconnected>(&host)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // The joiner ends this process; until then keep answering.
    run_for(&mut [&mut host], 10 * SECOND);
}

/// Figures for one cut.
#[derive(Debug, Clone)]
pub struct CutFigures {
    /// How long the link was down.
    pub cut: Duration,
    /// From the cut to `PeerReconnecting`.
    pub detect: Duration,
    /// From the link coming back to `PeerReconnected`.
    pub back: Duration,
    /// The downtime `PeerReconnected` reported.
    pub downtime: Duration,
    /// Unreliable messages received in the second after the reconnect.
    pub sparks_after: usize,
}

/// What a whole run saw.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// One entry per cut.
    pub cuts: Vec<CutFigures>,
    /// Numbered messages never received.
    pub lost: usize,
    /// Numbered messages received more than once.
    pub duplicated: usize,
    /// Received exactly `0..count`, in order.
    pub in_order: bool,
    /// The host process reported every message acknowledged and exited cleanly.
    pub host_all_acked: bool,
    /// `PeerDisconnected` messages the joiner saw (should be none).
    pub joiner_disconnects: usize,
}

/// A streaming host in namespace B and a joiner here, connected.
pub struct CutRun {
    host: Child,
    joiner: App,
    count: u32,
}

impl CutRun {
    /// Starts the host (`helper_args`: how this binary runs [`streaming_host`]) and joins it.
    pub fn start(veth: &Veth, helper: &str, count: u32) -> Self {
        let env = [
            ("PM_PORT", "3536".to_string()),
            ("PM_COUNT", count.to_string()),
            ("PM_RESUME", "90".to_string()),
        ];
        let host = if helper.starts_with("--") {
            Child::spawn_self(&veth.ns, &[helper], &env)
        } else {
            Child::spawn(&veth.ns, helper, &env)
        };
        let mut joiner = app(PeerMessagePlugin::default()
            .signaling(Signaling::server(format!("ws://{}:3536", veth.addr_b)))
            .resume_timeout(90 * SECOND)
            .join_timeout(30 * SECOND));
        net(&mut joiner, |n| n.join("cut"));
        run_until(&mut [&mut joiner], 30 * SECOND, "the host", |a| {
            state(a[0]) == ConnectionState::Connected
        });
        CutRun {
            host,
            joiner,
            count,
        }
    }

    /// Streams 4 s, cuts for each duration in turn (4 s of streaming between), then waits for
    /// every message.
    pub fn cut_and_finish(mut self, veth: &Veth, cuts: &[Duration]) -> Outcome {
        let joiner = &mut self.joiner;
        let mut figures = Vec::new();
        for (i, cut) in cuts.iter().copied().enumerate() {
            run_for(&mut [&mut *joiner], 4 * SECOND);
            assert!(!numbers(joiner).is_empty(), "messages flow before the cut");
            let cut_at = Instant::now();
            veth.cut();
            run_until(&mut [&mut *joiner], 10 * SECOND, "PeerReconnecting", |a| {
                inbox::<PeerReconnecting>(a[0]).len() > i
            });
            let detect = cut_at.elapsed();
            assert_eq!(state(joiner), ConnectionState::Reconnecting);
            assert_eq!(
                peer_entities(joiner),
                1,
                "the host's entity stays while it is away"
            );
            run_for(&mut [&mut *joiner], cut.saturating_sub(cut_at.elapsed()));
            veth.restore();
            let up_at = Instant::now();
            run_until(&mut [&mut *joiner], 30 * SECOND, "PeerReconnected", |a| {
                inbox::<PeerReconnected>(a[0]).len() > i
            });
            let back = up_at.elapsed();
            let downtime = inbox::<PeerReconnected>(joiner)[i].downtime;
            assert_eq!(state(joiner), ConnectionState::Connected);
            let sparks = inbox::<Received<Spark>>(joiner).len();
            run_for(&mut [&mut *joiner], SECOND);
            let sparks_after = inbox::<Received<Spark>>(joiner).len() - sparks;
            figures.push(CutFigures {
                cut,
                detect,
                back,
                downtime,
                sparks_after,
            });
        }
        let count = self.count;
        run_until(
            &mut [&mut *joiner],
            120 * SECOND,
            "every numbered message",
            |a| numbers(a[0]).len() >= count as usize,
        );
        run_for(&mut [&mut *joiner], SECOND);
        let got = numbers(joiner);
        let mut distinct = got.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let host_all_acked =
            self.host.wait(30 * SECOND) == Some(true) && self.host.said("ALL ACKED");
        Outcome {
            cuts: figures,
            lost: count as usize - distinct.iter().filter(|n| **n < count).count(),
            duplicated: got.len() - distinct.len(),
            in_order: got == (0..count).collect::<Vec<_>>(),
            host_all_acked,
            joiner_disconnects: inbox::<PeerDisconnected>(joiner).len(),
        }
    }
}

/// Prints the figures as a Markdown table.
pub fn print_table(outcome: &Outcome) {
    eprintln!(
        "\n| link cut | loss noticed after | link up to `PeerReconnected` | reported downtime | unreliable msgs in the next second | reliable lost | reliable duplicated |"
    );
    eprintln!("|---|---|---|---|---|---|---|");
    for c in &outcome.cuts {
        eprintln!(
            "| {} s | {:.2} s | {:.2} s | {:.2} s | {} | {} | {} |",
            c.cut.as_secs(),
            c.detect.as_secs_f64(),
            c.back.as_secs_f64(),
            c.downtime.as_secs_f64(),
            c.sparks_after,
            outcome.lost,
            outcome.duplicated
        );
    }
}
