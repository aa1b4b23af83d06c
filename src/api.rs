//! The [`PeerMessage`] system parameter: host, join, leave, send, and who is here.

use crate::{
    config::PeerMessageSettings,
    core::error::{PeerErrorKind, SendError},
    core::peer::{PeerId, Role},
    core::session::Stats,
    core::wire::Delivery,
    events::PeerError,
    network::PeerNetwork,
    registry::{MessageRegistry, PeerMessageType},
};
use bevy::{ecs::system::SystemParam, prelude::*};

/// The one system parameter a game needs: host, join, leave, send, and who is here.
///
/// Sends are queued and leave in this frame's [`PostUpdate`]
/// ([`PeerMessageSet::Send`](crate::PeerMessageSet)). The plain methods never fail
/// loudly: a refused send becomes a [`PeerError`] message. The `try_` methods return the
/// [`SendError`] instead.
///
/// ```
/// # use bevy::prelude::*;
/// # use bevy_peer_message::prelude::*;
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Chat(String);
/// fn greet(mut joined: MessageReader<PeerConnected>, mut net: PeerMessage) {
///     for event in joined.read() {
///         net.send(event.peer, Chat("welcome".into()));
///     }
/// }
/// # bevy::ecs::system::assert_is_system(greet);
/// ```
#[derive(SystemParam)]
pub struct PeerMessage<'w> {
    net: ResMut<'w, PeerNetwork>,
    registry: Res<'w, MessageRegistry>,
    settings: Res<'w, PeerMessageSettings>,
    errors: MessageWriter<'w, PeerError>,
}

impl PeerMessage<'_> {
    /// Opens `room` as its host (with the default settings on native, starting the embedded
    /// signaling server). Takes effect in this frame's [`PostUpdate`].
    pub fn host(&mut self, room: impl Into<String>) {
        self.net.queue_host(room.into());
    }

    /// Joins `room`, whose host must appear within `join_timeout`.
    pub fn join(&mut self, room: impl Into<String>) {
        self.net.queue_join(room.into(), Vec::new());
    }

    /// Joins `room` with `payload` for the host's admission review (a player name, a ticket;
    /// see [`JoinRequest`](crate::JoinRequest)). A payload over 1 KiB is refused with a
    /// [`PeerError`].
    pub fn join_with(&mut self, room: impl Into<String>, payload: impl Into<Vec<u8>>) {
        let payload = payload.into();
        if payload.len() > crate::core::wire::MAX_JOIN_PAYLOAD {
            self.errors.write(PeerError {
                peer: None,
                error: PeerErrorKind::Send(SendError::TooLarge {
                    size: payload.len(),
                    limit: crate::core::wire::MAX_JOIN_PAYLOAD,
                    delivery: Delivery::Reliable,
                }),
            });
            return;
        }
        self.net.queue_join(room.into(), payload);
    }

    /// Host reviewing joiners: admits the joiner of a [`JoinRequest`](crate::JoinRequest).
    /// Takes effect in this frame's [`PostUpdate`].
    pub fn admit(&mut self, peer: PeerId) {
        self.net.queue_decision(peer, true);
    }

    /// Host reviewing joiners: refuses the joiner of a [`JoinRequest`](crate::JoinRequest);
    /// it gets [`PeerErrorKind::NotAdmitted`]. Takes effect in this frame's [`PostUpdate`].
    pub fn refuse(&mut self, peer: PeerId) {
        self.net.queue_decision(peer, false);
    }

    /// Host: removes `peer` from the room. It gets a [`PeerError`] with
    /// [`PeerErrorKind::RefusedByPeer`]`(`[`ByeReason::Kicked`](crate::ByeReason::Kicked)`)`
    /// and leaves; the other joiners see it go with
    /// [`DisconnectReason::Evicted`](crate::DisconnectReason::Evicted), and we with
    /// [`DisconnectReason::Kicked`](crate::DisconnectReason::Kicked). Takes effect in this
    /// frame's [`PostUpdate`]; does nothing (but log a warning) on a joiner or for a peer not in
    /// the room. Nothing stops the same player from asking to join again: review joiners
    /// ([`PeerMessagePlugin::review_joiners`](crate::PeerMessagePlugin::review_joiners)) to
    /// keep it out.
    pub fn kick(&mut self, peer: PeerId) {
        self.net.queue_kick(peer);
    }

    /// Leaves the room: every peer is told at once (they see
    /// [`DisconnectReason::Left`](crate::core::room::DisconnectReason)), and this app goes
    /// [`Offline`](crate::ConnectionState::Offline). A host first hands the room to the joiner
    /// with the lowest id that is not away (see [`hand_over`](Self::hand_over)), unless host
    /// migration is off ([`PeerMessagePlugin::host_grace`](crate::PeerMessagePlugin::host_grace)).
    /// Whatever was sent before goes out before the goodbye.
    pub fn leave(&mut self) {
        self.net.queue_leave();
    }

    /// Host: hands the room to `peer`, a joiner in the room that is not away, and stays as a
    /// joiner. Every peer sees [`HostMigrated`](crate::HostMigrated) once it reads the
    /// hand-over, which travels after everything sent to it before: send the successor a
    /// snapshot of the game first, and it has it when it becomes the host. Takes effect in this
    /// frame's [`PostUpdate`] (we see `HostMigrated` there); does nothing but log a warning on
    /// a joiner or for a peer that is not a live joiner here. Call [`leave`](Self::leave)
    /// after it (in the same frame or later) to hand over and go. A leaving host sends what is
    /// still queued up to four in-flight windows (256 KiB by default) before its goodbye; for a
    /// larger snapshot, wait for its [`TransferProgress`](crate::TransferProgress) to finish
    /// before `leave()`.
    ///
    /// ```
    /// # use bevy::prelude::*;
    /// # use bevy_peer_message::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize, Clone)]
    /// struct Snapshot { scores: Vec<u32> }
    ///
    /// fn quit(mut net: PeerMessage, keys: Res<ButtonInput<KeyCode>>) {
    ///     if keys.just_pressed(KeyCode::Escape) && net.role() == Some(Role::Host) {
    ///         if let Some(heir) = net.peers().map(|(p, _)| p).min() {
    ///             net.send(heir, Snapshot { scores: vec![3, 1] });
    ///             net.hand_over(heir);
    ///         }
    ///         net.leave();
    ///     }
    /// }
    /// # bevy::ecs::system::assert_is_system(quit);
    /// ```
    pub fn hand_over(&mut self, peer: PeerId) {
        self.net.queue_hand_over(peer);
    }

    /// Replaces the ICE servers for the connections made from now on: the next socket opened
    /// (a reconnect, a rejoin, the next `host`/`join`, in that order with other calls this
    /// frame) uses them; connections already up keep theirs. Hand the game fresh short-lived
    /// TURN credentials ([`TurnCredentials`](crate::TurnCredentials)) this way before the old
    /// ones expire, so that a reconnect can still reach the relay.
    ///
    /// ```
    /// # use bevy::prelude::*;
    /// # use bevy_peer_message::prelude::*;
    /// /// What the game's backend sent: credentials valid for the next hour.
    /// #[derive(Message)]
    /// struct FreshTurnCredentials(TurnCredentials);
    ///
    /// fn refresh(mut fresh: MessageReader<FreshTurnCredentials>, mut net: PeerMessage) {
    ///     for FreshTurnCredentials(creds) in fresh.read() {
    ///         net.set_ice_servers(IceServers::stun(["stun:turn.example.org:3478"]).with(
    ///             IceServer::turn(
    ///                 ["turn:turn.example.org:3478"],
    ///                 creds.username.clone(),
    ///                 creds.credential.clone(),
    ///             ),
    ///         ));
    ///     }
    /// }
    /// # bevy::ecs::system::assert_is_system(refresh);
    /// ```
    pub fn set_ice_servers(&mut self, ice: crate::IceServers) {
        self.net.queue_ice_servers(ice);
    }

    /// Drops every packet from peers for `duration`, as if the network went away (see
    /// [`LinkConditionerConfig`](crate::LinkConditionerConfig)): rehearse reconnects without root. Works with or without a
    /// configured [`LinkConditionerConfig`](crate::LinkConditionerConfig).
    pub fn simulate_blackout(&mut self, duration: std::time::Duration) {
        self.net.queue_blackout(duration);
    }

    /// Our id (derived from our [`Identity`](crate::Identity)).
    pub fn id(&self) -> PeerId {
        self.settings.identity.peer_id()
    }

    /// Our role while in a room.
    pub fn role(&self) -> Option<Role> {
        self.net.role()
    }

    /// The room we are in (or connecting to).
    pub fn room(&self) -> Option<&str> {
        self.net.room_name()
    }

    /// The host, once a joiner is connected to it (our own id on a host).
    pub fn host_id(&self) -> Option<PeerId> {
        match self.net.role() {
            Some(Role::Host) => Some(self.settings.identity.peer_id()),
            _ => self.net.host(),
        }
    }

    /// The connected peers and their roles.
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, Role)> + use<> {
        self.net.peers().into_iter()
    }

    /// Live figures for a peer.
    pub fn stats(&self, peer: PeerId) -> Option<Stats> {
        self.net.stats(peer)
    }

    /// Sends `message` to `peer`. A refusal is reported as a [`PeerError`].
    pub fn send<M: PeerMessageType>(&mut self, peer: PeerId, message: M) {
        if let Err(e) = self.try_send(peer, &message) {
            self.report(Some(peer), e);
        }
    }

    /// Sends `message` to `peer`, or says why not.
    pub fn try_send<M: PeerMessageType>(
        &mut self,
        peer: PeerId,
        message: &M,
    ) -> Result<(), SendError> {
        let (kind, delivery) = self.encode(message)?;
        self.net.send_encoded(peer, kind, delivery)
    }

    /// Sends `message` to every connected peer, once each (encoded once).
    pub fn broadcast<M: PeerMessageType>(&mut self, message: M) {
        let mut failed = Vec::new();
        match self.encode(&message) {
            Ok((kind, delivery)) => self
                .net
                .broadcast_encoded(kind, delivery, &mut |p, e| failed.push((Some(p), e))),
            Err(e) => failed.push((None, e)),
        }
        for (peer, e) in failed {
            self.report(peer, e);
        }
    }

    /// Sends `message` to every connected peer; the first refusal, if any, after trying all.
    pub fn try_broadcast<M: PeerMessageType>(&mut self, message: &M) -> Result<(), SendError> {
        let (kind, delivery) = self.encode(message)?;
        let mut first = None;
        self.net.broadcast_encoded(kind, delivery, &mut |_, e| {
            first.get_or_insert(e);
        });
        first.map_or(Ok(()), Err)
    }

    /// Sends `message` to the host (a joiner's shortcut).
    pub fn send_to_host<M: PeerMessageType>(&mut self, message: M) {
        if let Err(e) = self.try_send_to_host(&message) {
            self.report(None, e);
        }
    }

    /// Sends `message` to the host, or says why not.
    pub fn try_send_to_host<M: PeerMessageType>(&mut self, message: &M) -> Result<(), SendError> {
        let host = match self.net.role() {
            Some(Role::Joiner) => self.net.host(),
            _ => None,
        }
        .ok_or(SendError::NoHost)?;
        self.try_send(host, message)
    }

    fn encode<M: PeerMessageType>(&mut self, message: &M) -> Result<(u32, Delivery), SendError> {
        let (kind, delivery) = self
            .registry
            .lookup::<M>()
            .ok_or(SendError::Unregistered(std::any::type_name::<M>()))?;
        self.net.encode(message)?;
        Ok((kind, delivery))
    }

    /// Ends the link to `peer` over a refused send that leaves the two sides out of step: a
    /// host kicks the peer, a joiner drops it (both report `error` as a [`PeerError`]).
    #[cfg_attr(not(feature = "replicon"), allow(dead_code))]
    pub(crate) fn end_link(&mut self, peer: PeerId, error: SendError) {
        if self.net.role() == Some(Role::Host) {
            self.report(Some(peer), error);
            self.net.queue_kick(peer);
        } else {
            // (Dropping reports it.)
            warn!("send refused: {error}");
            self.net.queue_drop(peer, PeerErrorKind::Send(error));
        }
    }

    /// Logs a refused send and reports it as a [`PeerError`].
    pub(crate) fn report(&mut self, peer: Option<PeerId>, error: SendError) {
        warn!("send refused: {error}");
        self.errors.write(PeerError {
            peer,
            error: PeerErrorKind::Send(error),
        });
    }
}
