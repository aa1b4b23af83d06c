//! The WebRTC transport: one `matchbox_socket::WebRtcSocket` per [`Socket`], with two data
//! channels and its message loop running in the background (native: a thread of its own; wasm:
//! the browser's event loop).
//!
//! Nothing here can panic on a closed socket: sends use `try_send`, peer updates use
//! `try_update_peers`, and a panic inside matchbox's loop (it has `expect`s on network paths)
//! is caught and reported as the loop's end.

use crate::{
    core::wire::Channel,
    io::ice::IceServers,
    io::signaling::{SignalingPhase, SignalingStatus, Watched},
    io::{RemoteId, Socket, SocketTarget, Transport},
};
use bytes::Bytes;
use futures::{FutureExt, channel::oneshot};
use matchbox_socket::{
    ChannelConfig, PeerState, RtcIceServerConfig, SignallerBuilder, WebRtcSocket,
    WebRtcSocketBuilder,
};
use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

/// The transport of the product: matchbox WebRTC sockets.
#[derive(Debug, Default)]
pub(crate) struct Matchbox;

impl Transport for Matchbox {
    fn open(&self, target: &SocketTarget) -> Box<dyn Socket> {
        let watched = Watched::new(target.signaller.clone(), target.connect_timeout);
        let status = watched.status();
        let builder = WebRtcSocketBuilder::new(target.room_url.clone())
            // One signaling attempt per socket: retries, with backoff, are the plugin's job.
            .reconnect_attempts(Some(1));
        Box::new(MatchboxSocket::open_with(
            builder,
            &target.ice,
            Arc::new(watched),
            status,
        ))
    }
}

fn remote_id(id: matchbox_socket::PeerId) -> RemoteId {
    RemoteId(id.0.as_u128())
}

fn matchbox_id(id: RemoteId) -> matchbox_socket::PeerId {
    matchbox_socket::PeerId(uuid::Uuid::from_u128(id.0))
}

/// One open matchbox socket.
pub(crate) struct MatchboxSocket {
    socket: WebRtcSocket,
    status: SignalingStatus,
    done: oneshot::Receiver<Result<(), String>>,
    ended: Option<Result<(), String>>,
}

impl std::fmt::Debug for MatchboxSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatchboxSocket")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl MatchboxSocket {
    fn open_with(
        builder: WebRtcSocketBuilder,
        ice: &IceServers,
        signaller: Arc<dyn SignallerBuilder>,
        status: SignalingStatus,
    ) -> Self {
        let builder = builder
            .ice_server(RtcIceServerConfig {
                urls: ice.urls.clone(),
                username: ice.username.clone(),
                credential: ice.credential.clone(),
            })
            .add_channel(ChannelConfig::reliable())
            .add_channel(ChannelConfig::unreliable())
            .signaller_builder(signaller);
        let (socket, message_loop) = builder.build();
        let (tx, done) = oneshot::channel();
        let guarded = async move {
            let result = match AssertUnwindSafe(message_loop).catch_unwind().await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(panic) => Err(panic_message(&panic)),
            };
            let _ = tx.send(result);
        };
        spawn(guarded);
        Self {
            socket,
            status,
            done,
            ended: None,
        }
    }
}

impl Socket for MatchboxSocket {
    fn signaling(&self) -> SignalingPhase {
        self.status.get()
    }

    fn connect_time(&self) -> Option<Duration> {
        self.status.connect_time()
    }

    fn local_id(&mut self) -> Option<RemoteId> {
        self.socket.id().map(remote_id)
    }

    fn poll_links(&mut self, f: &mut dyn FnMut(RemoteId, bool)) {
        if let Ok(changes) = self.socket.try_update_peers() {
            for (remote, state) in changes {
                f(remote_id(remote), state == PeerState::Connected);
            }
        }
    }

    fn receive(&mut self, f: &mut dyn FnMut(RemoteId, Bytes)) {
        for channel in [Channel::Reliable, Channel::Unreliable] {
            if let Ok(ch) = self.socket.get_channel_mut(channel as usize) {
                for (remote, packet) in ch.receive() {
                    f(remote_id(remote), packet);
                }
            }
        }
    }

    fn send(&mut self, remote: RemoteId, channel: Channel, packet: Bytes) -> bool {
        match self.socket.get_channel_mut(channel as usize) {
            Ok(ch) => ch.try_send(packet, matchbox_id(remote)).is_ok(),
            Err(_) => false,
        }
    }

    fn ended(&mut self) -> Option<Result<(), String>> {
        if self.ended.is_none() {
            match self.done.try_recv() {
                Ok(Some(result)) => self.ended = Some(result),
                Ok(None) => {}
                Err(_) => self.ended = Some(Err("message loop vanished".into())),
            }
        }
        self.ended.clone()
    }

    fn close(&mut self) {
        self.socket.close();
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("matchbox message loop panicked: {text}")
}

#[cfg(not(target_arch = "wasm32"))]
fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
    // A thread of its own: the loop must run whatever Bevy's task pools are configured to do
    // (a single-threaded pool would only tick it once a frame). webrtc-rs itself runs on
    // smol's threads.
    let spawned = std::thread::Builder::new()
        .name("peer-message-socket".into())
        .spawn(move || futures::executor::block_on(fut));
    if let Err(e) = spawned {
        bevy::log::error!("could not start the socket thread: {e}");
    }
}

#[cfg(target_arch = "wasm32")]
fn spawn(fut: impl Future<Output = ()> + 'static) {
    wasm_bindgen_futures::spawn_local(fut);
}
