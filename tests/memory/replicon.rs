//! bevy_replicon over the in-memory network: the host is replicon's server, the joiners its
//! clients. Replication converges, a link cut within `resume_timeout` is no disconnect in
//! replicon's eyes (nothing lost, duplicated or re-replicated), a timeout is, and replicon's
//! disconnect requests and a lying client are handled.

use super::*;
use crate::common::replicon::*;
use bevy::state::{app::StatesPlugin, state::StateTransitionEvent};
use bevy_peer_message::Violation;
use bevy_replicon::prelude::*;

fn replicon_app(network: &MemoryNetwork, id: u128, plugin: PeerMessagePlugin) -> App {
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, StatesPlugin))
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP))
        .add_plugins(plugin.in_memory(network).identity(identity(id)));
    record_lifecycle(&mut app);
    add_replicon(&mut app);
    record::<StateTransitionEvent<ClientState>>(&mut app);
    app
}

fn client_transitions(app: &App) -> Vec<Option<ClientState>> {
    inbox::<StateTransitionEvent<ClientState>>(app)
        .iter()
        .map(|t| t.entered)
        .collect()
}

/// Host `pid(1)` with ten boxes and a joiner `pid(2)` that has them all.
fn replicating(plugin: impl Fn() -> PeerMessagePlugin) -> (MemoryNetwork, App, App) {
    let network = MemoryNetwork::default();
    let mut host = replicon_app(&network, 1, plugin());
    let mut joiner = replicon_app(&network, 2, plugin());
    for tag in 0..10 {
        spawn_box(&mut host, tag);
    }
    connect(&network, &mut host, &mut joiner);
    run_until(
        &network,
        &mut [&mut host, &mut joiner],
        5 * SECOND,
        "replication",
        |a| client_state(a[1]) == ClientState::Connected && boxes_of(a[1]).len() == 10,
    );
    assert_eq!(
        *host.world().resource::<State<ServerState>>().get(),
        ServerState::Running
    );
    (network, host, joiner)
}

/// Runs until the client has exactly the server's boxes, each once (they move every frame,
/// so positions are compared elsewhere).
fn settle(network: &MemoryNetwork, host: &mut App, joiner: &mut App) {
    run_until(
        network,
        &mut [host, joiner],
        5 * SECOND,
        "convergence",
        |a| {
            boxes_of(a[0]).keys().eq(boxes_of(a[1]).keys())
                && boxes_of(a[1]).values().all(|v| v.len() == 1)
        },
    );
}

#[test]
fn replication_converges_and_client_messages_reach_the_server() {
    let (network, mut host, mut joiner) = replicating(PeerMessagePlugin::default);
    // The client entity on the host is the joiner's peer entity.
    let mut clients = host
        .world_mut()
        .query_filtered::<(Entity, &Peer), With<ConnectedClient>>();
    let (client, peer) = clients.single(host.world()).expect("one client");
    assert_eq!(peer.id, pid(2));
    assert_eq!(inbox::<PeerConnected>(&host)[0].entity, client);

    for n in 0..50 {
        joiner.world_mut().write_message(Push(n));
        run(&network, &mut [&mut host, &mut joiner], STEP);
    }
    run(&network, &mut [&mut host, &mut joiner], 10 * STEP);
    assert_eq!(
        host.world().resource::<Pushes>().0,
        (0..50).collect::<Vec<_>>()
    );

    // Positions follow the server's (they move every frame: compare a frame apart at most).
    let server = boxes_of(&host);
    let client_view = boxes_of(&joiner);
    assert_eq!(
        server.keys().collect::<Vec<_>>(),
        client_view.keys().collect::<Vec<_>>()
    );
    for (tag, at) in &client_view {
        assert_eq!(at.len(), 1, "box {tag} once");
        let lag = server[tag][0] - at[0];
        assert!((0..=10).contains(&lag), "box {tag}: {lag} behind");
    }
    assert_eq!(
        client_transitions(&joiner),
        vec![
            Some(ClientState::Disconnected), // The initial state.
            Some(ClientState::Connecting),
            Some(ClientState::Connected)
        ]
    );
    assert_no_errors(&[&host, &joiner]);
}

#[test]
fn a_3s_link_cut_is_no_disconnect_and_loses_or_duplicates_nothing() {
    let plugin = || PeerMessagePlugin::default().liveness_timeout(SECOND);
    let (network, mut host, mut joiner) = replicating(plugin);
    let mut clients = host
        .world_mut()
        .query_filtered::<Entity, With<ConnectedClient>>();
    let client = clients.single(host.world()).expect("one client");
    let transitions_before = client_transitions(&joiner);

    network.set_online(pid(2), false);
    let mut pushes = 0;
    let mut tags = 10;
    let mut doomed: Vec<Entity> = Vec::new();
    for frame in 0..300 {
        // The server spawns a box every 100 ms and despawns one of the new ones every 300
        // ms; the client pushes every 50 ms, all through the cut.
        if frame % 10 == 0 {
            doomed.push(spawn_box(&mut host, tags));
            tags += 1;
        }
        if frame % 30 == 29
            && let Some(entity) = doomed.pop()
        {
            host.world_mut().despawn(entity);
        }
        if frame % 5 == 0 {
            joiner.world_mut().write_message(Push(pushes));
            pushes += 1;
        }
        run(&network, &mut [&mut host, &mut joiner], STEP);
    }
    assert_eq!(state(&joiner), ConnectionState::Reconnecting);
    assert_eq!(
        client_state(&joiner),
        ClientState::Connected,
        "still connected for replicon"
    );
    network.set_online(pid(2), true);
    run_until(
        &network,
        &mut [&mut host, &mut joiner],
        10 * SECOND,
        "resume",
        |a| {
            state(a[1]) == ConnectionState::Connected
                && a[0].world().resource::<Pushes>().0.len() == pushes as usize
        },
    );
    settle(&network, &mut host, &mut joiner);

    let server = boxes_of(&host);
    let client_view = boxes_of(&joiner);
    assert_eq!(
        server.len(),
        10 + 30 - 10,
        "30 spawned, 10 despawned in the cut"
    );
    assert_eq!(
        server.keys().collect::<Vec<_>>(),
        client_view.keys().collect::<Vec<_>>(),
        "no box missing, none left over"
    );
    assert!(client_view.values().all(|v| v.len() == 1), "no box twice");
    assert_eq!(
        host.world().resource::<Pushes>().0,
        (0..pushes).collect::<Vec<_>>(),
        "every input once, in order"
    );
    // Not a disconnect anywhere: the same client entity, no state change, no despawn.
    assert!(host.world().get::<ConnectedClient>(client).is_some());
    assert!(host.world().resource::<ClientsRemoved>().0.is_empty());
    assert_eq!(client_transitions(&joiner), transitions_before);
    assert!(inbox::<PeerDisconnected>(&host).is_empty());
    assert_eq!(inbox::<PeerReconnected>(&joiner).len(), 1);
}

#[test]
fn a_joiner_that_times_out_is_disconnected_in_replicon() {
    let plugin = || {
        PeerMessagePlugin::default()
            .liveness_timeout(SECOND)
            .resume_timeout(2 * SECOND)
    };
    let (network, mut host, mut joiner) = replicating(plugin);
    let mut clients = host
        .world_mut()
        .query_filtered::<Entity, With<ConnectedClient>>();
    let client = clients.single(host.world()).expect("one client");
    network.set_online(pid(2), false);
    run(&network, &mut [&mut host, &mut joiner], 5 * SECOND);
    assert_eq!(host.world().resource::<ClientsRemoved>().0, vec![client]);
    assert!(host.world().get_entity(client).is_err(), "despawned");
    let transitions = client_transitions(&joiner);
    assert_eq!(
        transitions[transitions.len() - 2..],
        [
            Some(ClientState::Disconnected),
            Some(ClientState::Connecting)
        ],
        "disconnected, then joining again: {transitions:?}"
    );
    // Back on the network: a new session, replicated afresh.
    network.set_online(pid(2), true);
    run_until(
        &network,
        &mut [&mut host, &mut joiner],
        10 * SECOND,
        "rejoin",
        |a| client_state(a[1]) == ClientState::Connected,
    );
    settle(&network, &mut host, &mut joiner);
}

#[test]
fn a_disconnect_request_or_a_despawned_client_kicks_the_peer() {
    for despawn in [false, true] {
        let plugin = || PeerMessagePlugin::default().rejoin(false);
        let (network, mut host, mut joiner) = replicating(plugin);
        let mut clients = host
            .world_mut()
            .query_filtered::<Entity, With<ConnectedClient>>();
        let client = clients.single(host.world()).expect("one client");
        if despawn {
            host.world_mut().despawn(client);
        } else {
            host.world_mut().write_message(DisconnectRequest { client });
        }
        run(&network, &mut [&mut host, &mut joiner], 10 * STEP);
        assert_eq!(
            inbox::<PeerDisconnected>(&host)
                .iter()
                .map(|d| d.reason)
                .collect::<Vec<_>>(),
            vec![DisconnectReason::Kicked]
        );
        assert!(host.world().get_entity(client).is_err());
        assert_eq!(state(&joiner), ConnectionState::Offline);
        assert_eq!(client_state(&joiner), ClientState::Disconnected);
        assert!(
            inbox::<PeerError>(&joiner)
                .iter()
                .any(|e| e.error
                    == PeerErrorKind::RefusedByPeer(bevy_peer_message::ByeReason::Kicked)),
            "{:?}",
            inbox::<PeerError>(&joiner)
        );
    }
}

/// The wire shape of this crate's replicon packets (serde: `Bytes` and `Vec<u8>` encode
/// alike), registered under the same names by an app that lies.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct ForgedPacket {
    channel: u16,
    payload: Vec<u8>,
}
#[derive(Serialize, Deserialize, Clone, Debug)]
struct ForgedReliable(ForgedPacket);
#[derive(Serialize, Deserialize, Clone, Debug)]
struct ForgedUnreliable(ForgedPacket);

#[test]
fn a_client_lying_about_channels_is_dropped_and_the_others_carry_on() {
    let network = MemoryNetwork::default();
    let mut host = replicon_app(&network, 1, PeerMessagePlugin::default());
    let mut honest = replicon_app(&network, 2, PeerMessagePlugin::default());
    for tag in 0..3 {
        spawn_box(&mut host, tag);
    }
    // The liar: no replicon, its own packets under this backend's names.
    let mut liar = App::new();
    liar.add_plugins(MinimalPlugins)
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP))
        .add_plugins(
            PeerMessagePlugin::default()
                .in_memory(&network)
                .identity(identity(3)),
        )
        .add_peer_message_named::<ForgedReliable>(
            "bevy_peer_message::replicon::reliable",
            Delivery::Reliable,
        )
        .add_peer_message_named::<ForgedUnreliable>(
            "bevy_peer_message::replicon::unreliable",
            Delivery::Unreliable,
        );
    net(&mut host, |n| n.host("room"));
    host.update();
    net(&mut honest, |n| n.join("room"));
    net(&mut liar, |n| n.join("room"));
    run_until(
        &network,
        &mut [&mut host, &mut honest, &mut liar],
        5 * SECOND,
        "everyone in",
        |a| boxes_of(a[1]).len() == 3 && state(a[2]) == ConnectionState::Connected,
    );
    // No such client channel (replicon has one: the mutation acks).
    net(&mut liar, |n| {
        n.send_to_host(ForgedReliable(ForgedPacket {
            channel: 7,
            payload: vec![1, 2, 3],
        }))
    });
    run(
        &network,
        &mut [&mut host, &mut honest, &mut liar],
        20 * STEP,
    );
    let errors = inbox::<PeerError>(&host);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].peer, Some(pid(3)));
    assert_eq!(
        errors[0].error,
        PeerErrorKind::Violation(Violation::BadReplicationMessage)
    );
    // The honest client goes on.
    spawn_box(&mut host, 99);
    run_until(
        &network,
        &mut [&mut host, &mut honest, &mut liar],
        5 * SECOND,
        "the honest client still replicates",
        |a| boxes_of(a[1]).len() == 4,
    );
    assert!(inbox::<PeerError>(&honest).is_empty());
}

#[test]
fn a_restarted_host_is_a_new_replicon_server_for_its_joiners() {
    let (network, host, mut joiner) = replicating(PeerMessagePlugin::default);
    let before = client_transitions(&joiner).len();
    // The host's process ends and starts again under another id, with another world.
    drop(host);
    run(&network, &mut [&mut joiner], 10 * STEP);
    assert_eq!(
        client_state(&joiner),
        ClientState::Connected,
        "away, not gone"
    );
    let mut restarted = replicon_app(&network, 11, PeerMessagePlugin::default());
    for tag in 100..103 {
        spawn_box(&mut restarted, tag);
    }
    net(&mut restarted, |n| n.host("room"));
    run_until(
        &network,
        &mut [&mut restarted, &mut joiner],
        10 * SECOND,
        "the new host's world, and only it",
        |a| boxes_of(a[1]).keys().copied().collect::<Vec<_>>() == vec![100, 101, 102],
    );
    // Replicon saw the old server go and a new one come.
    assert_eq!(
        client_transitions(&joiner)[before..],
        [
            Some(ClientState::Disconnected),
            Some(ClientState::Connecting),
            Some(ClientState::Connected)
        ]
    );
    joiner.world_mut().write_message(Push(7));
    run(&network, &mut [&mut restarted, &mut joiner], 10 * STEP);
    assert_eq!(restarted.world().resource::<Pushes>().0, vec![7]);
}
