//! The transport: one `matchbox_socket::WebRtcSocket` with two data channels and its message
//! loop running in the background (native: a thread of its own; wasm: the browser's event loop).
//!
//! Nothing here can panic on a closed socket: sends use `try_send`, peer updates use
//! `try_update_peers`, and a panic inside matchbox's loop (it has `expect`s on network paths)
//! is caught and reported as the loop's end.

use crate::{
    core::wire::Channel,
    io::ice::IceServers,
    io::signaling::{SignalingPhase, SignalingStatus, Watched},
};
use bytes::Bytes;
use futures::{FutureExt, channel::oneshot};
use matchbox_socket::{
    ChannelConfig, PeerState, RtcIceServerConfig, SignallerBuilder, WebRtcSocket,
    WebRtcSocketBuilder,
};
use std::{collections::HashSet, panic::AssertUnwindSafe, sync::Arc, time::Duration};

/// matchbox's per-socket peer id of the other end of a connection.
pub(crate) type RemoteId = matchbox_socket::PeerId;

/// One WebRTC connection of ours: which of our sockets it belongs to, and the other end's
/// matchbox id on it. The remote id alone is not enough: after we re-open, our new socket
/// connects again to the same remote socket, under the same remote id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct LinkId {
    /// Our socket's serial number (unique within a [`SocketSet`]).
    pub socket: u32,
    /// The other end's matchbox id.
    pub remote: RemoteId,
}

impl std::fmt::Debug for LinkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let remote = self.remote.0.simple().to_string();
        write!(f, "{}@{}", &remote[..8], self.socket)
    }
}

/// A change in the set of links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkChange {
    /// A WebRTC connection is up.
    Up(LinkId),
    /// A WebRTC connection is gone.
    Down(LinkId),
}

/// One open matchbox socket.
pub(crate) struct Transport {
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
    pub(crate) fn open(
        room_url: String,
        ice: &IceServers,
        signaller: Option<Arc<dyn SignallerBuilder>>,
    ) -> Self {
        let builder = WebRtcSocketBuilder::new(room_url)
            // One signaling attempt per socket: retries, with backoff, are the plugin's job.
            .reconnect_attempts(Some(1));
        Self::open_with(builder, ice, signaller)
    }

    fn open_with(
        builder: WebRtcSocketBuilder,
        ice: &IceServers,
        signaller: Option<Arc<dyn SignallerBuilder>>,
    ) -> Self {
        let mut builder = builder
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
    pub(crate) fn id(&mut self) -> Option<RemoteId> {
        self.socket.id()
    }

    /// Reports connections that came up (`true`) or went down since the last call.
    pub(crate) fn poll_links(&mut self, mut f: impl FnMut(RemoteId, bool)) {
        if let Ok(changes) = self.socket.try_update_peers() {
            for (remote, state) in changes {
                f(remote, state == PeerState::Connected);
            }
        }
    }

    /// Hands every packet received since the last call to `f`.
    pub(crate) fn receive(&mut self, mut f: impl FnMut(RemoteId, Channel, Bytes)) {
        for channel in [Channel::Reliable, Channel::Unreliable] {
            if let Ok(ch) = self.socket.get_channel_mut(channel as usize) {
                for (link, packet) in ch.receive() {
                    f(link, channel, packet);
                }
            }
        }
    }

    /// Queues a packet; `false` if the socket is closed.
    pub(crate) fn send(&mut self, remote: RemoteId, channel: Channel, packet: Bytes) -> bool {
        match self.socket.get_channel_mut(channel as usize) {
            Ok(ch) => ch.try_send(packet, remote).is_ok(),
            Err(_) => false,
        }
    }

    /// Whether the message loop has ended, and how: `Some(Err(..))` after a signaling failure
    /// or a caught panic.
    pub(crate) fn ended(&mut self) -> Option<&Result<(), String>> {
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
    pub(crate) fn close(&mut self) {
        self.socket.close();
    }
}

/// What [`SocketSet::poll`] reports.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A link came up or went down.
    Link(LinkChange),
    /// A packet arrived on a link.
    Packet(LinkId, Bytes),
}

/// One socket of the plugin's, with what the plugin knows about it.
#[derive(Debug)]
pub(crate) struct Socket {
    transport: Transport,
    status: SignalingStatus,
    /// When it was opened (plugin clock).
    pub opened_at: Duration,
    serial: u32,
    links: HashSet<RemoteId>,
    /// Its signaling was up at some point.
    pub ever_up: bool,
    /// Its signaling failure has been reported already.
    pub failure_reported: bool,
    /// Packets in and out per link (debug builds only: diagnostics).
    #[cfg(debug_assertions)]
    traffic: std::collections::HashMap<RemoteId, (u64, u64)>,
}

impl Socket {
    /// How long this socket's signaling connection took to come up.
    pub(crate) fn connect_time(&self) -> Option<Duration> {
        self.status.connect_time()
    }

    /// Signaling phase of this socket.
    pub(crate) fn signaling(&mut self) -> SignalingPhase {
        let phase = self.status.get();
        if phase == SignalingPhase::Up {
            self.ever_up = true;
        }
        phase
    }

    /// Our matchbox id on this socket, its signaling phase and links (diagnostics).
    pub(crate) fn describe(&mut self) -> String {
        let id = self.transport.id();
        let phase = self.status.get();
        #[cfg(debug_assertions)]
        let traffic = format!(", packets (in, out) per link {:?}", self.traffic);
        #[cfg(not(debug_assertions))]
        let traffic = "";
        format!(
            "socket {} {id:?} opened at {:?}, signaling {phase:?}, links {:?}{traffic}",
            self.serial, self.opened_at, self.links
        )
    }

    /// The links that are up on this socket.
    pub(crate) fn links(&self) -> impl Iterator<Item = LinkId> + '_ {
        let socket = self.serial;
        self.links
            .iter()
            .map(move |&remote| LinkId { socket, remote })
    }
}

/// The sockets of one room: the current one (last) and older ones still carrying links while
/// their peers move over to the current one.
#[derive(Debug, Default)]
pub(crate) struct SocketSet {
    sockets: Vec<Socket>,
    next_serial: u32,
}

impl SocketSet {
    /// Opens a new current socket; older ones keep running until retired.
    pub(crate) fn open(
        &mut self,
        room_url: String,
        ice: &IceServers,
        signaller: Arc<dyn SignallerBuilder>,
        connect_timeout: Duration,
        now: Duration,
    ) {
        let watched = Watched::new(signaller, connect_timeout);
        let status = watched.status();
        let transport = Transport::open(room_url, ice, Some(Arc::new(watched)));
        let serial = self.next_serial;
        self.next_serial = self.next_serial.wrapping_add(1);
        self.sockets.push(Socket {
            transport,
            status,
            opened_at: now,
            serial,
            links: HashSet::new(),
            ever_up: false,
            failure_reported: false,
            #[cfg(debug_assertions)]
            traffic: Default::default(),
        });
    }

    /// The newest socket.
    pub(crate) fn current(&mut self) -> Option<&mut Socket> {
        self.sockets.last_mut()
    }

    /// Every socket, oldest first (diagnostics).
    pub(crate) fn describe(&mut self) -> Vec<String> {
        self.sockets.iter_mut().map(Socket::describe).collect()
    }

    /// Whether there is no socket at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Link changes, then packets, of every socket.
    pub(crate) fn poll(&mut self, mut f: impl FnMut(Incoming)) {
        for socket in &mut self.sockets {
            let serial = socket.serial;
            let links = &mut socket.links;
            socket.transport.poll_links(|remote, up| {
                let link = LinkId {
                    socket: serial,
                    remote,
                };
                if up {
                    links.insert(remote);
                    f(Incoming::Link(LinkChange::Up(link)));
                } else {
                    links.remove(&remote);
                    f(Incoming::Link(LinkChange::Down(link)));
                }
            });
            // Data can overtake matchbox's "connected" notice: the link exists (the room does
            // not write to it before the notice).
            #[cfg(debug_assertions)]
            let traffic = &mut socket.traffic;
            socket.transport.receive(|remote, _channel, packet| {
                links.insert(remote);
                #[cfg(debug_assertions)]
                {
                    traffic.entry(remote).or_default().0 += 1;
                }
                let link = LinkId {
                    socket: serial,
                    remote,
                };
                f(Incoming::Packet(link, packet))
            });
        }
    }

    /// Sends a packet on the link's socket.
    pub(crate) fn send(&mut self, link: LinkId, channel: Channel, packet: Bytes) -> bool {
        match self.sockets.iter_mut().find(|s| s.serial == link.socket) {
            Some(socket) if socket.links.contains(&link.remote) => {
                #[cfg(debug_assertions)]
                {
                    socket.traffic.entry(link.remote).or_default().1 += 1;
                }
                socket.transport.send(link.remote, channel, packet)
            }
            _ => false,
        }
    }

    /// Removes the sockets whose loop ended, handing each to `f` with how it ended and whether
    /// it was the current one.
    pub(crate) fn reap_ended(&mut self, mut f: impl FnMut(Socket, Result<(), String>, bool)) {
        let mut i = 0;
        while i < self.sockets.len() {
            let ended = self.sockets[i].transport.ended().cloned();
            match ended {
                Some(result) => {
                    let was_current = i + 1 == self.sockets.len();
                    let socket = self.sockets.remove(i);
                    f(socket, result, was_current);
                }
                None => i += 1,
            }
        }
    }

    /// Closes every older socket none of whose links is still in use.
    pub(crate) fn retire_unused(&mut self, in_use: impl Fn(LinkId) -> bool) {
        let last = self.sockets.len().saturating_sub(1);
        let mut i = 0;
        while i < last.min(self.sockets.len()) {
            if self.sockets[i].links().any(&in_use) {
                i += 1;
            } else {
                let mut old = self.sockets.remove(i);
                old.transport.close();
            }
        }
    }

    /// Closes the current socket (older ones stay, if they carry links in use).
    pub(crate) fn drop_current(&mut self) -> Option<Socket> {
        let mut socket = self.sockets.pop()?;
        socket.transport.close();
        Some(socket)
    }

    /// Takes every socket out (to linger, then close).
    pub(crate) fn take_all(&mut self) -> Vec<Transport> {
        self.sockets.drain(..).map(|s| s.transport).collect()
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
