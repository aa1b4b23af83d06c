//! Network paths: one host and one joiner, each in a home network of the internet in a box
//! (`tests/nat/internet.rs`), connected three ways in the same run:
//!
//! - **direct**: no NAT, the homes route to each other (host candidates);
//! - **server-reflexive**: both behind ordinary NATs, STUN only (hole punching);
//! - **relayed**: both behind symmetric NATs, through coturn (TURN, short-lived credentials).
//!
//! For each: time from `join` to connected, the round trip of 1000 reliable pings 10 ms apart
//! (p50, p99), and reliable throughput with 1 KiB and 16 KiB messages. Prints a Markdown table.
//!
//! ```text
//! cargo bench --bench paths          # 3 runs of each
//! cargo bench --bench paths -- 5     # 5 runs of each
//! ```
//!
//! Needs root (namespaces, nftables, coturn: `apt-get install nftables coturn conntrack`);
//! Cargo's runner (`tests/netns-run`) puts this binary in a private namespace first.

#[allow(dead_code)]
#[path = "../tests/nat/box_peer.rs"]
mod box_peer;
#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/nat/internet.rs"]
mod internet;
#[allow(dead_code)]
#[path = "../tests/webrtc/netns.rs"]
mod netns;

use box_peer::{Script, Spawner, run_pair};
use internet::{Internet, Nat};
use std::time::Duration;

const SIGNALING_FLAG: &str = "--box-signaling";
const HOST_FLAG: &str = "--box-host";
const JOINER_FLAG: &str = "--box-joiner";
const BULK: &str = "1024x4000,16384x500";

const HELPERS: Spawner = Spawner {
    signaling: |ns, env| netns::Child::spawn_self(ns, &[SIGNALING_FLAG], env),
    host: |ns, env| netns::Child::spawn_self(ns, &[HOST_FLAG], env),
    joiner: |ns, env| netns::Child::spawn_self(ns, &[JOINER_FLAG], env),
};

/// One run's figures, from the joiner's lines.
#[derive(Debug, Default)]
struct Figures {
    path: String,
    connect_ms: f64,
    p50: f64,
    p99: f64,
    kib_1: f64,
    kib_16: f64,
}

fn number_after(line: &str, word: &str) -> Option<f64> {
    let rest = &line[line.find(word)? + word.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

fn figures(lines: &[String]) -> Option<Figures> {
    let mut f = Figures::default();
    for line in lines {
        if line.contains("CONNECTED after") {
            f.connect_ms = number_after(line, "after")?;
        } else if let Some(path) = line.strip_prefix("PATH ") {
            f.path = path.to_string();
        } else if line.starts_with("RTT ") {
            f.p50 = number_after(line, "p50")?;
            f.p99 = number_after(line, "p99")?;
        } else if line.starts_with("BULK 1024 B") {
            f.kib_1 = number_after(line, ":")?;
        } else if line.starts_with("BULK 16384 B") {
            f.kib_16 = number_after(line, ":")?;
        }
    }
    (f.p50 > 0.0).then_some(f)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == SIGNALING_FLAG) {
        box_peer::signaling_main();
        return;
    }
    if args.iter().any(|a| a == HOST_FLAG) {
        box_peer::host_main();
        return;
    }
    if args.iter().any(|a| a == JOINER_FLAG) {
        box_peer::joiner_main();
        return;
    }
    let runs: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(3);
    if !netns::can_create_namespaces() || !internet::tools_present() {
        std::process::exit(2);
    }
    let configs = [
        ("direct", Nat::None, false),
        ("server-reflexive", Nat::Cone, false),
        ("relayed", Nat::Symmetric, true),
    ];
    let mut rows = Vec::new();
    // Interleaved (direct, reflexive, relayed, direct, ...): the machine's load drifts.
    let mut all: Vec<Vec<Figures>> = configs.iter().map(|_| Vec::new()).collect();
    for run in 0..runs {
        for (i, (name, nat, turn)) in configs.iter().enumerate() {
            let mut internet = Internet::create(&[*nat, *nat]);
            internet.start_turn();
            internet.start_signaling(HELPERS.signaling);
            let script = Script {
                turn: *turn,
                pings: 1000,
                bulk: BULK,
                join_timeout: Duration::from_secs(20),
            };
            let outcome = run_pair(&internet, &HELPERS, script, |_| {});
            match figures(&outcome.joiner.lines()) {
                Some(f) => {
                    eprintln!("run {run} {name}: {f:?}");
                    all[i].push(f);
                }
                None => eprintln!("run {run} {name}: no figures"),
            }
        }
    }
    let direct_p50 = median(all[0].iter().map(|f| f.p50).collect());
    for ((name, _, _), runs) in configs.iter().zip(&all) {
        let paths: Vec<&str> = runs.iter().map(|f| f.path.as_str()).collect();
        let p50 = median(runs.iter().map(|f| f.p50).collect());
        rows.push(format!(
            "| {name} | {} | {} | {:.0} | {p50:.2} | {:+.2} | {:.2} | {:.1} | {:.1} |",
            paths.first().copied().unwrap_or("-"),
            runs.len(),
            median(runs.iter().map(|f| f.connect_ms).collect()),
            p50 - direct_p50,
            median(runs.iter().map(|f| f.p99).collect()),
            median(runs.iter().map(|f| f.kib_1).collect()),
            median(runs.iter().map(|f| f.kib_16).collect()),
        ));
    }
    println!();
    println!(
        "| path | `PeerStats::path` | runs | connect (ms) | RTT p50 (ms) | p50 − direct p50 (ms) | RTT p99 (ms) | 1 KiB msgs (MB/s) | 16 KiB msgs (MB/s) |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|--:|");
    for row in rows {
        println!("{row}");
    }
    println!("\n(medians over runs; each run: 1000 pings 10 ms apart, then {BULK} reliable)");
}
