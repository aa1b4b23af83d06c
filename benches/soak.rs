//! The soak: a host and three joiners at 60 Hz for ten minutes over real WebRTC, a hostile
//! peer flooding the host with valid messages far over its budget (and joining again each time
//! it is dropped), and the link between the host and everyone else cut for 5 s every minute.
//! Every honest app sends a numbered reliable message every frame (the host to each joiner,
//! each joiner to the host) and checks what it receives: consecutive, never repeated. Prints a
//! line a minute (resident memory of both processes, messages delivered, lost, duplicated,
//! budget drops, reconnects) and a verdict.
//!
//! ```text
//! cargo bench --bench soak             # 600 s
//! cargo bench --bench soak -- 120      # another length, in seconds
//! ```
//!
//! The host runs in network namespace B (a child process of this binary), the joiners and the
//! flooder here, in our own namespace: the veth between the two is what is cut. Needs root;
//! Cargo's runner (`tests/netns-run`) puts this binary in a private namespace first.
//! `PM_FLOOD_REJOIN=0` keeps the flooder away once dropped and `PM_CUTS=0` cuts nothing, to
//! tell what costs what.

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/webrtc/netns.rs"]
mod netns;

use bevy::{platform::collections::HashMap, prelude::*};
use bevy_peer_message::prelude::*;
use common::*;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

const HOST_FLAG: &str = "--soak-host";
const ROOM: &str = "soak";
const FRAME: Duration = Duration::from_nanos(16_666_667);
const SECOND: Duration = Duration::from_secs(1);
const CUT_EVERY: Duration = Duration::from_secs(60);
const CUT_FOR: Duration = Duration::from_secs(5);
/// Noise messages the flooder sends per frame (30 000 a second; its budget is 5 000).
const FLOOD_PER_FRAME: usize = 500;

/// Valid, registered, unreliable: the flood.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Noise(Vec<u8>);

/// What one app received of the numbered streams, per sender, and what it sent.
#[derive(Resource, Default)]
struct Tally {
    next: HashMap<PeerId, u32>,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    sent: u32,
    budget_drops: u64,
    reconnects: u64,
}

fn tally(
    mut received: MessageReader<Received<Numbered>>,
    mut errors: MessageReader<PeerError>,
    mut back: MessageReader<PeerReconnected>,
    mut tally: ResMut<Tally>,
) {
    for Received { from, message } in received.read() {
        let n = message.0;
        let expected = *tally.next.get(from).unwrap_or(&n);
        if n < expected {
            tally.duplicated += 1;
        } else {
            tally.lost += (n - expected) as u64;
            tally.delivered += 1;
            tally.next.insert(*from, n + 1);
        }
    }
    for e in errors.read() {
        if matches!(e.error, PeerErrorKind::OverBudget { .. }) {
            tally.budget_drops += 1;
        }
    }
    tally.reconnects += back.read().count() as u64;
}

fn budgets() -> Budgets {
    Budgets {
        messages_per_second: 5_000,
        ..Budgets::default()
    }
}

/// A soak app: no recorder that grows (only the tally), both message types.
fn soak_app(plugin: PeerMessagePlugin) -> App {
    let mut app = App::new();
    app.add_plugins((bevy::app::TaskPoolPlugin::default(), bevy::time::TimePlugin))
        .add_plugins(
            plugin
                .ice_servers(IceServers::none())
                .budgets(budgets())
                .resume_timeout(30 * SECOND),
        )
        .add_peer_message::<Numbered>(Delivery::Reliable)
        .add_peer_message::<Noise>(Delivery::Unreliable)
        .init_resource::<Tally>()
        .add_systems(Update, tally);
    record::<PeerDisconnected>(&mut app);
    record::<PeerReconnected>(&mut app);
    app
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Megabytes the allocator has handed out and not taken back (glibc's `mallinfo2`, all arenas,
/// mmapped blocks included): what the program holds. RSS also counts memory freed but kept by
/// the allocator, so RSS growing while this stays flat is the allocator, not a leak.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_mb() -> f64 {
    #[repr(C)]
    struct MallInfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    unsafe extern "C" {
        fn mallinfo2() -> MallInfo2;
    }
    // SAFETY: mallinfo2 takes nothing and returns a plain struct by value (glibc >= 2.33).
    let m = unsafe { mallinfo2() };
    (m.uordblks + m.hblkhd) as f64 / (1024.0 * 1024.0)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_mb() -> f64 {
    f64::NAN
}

/// Sleeps until the next frame.
fn pace(next: &mut Instant) {
    *next += FRAME;
    let now = Instant::now();
    if *next > now {
        std::thread::sleep(*next - now);
    } else {
        *next = now;
    }
}

/// The host, in namespace B: numbered messages to every joiner each frame; a line a minute.
fn host(port: u16, seconds: u64) {
    let bind = format!("0.0.0.0:{port}").parse().expect("address");
    let mut host =
        soak_app(PeerMessagePlugin::default().signaling(Signaling::embedded(bind, "ws://unused")));
    net(&mut host, |n| n.host(ROOM));
    let start = Instant::now();
    let mut next = Instant::now();
    let mut minute = 0;
    let until = Duration::from_secs(seconds + 20);
    while start.elapsed() < until {
        host.update();
        let sending = start.elapsed() < Duration::from_secs(seconds);
        let sent = host.world().resource::<Tally>().sent;
        let joiners: Vec<PeerId> = net(&mut host, |n| {
            n.peers()
                .filter(|(_, role)| *role == Role::Joiner)
                .map(|(p, _)| p)
                .collect()
        });
        if sending && !joiners.is_empty() {
            // The flooder is a joiner too; it gets the stream until it is dropped.
            net(&mut host, |n| n.broadcast(Numbered(sent)));
            host.world_mut().resource_mut::<Tally>().sent += 1;
        }
        if start.elapsed() >= minute * 60 * SECOND {
            let t = host.world().resource::<Tally>();
            println!(
                "HOST t={}s rss={:.1} heap={:.1} delivered={} lost={} dup={} budget_drops={} reconnects={} peers={}",
                start.elapsed().as_secs(),
                rss_mb(),
                heap_mb(),
                t.delivered,
                t.lost,
                t.duplicated,
                t.budget_drops,
                t.reconnects,
                joiners.len()
            );
            minute += 1;
        }
        pace(&mut next);
    }
    let t = host.world().resource::<Tally>();
    println!(
        "HOST FINAL rss={:.1} heap={:.1} delivered={} lost={} dup={} budget_drops={} reconnects={}",
        rss_mb(),
        heap_mb(),
        t.delivered,
        t.lost,
        t.duplicated,
        t.budget_drops,
        t.reconnects
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args
        .iter()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(600);
    if args.iter().any(|a| a == HOST_FLAG) {
        host(netns::param("PM_PORT").parse().expect("port"), seconds);
        return;
    }
    if !netns::can_create_namespaces() {
        std::process::exit(2);
    }
    let veth = netns::Veth::create();
    let port = 3536;
    let secs = seconds.to_string();
    let mut child = netns::Child::spawn_self(
        &veth.ns,
        &[HOST_FLAG, &secs],
        &[("PM_PORT", port.to_string())],
    );
    std::thread::sleep(2 * SECOND);
    let url = format!("ws://{}:{port}", veth.addr_b);
    let joiner =
        || soak_app(PeerMessagePlugin::default().signaling(Signaling::server(url.clone())));
    let mut joiners: Vec<App> = (0..3).map(|_| joiner()).collect();
    let mut flooder = joiner();
    for app in joiners.iter_mut().chain([&mut flooder]) {
        net(app, |n| n.join(ROOM));
    }

    println!(
        "| t (s) | joiners' RSS (MB) | joiners' heap in use (MB) | host→joiners delivered | lost | duplicated | reconnects |"
    );
    println!("|---|---|---|---|---|---|---|");
    let start = Instant::now();
    let mut next = Instant::now();
    let mut minute = 0;
    let mut cut_at = 30 * SECOND;
    let mut cut = false;
    let mut flooder_rejoins = 0;
    let mut flooder_offline_since: Option<Instant> = None;
    let run = Duration::from_secs(seconds);
    let rejoin = std::env::var("PM_FLOOD_REJOIN").map_or(true, |v| v != "0");
    // `PM_CUTS=0`: no link cuts (steady state only).
    let cuts = std::env::var("PM_CUTS").map_or(true, |v| v != "0");
    eprintln!(
        "soak: {seconds} s at 60 Hz, host in {} at {}, 3 joiners and a flooder here; {}",
        veth.ns,
        veth.addr_b,
        if cuts {
            format!("the link is cut for {CUT_FOR:?} every {CUT_EVERY:?}")
        } else {
            "no link cuts (PM_CUTS=0)".to_string()
        }
    );
    while start.elapsed() < run + 15 * SECOND {
        let elapsed = start.elapsed();
        let sending = elapsed < run;
        for app in joiners.iter_mut() {
            app.update();
            if sending && net(app, |n| n.host_id()).is_some() {
                let sent = app.world().resource::<Tally>().sent;
                net(app, |n| n.send_to_host(Numbered(sent)));
                app.world_mut().resource_mut::<Tally>().sent += 1;
            }
        }
        flooder.update();
        if sending && net(&mut flooder, |n| n.host_id()).is_some() {
            net(&mut flooder, |n| {
                for _ in 0..FLOOD_PER_FRAME {
                    n.send_to_host(Noise(vec![0xee; 32]));
                }
            });
        }
        // Dropped (or refused): it comes back a second later, as a hostile peer would
        // (`PM_FLOOD_REJOIN=0`: it stays away, to tell churn from steady state).
        if state(&flooder) == ConnectionState::Offline && sending && rejoin {
            let since = *flooder_offline_since.get_or_insert_with(Instant::now);
            if since.elapsed() > SECOND {
                net(&mut flooder, |n| n.join(ROOM));
                flooder_rejoins += 1;
                flooder_offline_since = None;
            }
        }
        if cuts && sending && !cut && elapsed >= cut_at {
            eprintln!("cut at {:?}", elapsed);
            veth.cut();
            cut = true;
        } else if cut && elapsed >= cut_at + CUT_FOR {
            veth.restore();
            cut = false;
            cut_at += CUT_EVERY;
        }
        if elapsed >= minute * 60 * SECOND {
            let (delivered, lost, dup, reconnects) = joiners.iter().fold((0, 0, 0, 0), |a, app| {
                let t = app.world().resource::<Tally>();
                (
                    a.0 + t.delivered,
                    a.1 + t.lost,
                    a.2 + t.duplicated,
                    a.3 + t.reconnects,
                )
            });
            println!(
                "| {} | {:.1} | {:.1} | {delivered} | {lost} | {dup} | {reconnects} |",
                elapsed.as_secs(),
                rss_mb(),
                heap_mb()
            );
            minute += 1;
        }
        pace(&mut next);
    }
    let ok = child.wait(60 * SECOND) == Some(true);
    let sent: u64 = joiners
        .iter()
        .map(|a| a.world().resource::<Tally>().sent as u64)
        .sum();
    let (lost, dup) = joiners.iter().fold((0, 0), |a, app| {
        let t = app.world().resource::<Tally>();
        (a.0 + t.lost, a.1 + t.duplicated)
    });
    let flooder_id = net(&mut flooder, |n| n.id());
    let honest_disconnects: Vec<PeerDisconnected> = joiners
        .iter()
        .flat_map(inbox::<PeerDisconnected>)
        .filter(|d| d.peer != flooder_id)
        .collect();
    let disconnects = honest_disconnects.len();
    if disconnects > 0 {
        let ids: Vec<PeerId> = joiners.iter_mut().map(|a| net(a, |n| n.id())).collect();
        let host_id = net(&mut joiners[0], |n| n.host_id());
        for d in &honest_disconnects {
            let who = match ids.iter().position(|i| *i == d.peer) {
                Some(i) => format!("joiner {i}"),
                None if Some(d.peer) == host_id => "the host".to_string(),
                None => format!("{} (unknown)", d.peer),
            };
            println!("honest disconnect: {who}: {:?}", d.reason);
        }
    }
    println!(
        "\njoiners sent {sent} to the host; received from it: lost {lost}, duplicated {dup}; \
         honest disconnects: {disconnects}; \
         flooder rejoins: {flooder_rejoins}; host process ok: {ok}"
    );
    println!(
        "(the host's own lines, `HOST ...`, are above: what it received, its RSS, its budget drops)"
    );
    let host_id = net(&mut joiners[0], |n| n.host_id());
    for (i, app) in joiners.iter().enumerate() {
        let back = inbox::<PeerReconnected>(app);
        let of_host = back.iter().filter(|r| Some(r.peer) == host_id).count();
        let of_flooder = back.iter().filter(|r| r.peer == flooder_id).count();
        println!(
            "joiner {i}: reconnected {} times: the host {of_host}, the flooder {of_flooder}, \
             other joiners {}",
            back.len(),
            back.len() - of_host - of_flooder
        );
    }
    // `exit` skips destructors: the namespace goes first.
    drop(child);
    drop(veth);
    if lost + dup > 0 || disconnects > 0 || !ok {
        std::process::exit(1);
    }
}
