//! Bevy diagnostics for the room: round trip, jitter, traffic, resends, peers, reconnects. They
//! show with Bevy's `LogDiagnosticsPlugin` and in any diagnostics overlay.

use crate::events::{Peer, PeerReconnected, PeerStats};
use bevy::{
    diagnostic::{Diagnostic, DiagnosticPath, Diagnostics, RegisterDiagnostic},
    platform::collections::HashMap,
    prelude::*,
};

/// Registers the room's diagnostics with `bevy_diagnostic` and measures them every frame:
/// the mean round trip and jitter over the connected peers, bytes and packets per second each
/// way, reliable records resent per second, the number of peers and of reconnects so far.
///
/// ```no_run
/// # use bevy::prelude::*;
/// # use bevy_peer_message::prelude::*;
/// use bevy::diagnostic::LogDiagnosticsPlugin;
///
/// App::new()
///     .add_plugins((MinimalPlugins, bevy::log::LogPlugin::default()))
///     .add_plugins((PeerMessagePlugin::default(), PeerMessageDiagnosticsPlugin))
///     .add_plugins(LogDiagnosticsPlugin::default())
///     .run();
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct PeerMessageDiagnosticsPlugin;

impl PeerMessageDiagnosticsPlugin {
    /// Peers connected (away ones included).
    pub const PEERS: DiagnosticPath = DiagnosticPath::const_new("peer_message/peers");
    /// Mean smoothed round-trip time over the peers that have one, in milliseconds.
    pub const RTT: DiagnosticPath = DiagnosticPath::const_new("peer_message/rtt");
    /// Mean round-trip jitter, in milliseconds.
    pub const JITTER: DiagnosticPath = DiagnosticPath::const_new("peer_message/jitter");
    /// Bytes received per second, from every peer.
    pub const BYTES_IN: DiagnosticPath = DiagnosticPath::const_new("peer_message/bytes_in");
    /// Bytes sent per second, to every peer.
    pub const BYTES_OUT: DiagnosticPath = DiagnosticPath::const_new("peer_message/bytes_out");
    /// Packets received per second.
    pub const PACKETS_IN: DiagnosticPath = DiagnosticPath::const_new("peer_message/packets_in");
    /// Packets sent per second.
    pub const PACKETS_OUT: DiagnosticPath = DiagnosticPath::const_new("peer_message/packets_out");
    /// Reliable records sent again per second (after a timeout or a reconnect): what the
    /// network lost, as far as the reliable stream saw.
    pub const RESENT: DiagnosticPath = DiagnosticPath::const_new("peer_message/resent");
    /// Reconnects (a peer back after being away) since the app started.
    pub const RECONNECTS: DiagnosticPath = DiagnosticPath::const_new("peer_message/reconnects");

    /// Every path this plugin measures, with its unit.
    pub const ALL: [(DiagnosticPath, &'static str); 9] = [
        (Self::PEERS, ""),
        (Self::RTT, " ms"),
        (Self::JITTER, " ms"),
        (Self::BYTES_IN, " B/s"),
        (Self::BYTES_OUT, " B/s"),
        (Self::PACKETS_IN, "/s"),
        (Self::PACKETS_OUT, "/s"),
        (Self::RESENT, "/s"),
        (Self::RECONNECTS, ""),
    ];
}

impl Plugin for PeerMessageDiagnosticsPlugin {
    fn build(&self, app: &mut App) {
        for (path, suffix) in Self::ALL {
            app.register_diagnostic(Diagnostic::new(path).with_suffix(suffix));
        }
        app.add_systems(Update, measure);
    }
}

/// The totals seen last frame, per peer, and the reconnects so far.
#[derive(Default)]
struct Seen {
    totals: HashMap<crate::PeerId, [u64; 5]>,
    reconnects: u64,
}

fn totals(stats: &PeerStats) -> [u64; 5] {
    [
        stats.bytes_in,
        stats.bytes_out,
        stats.packets_in,
        stats.packets_out,
        stats.resent,
    ]
}

fn measure(
    mut diagnostics: Diagnostics,
    peers: Query<(&Peer, &PeerStats)>,
    mut reconnected: MessageReader<PeerReconnected>,
    time: Res<Time>,
    mut seen: Local<Seen>,
) {
    seen.reconnects += reconnected.read().count() as u64;
    // Sums, not lists, and the per-peer totals updated in place: nothing allocated per frame
    // once every peer has been seen.
    let (mut rtt_sum, mut jitter_sum, mut sampled) = (0.0, 0.0, 0u32);
    let mut delta = [0u64; 5];
    for (peer, stats) in &peers {
        if let Some(rtt) = stats.rtt {
            rtt_sum += rtt.as_secs_f64() * 1e3;
            jitter_sum += stats.jitter.as_secs_f64() * 1e3;
            sampled += 1;
        }
        let current = totals(stats);
        // A peer new this frame counts from here on.
        if let Some(before) = seen.totals.insert(peer.id, current) {
            for (d, (c, b)) in delta.iter_mut().zip(current.iter().zip(before)) {
                *d += c.saturating_sub(b);
            }
        }
    }
    if seen.totals.len() > peers.iter().count() {
        seen.totals
            .retain(|id, _| peers.iter().any(|(p, _)| p.id == *id));
    }
    let mean = |sum: f64| (sampled > 0).then(|| sum / f64::from(sampled));
    let peers_count = peers.iter().count() as f64;
    diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::PEERS, || peers_count);
    if let Some(rtt) = mean(rtt_sum) {
        diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::RTT, || rtt);
    }
    if let Some(jitter) = mean(jitter_sum) {
        diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::JITTER, || jitter);
    }
    let seconds = time.delta_secs_f64();
    if seconds > 0.0 {
        let rate = |i: usize| delta[i] as f64 / seconds;
        diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::BYTES_IN, || rate(0));
        diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::BYTES_OUT, || rate(1));
        diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::PACKETS_IN, || rate(2));
        diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::PACKETS_OUT, || rate(3));
        diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::RESENT, || rate(4));
    }
    let reconnects = seen.reconnects as f64;
    diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::RECONNECTS, || reconnects);
}
