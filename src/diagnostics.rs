//! Bevy diagnostics for the room: round trip, jitter, packet loss, traffic, messages, resends,
//! peers, reconnects, and round trip and loss per peer. They show with Bevy's
//! `LogDiagnosticsPlugin` and in any diagnostics overlay.

use crate::{
    core::peer::PeerId,
    events::{Peer, PeerReconnected, PeerStats},
};
use bevy::{
    diagnostic::{Diagnostic, DiagnosticPath, Diagnostics, DiagnosticsStore, RegisterDiagnostic},
    platform::collections::HashMap,
    prelude::*,
};

/// Registers the room's diagnostics with `bevy_diagnostic` and measures them every frame:
/// the mean round trip, jitter and packet loss over the connected peers, bytes, packets and
/// messages per second each way, reliable records resent per second, the number of peers and
/// of reconnects so far; and for each peer its round trip and loss
/// ([`peer_path`](Self::peer_path)).
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
    /// Mean packet loss toward the peers that have a measurement (`Stats::loss`), in percent.
    pub const LOSS: DiagnosticPath = DiagnosticPath::const_new("peer_message/loss");
    /// Messages received per second (whole messages, however many packets each took).
    pub const MESSAGES_IN: DiagnosticPath = DiagnosticPath::const_new("peer_message/messages_in");
    /// Messages sent per second.
    pub const MESSAGES_OUT: DiagnosticPath = DiagnosticPath::const_new("peer_message/messages_out");

    /// Every room-wide path this plugin measures, with its unit.
    pub const ALL: [(DiagnosticPath, &'static str); 12] = [
        (Self::PEERS, ""),
        (Self::RTT, " ms"),
        (Self::JITTER, " ms"),
        (Self::LOSS, " %"),
        (Self::MESSAGES_IN, "/s"),
        (Self::MESSAGES_OUT, "/s"),
        (Self::BYTES_IN, " B/s"),
        (Self::BYTES_OUT, " B/s"),
        (Self::PACKETS_IN, "/s"),
        (Self::PACKETS_OUT, "/s"),
        (Self::RESENT, "/s"),
        (Self::RECONNECTS, ""),
    ];
}

impl PeerMessageDiagnosticsPlugin {
    /// What each peer gets: its round trip in milliseconds (`"rtt"`) and its packet loss in
    /// percent (`"loss"`).
    pub const PER_PEER: [(&'static str, &'static str); 2] = [("rtt", " ms"), ("loss", " %")];

    /// At most this many peers get their own diagnostics over the app's life (they are never
    /// unregistered: a peer that left keeps its entry, with its history cleared).
    pub const MAX_PEER_DIAGNOSTICS: usize = 256;

    /// The path of one peer's diagnostic: `peer_message/peer/<id>/<what>` with `what` one of
    /// [`PER_PEER`](Self::PER_PEER) and `id` as [`PeerId`] displays (8 hex digits).
    ///
    /// ```
    /// # use bevy_peer_message::prelude::*;
    /// let path = PeerMessageDiagnosticsPlugin::peer_path(PeerId(0xabcdef12 << 96), "rtt");
    /// assert_eq!(path.as_str(), "peer_message/peer/abcdef12/rtt");
    /// ```
    pub fn peer_path(peer: PeerId, what: &str) -> DiagnosticPath {
        DiagnosticPath::new(format!("peer_message/peer/{peer}/{what}"))
    }
}

impl Plugin for PeerMessageDiagnosticsPlugin {
    fn build(&self, app: &mut App) {
        for (path, suffix) in Self::ALL {
            app.register_diagnostic(Diagnostic::new(path).with_suffix(suffix));
        }
        app.add_systems(Update, (measure, measure_peers));
    }
}

/// Per peer: round trip and loss, registered the first time a peer is seen; a peer gone has
/// its history cleared (so `LogDiagnosticsPlugin` stops showing it).
fn measure_peers(
    mut store: ResMut<DiagnosticsStore>,
    peers: Query<(&Peer, &PeerStats)>,
    mut known: Local<HashMap<PeerId, [DiagnosticPath; 2]>>,
) {
    for (peer, stats) in &peers {
        if !known.contains_key(&peer.id) {
            if known.len() >= PeerMessageDiagnosticsPlugin::MAX_PEER_DIAGNOSTICS {
                continue;
            }
            let [(rtt, ms), (loss, percent)] = PeerMessageDiagnosticsPlugin::PER_PEER;
            let paths = [
                PeerMessageDiagnosticsPlugin::peer_path(peer.id, rtt),
                PeerMessageDiagnosticsPlugin::peer_path(peer.id, loss),
            ];
            store.add(Diagnostic::new(paths[0].clone()).with_suffix(ms));
            store.add(Diagnostic::new(paths[1].clone()).with_suffix(percent));
            known.insert(peer.id, paths);
        }
        let Some([rtt, loss]) = known.get(&peer.id) else {
            continue;
        };
        let values = [
            stats.rtt.map(|r| r.as_secs_f64() * 1e3),
            stats.loss.map(|l| l * 100.0),
        ];
        for (path, value) in [rtt, loss].into_iter().zip(values) {
            if let (Some(d), Some(v)) = (store.get_mut(path), value) {
                d.add_measurement(bevy::diagnostic::DiagnosticMeasurement {
                    time: bevy::platform::time::Instant::now(),
                    value: v,
                });
            }
        }
    }
    // Peers gone: their entries stay (a store cannot forget), empty.
    for (id, paths) in known.iter() {
        if !peers.iter().any(|(p, _)| p.id == *id) {
            for path in paths {
                if let Some(d) = store.get_mut(path).filter(|d| d.history_len() > 0) {
                    d.clear_history();
                }
            }
        }
    }
}

/// The totals seen last frame, per peer, and the reconnects so far.
#[derive(Default)]
struct Seen {
    totals: HashMap<PeerId, [u64; 7]>,
    reconnects: u64,
}

fn totals(stats: &PeerStats) -> [u64; 7] {
    [
        stats.bytes_in,
        stats.bytes_out,
        stats.packets_in,
        stats.packets_out,
        stats.resent,
        stats.messages_in,
        stats.messages_out,
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
    let mut delta = [0u64; 7];
    let (mut loss_sum, mut lossy) = (0.0, 0u32);
    for (peer, stats) in &peers {
        if let Some(rtt) = stats.rtt {
            rtt_sum += rtt.as_secs_f64() * 1e3;
            jitter_sum += stats.jitter.as_secs_f64() * 1e3;
            sampled += 1;
        }
        if let Some(loss) = stats.loss {
            loss_sum += loss * 100.0;
            lossy += 1;
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
    if lossy > 0 {
        let loss = loss_sum / f64::from(lossy);
        diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::LOSS, || loss);
    }
    let seconds = time.delta_secs_f64();
    if seconds > 0.0 {
        let rate = |i: usize| delta[i] as f64 / seconds;
        diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::BYTES_IN, || rate(0));
        diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::BYTES_OUT, || rate(1));
        diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::PACKETS_IN, || rate(2));
        diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::PACKETS_OUT, || rate(3));
        diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::RESENT, || rate(4));
        diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::MESSAGES_IN, || rate(5));
        diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::MESSAGES_OUT, || rate(6));
    }
    let reconnects = seen.reconnects as f64;
    diagnostics.add_measurement(&PeerMessageDiagnosticsPlugin::RECONNECTS, || reconnects);
}
