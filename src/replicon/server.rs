//! The host as replicon's server: its joiners' peer entities are replicon's clients.

use super::{
    RateMeter, ReliablePacket, UnreliablePacket, check, max_unreliable_message, received, refuse,
};
use crate::{
    PeerMessage, config::PeerMessageSettings, core::peer::Role, events::Peer, events::PeerStats,
    network::PeerNetwork, plugin::PeerMessageSet, registry::Received,
};
use bevy::prelude::*;
use bevy_replicon::{
    prelude::*,
    server::ServerSystems,
    shared::backend::{DisconnectRequest, connected_client::ConnectedClient},
};

pub(super) fn build(app: &mut App) {
    app.add_observer(kick_despawned_client)
        .add_systems(
            PreUpdate,
            (update_state, attach_clients, receive, update_stats)
                .chain()
                .in_set(ServerSystems::ReceivePackets),
        )
        .add_systems(
            PostUpdate,
            (
                send.in_set(ServerSystems::SendPackets)
                    .run_if(in_state(ServerState::Running)),
                // After this frame's sends left, so the client gets them before the kick.
                disconnect_by_request.after(PeerMessageSet::Send),
            ),
        );
}

fn hosting(net: &PeerMessage) -> bool {
    net.role() == Some(Role::Host)
}

/// `Running` while this app hosts a room.
fn update_state(
    net: PeerMessage,
    state: Res<State<ServerState>>,
    mut next: ResMut<NextState<ServerState>>,
) {
    let want = if hosting(&net) {
        ServerState::Running
    } else {
        ServerState::Stopped
    };
    if *state.get() != want {
        next.set(want);
    }
}

/// Makes each joiner's peer entity a replicon client, as soon as it is spawned.
fn attach_clients(
    mut commands: Commands,
    net: PeerMessage,
    settings: Res<PeerMessageSettings>,
    joiners: Query<(Entity, &Peer), Without<ConnectedClient>>,
) {
    if !hosting(&net) {
        return;
    }
    let max_size = max_unreliable_message(&settings.session);
    for (entity, peer) in &joiners {
        if peer.role == Role::Joiner {
            debug!("peer {} is replicon client {entity}", peer.id);
            commands
                .entity(entity)
                .insert((ConnectedClient { max_size }, RateMeter::default()));
        }
    }
}

fn receive(
    mut reliable: MessageReader<Received<ReliablePacket>>,
    mut unreliable: MessageReader<Received<UnreliablePacket>>,
    channels: Res<RepliconChannels>,
    mut messages: ResMut<ServerMessages>,
    mut net: ResMut<PeerNetwork>,
    clients: Query<(), With<ConnectedClient>>,
) {
    if net.role() != Some(Role::Host) {
        // A joiner's: the client side takes them.
        reliable.clear();
        unreliable.clear();
        return;
    }
    for (from, packet, is_reliable) in received(&mut reliable, &mut unreliable) {
        let Some(entity) = net.entity(from).filter(|e| clients.contains(*e)) else {
            continue; // Dropped earlier in this frame.
        };
        match check(channels.client_channels(), packet, is_reliable) {
            Some(channel) => messages.insert_received(entity, channel, packet.payload.clone()),
            None => refuse(&mut net, from),
        }
    }
}

fn update_stats(
    time: Res<Time>,
    mut clients: Query<(&PeerStats, &mut ConnectedClientStats, &mut RateMeter)>,
) {
    let now = time.elapsed();
    for (stats, mut out, mut meter) in &mut clients {
        meter.update(now, stats, &mut out);
    }
}

fn send(
    mut messages: ResMut<ServerMessages>,
    channels: Res<RepliconChannels>,
    settings: Res<PeerMessageSettings>,
    peers: Query<&Peer>,
    mut net: PeerMessage,
) {
    let max_unreliable = max_unreliable_message(&settings.session);
    for (client, channel, payload) in messages.drain_sent() {
        let (Ok(peer), Some(&kind)) = (peers.get(client), channels.server_channels().get(channel))
        else {
            continue;
        };
        super::send(&mut net, peer.id, kind, channel, payload, max_unreliable);
    }
}

fn disconnect_by_request(
    mut requests: MessageReader<DisconnectRequest>,
    peers: Query<&Peer>,
    mut net: PeerMessage,
) {
    for request in requests.read() {
        if let Ok(peer) = peers.get(request.client) {
            debug!("kicking peer {} at replicon's request", peer.id);
            net.kick(peer.id);
        }
    }
}

/// The game despawned a client entity (or took its `ConnectedClient`): the peer is kicked.
/// Not when this crate despawns it for a peer already gone: the network is busy then
/// (`None`) and the peer no longer in it.
fn kick_despawned_client(
    removed: On<Remove<ConnectedClient>>,
    peers: Query<&Peer>,
    net: Option<ResMut<PeerNetwork>>,
) {
    let (Some(mut net), Ok(peer)) = (net, peers.get(removed.entity)) else {
        return;
    };
    if net.role() == Some(Role::Host) && net.entity(peer.id) == Some(removed.entity) {
        debug!(
            "client {} despawned: kicking peer {}",
            removed.entity, peer.id
        );
        net.queue_kick(peer.id);
    }
}
