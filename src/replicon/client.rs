//! A joiner as replicon's client, the room's host its server.

use super::{
    RateMeter, ReliablePacket, UnreliablePacket, check, max_unreliable_message, received, refuse,
};
use crate::{
    PeerMessage, config::PeerMessageSettings, core::peer::Role, events::Peer, events::PeerStats,
    network::PeerNetwork, registry::Received,
};
use bevy::prelude::*;
use bevy_replicon::{client::ClientSystems, prelude::*, shared::backend::ClientStats};

pub(super) fn build(app: &mut App) {
    app.add_systems(
        PreUpdate,
        (update_state, receive, update_stats)
            .chain()
            .in_set(ClientSystems::ReceivePackets),
    )
    .add_systems(
        PostUpdate,
        send.in_set(ClientSystems::SendPackets)
            .run_if(in_state(ClientState::Connected)),
    );
}

/// A joiner is `Connecting` until it meets the host, then `Connected` for as long as that
/// host's session lives: while the host is away and being reconnected to as well. A host gone
/// for good, or replaced by another session (a restarted host), makes it `Disconnected` for a
/// frame at least (replicon resets its client there), then `Connecting` again if it rejoins
/// (see [`PeerMessagePlugin::rejoin`](crate::PeerMessagePlugin::rejoin)) or meets the new host.
fn update_state(
    net: PeerMessage,
    state: Res<State<ClientState>>,
    mut next: ResMut<NextState<ClientState>>,
    peers: Query<(Entity, &Peer)>,
    mut session: Local<Option<Entity>>,
) {
    let now = *state.get();
    // A host session is its peer entity: a new session, a new entity.
    let host = peers
        .iter()
        .find(|(_, p)| p.role == Role::Host)
        .map(|(e, _)| e)
        .filter(|_| net.role() == Some(Role::Joiner));
    let want = match (net.role(), host) {
        (Some(Role::Joiner), Some(e)) => match now {
            ClientState::Connected if *session != Some(e) => ClientState::Disconnected,
            // Through `Connecting` even when the host is met at once (as on the in-memory
            // network), as replicon's own backends do.
            ClientState::Disconnected => ClientState::Connecting,
            _ => {
                *session = Some(e);
                ClientState::Connected
            }
        },
        (Some(Role::Joiner), None) if now != ClientState::Connected => ClientState::Connecting,
        _ => ClientState::Disconnected,
    };
    if now != want {
        next.set(want);
    }
}

fn receive(
    mut reliable: MessageReader<Received<ReliablePacket>>,
    mut unreliable: MessageReader<Received<UnreliablePacket>>,
    channels: Res<RepliconChannels>,
    mut messages: ResMut<ClientMessages>,
    mut net: ResMut<PeerNetwork>,
) {
    // Not a joiner with a host: a host's messages are the server side's; a host that just went
    // sent its last ones before it went, and they are of no use now.
    let Some(host) = net.host().filter(|_| net.role() == Some(Role::Joiner)) else {
        reliable.clear();
        unreliable.clear();
        return;
    };
    for (from, packet, is_reliable) in received(&mut reliable, &mut unreliable) {
        // Replication comes from the host only, on a channel we have.
        match check(channels.server_channels(), packet, is_reliable).filter(|_| from == host) {
            Some(channel) => messages.insert_received(channel, packet.payload.clone()),
            None => refuse(&mut net, from),
        }
    }
}

fn update_stats(
    time: Res<Time>,
    peers: Query<(&Peer, &PeerStats)>,
    mut meter: Local<RateMeter>,
    mut out: ResMut<ClientStats>,
) {
    if let Some((_, stats)) = peers.iter().find(|(p, _)| p.role == Role::Host) {
        meter.update(time.elapsed(), stats, &mut out);
    }
}

fn send(
    mut messages: ResMut<ClientMessages>,
    channels: Res<RepliconChannels>,
    settings: Res<PeerMessageSettings>,
    mut net: PeerMessage,
) {
    let max_unreliable = max_unreliable_message(&settings.session);
    let Some(host) = net.host_id().filter(|_| net.role() == Some(Role::Joiner)) else {
        messages.drain_sent().for_each(drop);
        return;
    };
    for (channel, payload) in messages.drain_sent() {
        if let Some(&kind) = channels.client_channels().get(channel) {
            super::send(&mut net, host, kind, channel, payload, max_unreliable);
        }
    }
}
