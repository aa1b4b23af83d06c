//! The bevy_replicon messaging backend (feature `replicon`): see [`RepliconPeerMessagePlugin`].

mod client;
mod server;

use crate::{
    PeerMessage,
    config::PeerMessageSettings,
    core::error::{PeerErrorKind, SendError, Violation},
    core::peer::PeerId,
    core::session::SessionConfig,
    core::wire::{self, Delivery},
    events::PeerStats,
    network::PeerNetwork,
    plugin::PeerMessageSet,
    registry::{PeerMessageAppExt, Received},
};
use bevy::prelude::*;
use bevy_replicon::{
    client::ClientSystems,
    prelude::*,
    server::ServerSystems,
    shared::backend::{ClientStats, channels::Channel},
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Makes this crate bevy_replicon's messaging backend: add it with replicon's
/// `RepliconPlugins` and [`PeerMessagePlugin`](crate::PeerMessagePlugin).
///
/// A [bevy_replicon](https://docs.rs/bevy_replicon) messaging backend (feature `replicon`):
/// the host is replicon's server, joiners are its clients, and a client whose link drops and
/// comes back within `resume_timeout` stays connected in replicon's eyes.
///
/// How it maps, following replicon's `shared::backend` contract:
/// - **States.** [`ServerState::Running`] while this app hosts a room; [`ClientState`] follows a
///   joiner: `Connecting` until the host is met, `Connected` from then on *including* while the
///   host is away and being reconnected to, `Disconnected` once the host is gone for good
///   (it left, timed out after `resume_timeout`, or kicked us).
/// - **Clients.** On the host, replicon's [`ConnectedClient`] goes on our own peer entities (the
///   ones with [`Peer`]), so `FromClient::client_id` is the peer's entity and `Peer` on it says
///   which [`PeerId`] it is. The entity lives from [`PeerConnected`](crate::PeerConnected) to
///   [`PeerDisconnected`](crate::PeerDisconnected): a reconnect is not a disconnect.
/// - **Channels.** Every replicon channel rides on our deliveries: `Ordered` and `Unordered`
///   on [`Delivery::Reliable`] (exactly once, in order, across reconnects), `Unreliable` on
///   [`Delivery::Unreliable`] (an unreliable message too large for one packet goes reliably:
///   a stronger guarantee, as replicon allows). What a client was sent while it was away
///   arrives when it is back; nothing is re-replicated from scratch.
/// - **Disconnects.** A [`DisconnectRequest`], or the game despawning a client entity, kicks
///   the peer ([`PeerMessage::kick`]).
/// - **Statistics.** [`ConnectedClientStats`] on the host's client entities and [`ClientStats`]
///   on a joiner, from [`PeerStats`]: round trip, packet loss, bytes per second each way.
/// - **Untrusted input.** A message on a channel the receiver does not have, unreliably on a
///   reliable channel, or to a joiner from anyone but the host, drops the sender with
///   [`Violation::BadReplicationMessage`](crate::Violation::BadReplicationMessage).
///
/// ```no_run
/// use bevy::{prelude::*, state::app::StatesPlugin};
/// use bevy_peer_message::prelude::*;
/// use bevy_peer_message::RepliconPeerMessagePlugin;
/// use bevy_replicon::prelude::*;
///
/// #[derive(Component, serde::Serialize, serde::Deserialize)]
/// struct Position(Vec2);
///
/// App::new()
///     .add_plugins((MinimalPlugins, StatesPlugin))
///     .add_plugins((RepliconPlugins, PeerMessagePlugin::default(), RepliconPeerMessagePlugin))
///     .replicate::<Position>()
///     .run();
/// // Then `host(room)` on the server, `join(room)` on the clients, as without replicon.
/// ```
///
/// Host migration ([`HostMigrated`]) is turned off: replicon's server world lives on the host,
/// so the room ends with it, as replicon's own backends do.
///
/// [`HostMigrated`]: crate::HostMigrated
/// [`Peer`]: crate::Peer
/// [`PeerId`]: crate::PeerId
/// [`PeerStats`]: crate::PeerStats
/// [`Delivery::Reliable`]: crate::Delivery::Reliable
/// [`Delivery::Unreliable`]: crate::Delivery::Unreliable
/// [`PeerMessage::kick`]: crate::PeerMessage::kick
/// [`ServerState::Running`]: bevy_replicon::shared::backend::ServerState::Running
/// [`ClientState`]: bevy_replicon::shared::backend::ClientState
/// [`ConnectedClient`]: bevy_replicon::shared::backend::connected_client::ConnectedClient
/// [`DisconnectRequest`]: bevy_replicon::shared::backend::DisconnectRequest
/// [`ConnectedClientStats`]: bevy_replicon::shared::backend::ConnectedClientStats
/// [`ClientStats`]: bevy_replicon::shared::backend::ClientStats
#[derive(Debug, Default, Clone, Copy)]
pub struct RepliconPeerMessagePlugin;

impl Plugin for RepliconPeerMessagePlugin {
    fn build(&self, app: &mut App) {
        app.add_peer_message_named::<ReliablePacket>(
            "bevy_peer_message::replicon::reliable",
            Delivery::Reliable,
        )
        .add_peer_message_named::<UnreliablePacket>(
            "bevy_peer_message::replicon::unreliable",
            Delivery::Unreliable,
        )
        .configure_sets(
            PreUpdate,
            (
                ServerSystems::ReceivePackets.after(PeerMessageSet::Receive),
                ClientSystems::ReceivePackets.after(PeerMessageSet::Receive),
            ),
        )
        .configure_sets(
            PostUpdate,
            (
                ServerSystems::SendPackets.before(PeerMessageSet::Send),
                ClientSystems::SendPackets.before(PeerMessageSet::Send),
            ),
        );
        server::build(app);
        client::build(app);
    }

    fn finish(&self, app: &mut App) {
        assert!(
            app.world().contains_resource::<RepliconChannels>(),
            "RepliconPeerMessagePlugin needs bevy_replicon's RepliconPlugins (with its server \
             and client plugins): add them too"
        );
        let channels = app.world().resource::<RepliconChannels>();
        let most = channels
            .server_channels()
            .len()
            .max(channels.client_channels().len());
        assert!(
            most <= usize::from(u16::MAX),
            "bevy_replicon has {most} channels; RepliconPeerMessagePlugin carries at most 65535"
        );
        // Replicon's server world lives on the host: the room ends with it (joiners time out
        // and join again) rather than moving to a joiner that has no server world.
        if let Some(mut settings) = app.world_mut().get_resource_mut::<PeerMessageSettings>() {
            settings.resume.host_grace = None;
        }
    }
}

/// One replicon message on the wire: its channel, then its bytes (copied whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Packet {
    channel: u16,
    payload: Bytes,
}

/// A [`Packet`] on a reliable channel (or too large for one unreliable packet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReliablePacket(Packet);

/// A [`Packet`] on replicon's unreliable channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UnreliablePacket(Packet);

/// Bytes a [`Packet`] adds to its payload, at most: the channel and the payload's length
/// (bincode varints, 3 bytes each up to 65535).
const PACKET_OVERHEAD: usize = 3 + 3;

/// The largest replicon message sent as one unreliable packet (replicon's
/// `ConnectedClient::max_size`): one of our packets, less its record header and the channel
/// and length in front of the payload.
fn max_unreliable_message(session: &SessionConfig) -> usize {
    session
        .max_packet
        .min(wire::MAX_TRANSPORT_PACKET)
        .saturating_sub(wire::UNRELIABLE_HEADER + PACKET_OVERHEAD)
}

/// Sends one replicon message to `peer` on `channel`, with the delivery the channel needs.
/// A peer that is gone is skipped (replicon learns it from the entity's despawn). A refused
/// reliable message (the peer's resend buffer full, a message over `max_message_size`) would
/// leave replicon's two sides out of step for good, so the link ends: the host kicks the client,
/// a client drops the host; both see a [`PeerError`](crate::PeerError). A refused unreliable one
/// is only reported.
fn send(
    net: &mut PeerMessage,
    peer: PeerId,
    kind: Channel,
    channel: usize,
    payload: Bytes,
    max_unreliable: usize,
) {
    let Ok(channel) = u16::try_from(channel) else {
        return; // `finish` checked the channel count.
    };
    let packet = Packet { channel, payload };
    let reliable = kind != Channel::Unreliable || packet.payload.len() > max_unreliable;
    let result = if reliable {
        net.try_send(peer, &ReliablePacket(packet))
    } else {
        net.try_send(peer, &UnreliablePacket(packet))
    };
    match result {
        Ok(()) | Err(SendError::UnknownPeer(_)) => {}
        Err(e) if reliable => {
            warn!("replicon: a reliable message to {peer} was refused ({e}); ending the link");
            net.end_link(peer, e);
        }
        Err(e) => net.report(Some(peer), e),
    }
}

/// This frame's received replicon messages, reliable ones first: sender, message, whether it
/// came reliably.
fn received<'a>(
    reliable: &'a mut MessageReader<Received<ReliablePacket>>,
    unreliable: &'a mut MessageReader<Received<UnreliablePacket>>,
) -> impl Iterator<Item = (PeerId, &'a Packet, bool)> + 'a {
    reliable
        .read()
        .map(|r| (r.from, &r.message.0, true))
        .chain(unreliable.read().map(|r| (r.from, &r.message.0, false)))
}

/// Checks a received message against the receiving side's channels: a channel that exists,
/// with at least the delivery it needs. `None`: drop the sender.
fn check(channels: &[Channel], packet: &Packet, reliable: bool) -> Option<usize> {
    let channel = usize::from(packet.channel);
    match channels.get(channel)? {
        Channel::Unreliable => Some(channel),
        Channel::Ordered | Channel::Unordered if reliable => Some(channel),
        _ => None,
    }
}

/// Drops a peer that sent a replicon message it had no business sending.
fn refuse(net: &mut PeerNetwork, peer: PeerId) {
    warn!("dropping peer {peer}: {}", Violation::BadReplicationMessage);
    net.queue_drop(
        peer,
        PeerErrorKind::Violation(Violation::BadReplicationMessage),
    );
}

/// Replicon's statistics from ours: round trip, loss, and bytes per second measured over the
/// last second or so.
#[derive(Component, Debug, Default, Clone, Copy)]
struct RateMeter {
    at: Duration,
    bytes_in: u64,
    bytes_out: u64,
    sent_bps: f64,
    received_bps: f64,
}

impl RateMeter {
    fn update(&mut self, now: Duration, stats: &PeerStats, out: &mut ClientStats) {
        let elapsed = now.saturating_sub(self.at);
        if self.at.is_zero() || elapsed >= Duration::from_secs(1) {
            if !self.at.is_zero() {
                let secs = elapsed.as_secs_f64();
                self.sent_bps = stats.bytes_out.saturating_sub(self.bytes_out) as f64 / secs;
                self.received_bps = stats.bytes_in.saturating_sub(self.bytes_in) as f64 / secs;
            }
            self.at = now.max(Duration::from_nanos(1));
            self.bytes_in = stats.bytes_in;
            self.bytes_out = stats.bytes_out;
        }
        *out = ClientStats {
            rtt: stats.rtt.map_or(0.0, |rtt| rtt.as_secs_f64()),
            // Replicon counts in percent.
            packet_loss: 100.0 * stats.loss.unwrap_or(0.0),
            sent_bps: self.sent_bps,
            received_bps: self.received_bps,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(channel: u16) -> Packet {
        Packet {
            channel,
            payload: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn received_channels_are_checked_against_the_receivers_channels() {
        let channels = [Channel::Ordered, Channel::Unreliable, Channel::Unordered];
        assert_eq!(check(&channels, &packet(0), true), Some(0));
        assert_eq!(check(&channels, &packet(0), false), None, "weaker delivery");
        assert_eq!(check(&channels, &packet(1), false), Some(1));
        assert_eq!(
            check(&channels, &packet(1), true),
            Some(1),
            "stronger is fine"
        );
        assert_eq!(check(&channels, &packet(2), false), None);
        assert_eq!(check(&channels, &packet(3), true), None, "no such channel");
        assert_eq!(check(&channels, &packet(u16::MAX), true), None);
    }

    #[test]
    fn a_packet_costs_its_payload_and_a_few_bytes() {
        for len in [0, 1, 250, 251, 1185, 65_535, 70_000] {
            let packet = Packet {
                channel: u16::MAX,
                payload: Bytes::from(vec![7; len]),
            };
            let mut out = Vec::new();
            crate::core::codec::encode_into(&packet, &mut out).unwrap();
            let extra = out.len() - len;
            assert!(extra <= PACKET_OVERHEAD + 2, "{len}: {extra}");
            if len <= 65_535 {
                assert!(extra <= PACKET_OVERHEAD, "{len}: {extra}");
            }
            let back: Packet = crate::core::codec::decode_bounded(&out, 1 << 20).unwrap();
            assert_eq!(back, packet);
        }
    }
}
