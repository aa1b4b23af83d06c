//! Reconnect figures over real link cuts: a host in a second network namespace streams numbered
//! reliable messages (and unreliable ones) to a joiner here while the veth between them is cut
//! and restored. Prints, for each cut: time to notice the loss, time from link-up to
//! `PeerReconnected`, the reported downtime, the unreliable stream after it, and the reliable
//! messages lost and duplicated (both must be 0).
//!
//! ```text
//! cargo bench --bench link_cut                 # cuts of 3 s and 40 s
//! cargo bench --bench link_cut -- 3 8 20 40    # other cut lengths, in seconds
//! ```
//!
//! Needs root (namespaces and a veth pair); Cargo's runner (`tests/netns-run`) puts it in a
//! private namespace of its own first.

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/webrtc/harness.rs"]
mod harness;

#[allow(dead_code)]
#[path = "../tests/webrtc/netns.rs"]
mod netns;

#[allow(dead_code)]
#[path = "../tests/webrtc/cuts.rs"]
mod cuts;

use std::time::Duration;

const HOST_FLAG: &str = "--streaming-host";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == HOST_FLAG) {
        cuts::streaming_host();
        return;
    }
    if !netns::can_create_namespaces() {
        std::process::exit(2);
    }
    let mut lengths: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if lengths.is_empty() {
        lengths = vec![3, 40];
    }
    let cuts: Vec<Duration> = lengths.iter().map(|s| Duration::from_secs(*s)).collect();
    // Enough messages at 50/s to stream through every cut and past the last one.
    let seconds: u64 = 10 + lengths.iter().map(|s| s + 6).sum::<u64>();
    let count = (seconds * 50) as u32;
    let veth = netns::Veth::create();
    eprintln!("cuts {lengths:?} s; {count} numbered reliable messages at 50/s");
    let run = cuts::CutRun::start(&veth, HOST_FLAG, count);
    let outcome = run.cut_and_finish(&veth, &cuts);
    cuts::print_table(&outcome);
    eprintln!(
        "\nin order: {}, host saw all acknowledged: {}, joiner disconnects: {}",
        outcome.in_order, outcome.host_all_acked, outcome.joiner_disconnects
    );
    if outcome.lost + outcome.duplicated > 0 || !outcome.in_order {
        std::process::exit(1);
    }
}
