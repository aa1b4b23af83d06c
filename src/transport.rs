//! The transport: one `matchbox_socket::WebRtcSocket` with two data channels and its message
//! loop running in the background (native: a thread of its own; wasm: the browser's event loop).
//!
//! Nothing here can panic on a closed socket: sends use `try_send`, peer updates use
//! `try_update_peers`, and a panic inside matchbox's loop (it has `expect`s on network paths)
//! is caught and reported as the loop's end.

use crate::{config::IceServers, session::Channel};
use bytes::Bytes;
use futures::{FutureExt, channel::oneshot};
use matchbox_socket::{
    ChannelConfig, PeerState, RtcIceServerConfig, SignallerBuilder, WebRtcSocket,
    WebRtcSocketBuilder,
};
use std::{panic::AssertUnwindSafe, sync::Arc};

/// matchbox's per-socket peer id: our link id.
pub type LinkId = matchbox_socket::PeerId;

/// A change in the set of links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkChange {
    /// A WebRTC connection is up.
    Up(LinkId),
    /// A WebRTC connection is gone.
    Down(LinkId),
}

/// One open matchbox socket.
pub struct Transport {
    socket: WebRtcSocket,
    done: oneshot::Receiver<Result<(), String>>,
    ended: Option<Result<(), String>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Opens a socket to `room_url` and starts its message loop.
    pub fn open(
        room_url: String,
        ice: &IceServers,
        signaller: Option<Arc<dyn SignallerBuilder>>,
    ) -> Self {
        let mut builder = WebRtcSocketBuilder::new(room_url)
            .ice_server(RtcIceServerConfig {
                urls: ice.urls.clone(),
                username: ice.username.clone(),
                credential: ice.credential.clone(),
            })
            .add_channel(ChannelConfig::reliable())
            .add_channel(ChannelConfig::unreliable());
        if let Some(signaller) = signaller {
            builder = builder.signaller_builder(signaller);
        }
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
            done,
            ended: None,
        }
    }

    /// Our matchbox id, once the signaling server assigned it.
    pub fn id(&mut self) -> Option<LinkId> {
        self.socket.id()
    }

    /// Reports links that came up or went down since the last call.
    pub fn poll_links(&mut self, mut f: impl FnMut(LinkChange)) {
        if let Ok(changes) = self.socket.try_update_peers() {
            for (link, state) in changes {
                f(match state {
                    PeerState::Connected => LinkChange::Up(link),
                    PeerState::Disconnected => LinkChange::Down(link),
                });
            }
        }
    }

    /// Hands every packet received since the last call to `f`.
    pub fn receive(&mut self, mut f: impl FnMut(LinkId, Channel, Bytes)) {
        for channel in [Channel::Reliable, Channel::Unreliable] {
            if let Ok(ch) = self.socket.get_channel_mut(channel as usize) {
                for (link, packet) in ch.receive() {
                    f(link, channel, packet);
                }
            }
        }
    }

    /// Queues a packet; `false` if the socket is closed.
    pub fn send(&mut self, link: LinkId, channel: Channel, packet: Bytes) -> bool {
        match self.socket.get_channel_mut(channel as usize) {
            Ok(ch) => ch.try_send(packet, link).is_ok(),
            Err(_) => false,
        }
    }

    /// Whether the message loop has ended, and how: `Some(Err(..))` after a signaling failure
    /// or a caught panic.
    pub fn ended(&mut self) -> Option<&Result<(), String>> {
        if self.ended.is_none() {
            match self.done.try_recv() {
                Ok(Some(result)) => self.ended = Some(result),
                Ok(None) => {}
                Err(_) => self.ended = Some(Err("message loop vanished".into())),
            }
        }
        self.ended.as_ref()
    }

    /// Closes the socket; the loop ends and the WebRTC connections close.
    pub fn close(&mut self) {
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
