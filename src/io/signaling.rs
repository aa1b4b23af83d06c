//! Signaling: who relays the WebRTC handshake.
//!
//! - [`WebSocketSignallerBuilder`]: the matchbox protocol over a websocket (any
//!   matchbox-compatible server, including the embedded one). Ours rather than matchbox's
//!   private default, so that a connection attempt has a timeout and its loss is visible.
//! - [`LocalSignalingHub`]: no network at all; apps in one process that share a hub find each
//!   other through it (tests, split-screen, local tools). It doubles as a small, complete example
//!   of writing your own [`SignallerBuilder`].
//! - [`Watched`]: wraps any builder so the plugin knows whether signaling is up, and gives a
//!   connection attempt a deadline. The plugin wraps every signaller it uses in it.

use futures::{FutureExt, StreamExt, channel::mpsc};
use matchbox_socket::{
    PeerEvent, PeerId as LinkId, PeerRequest, PeerSignal, SignalingError, Signaller,
    SignallerBuilder, async_trait::async_trait,
};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

/// The matchbox signaling protocol (JSON text frames) over a websocket.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WebSocketSignallerBuilder;

fn user_error(e: impl std::fmt::Display) -> SignalingError {
    SignalingError::UserImplementationError(e.to_string())
}

fn parse_event(text: &str) -> Result<PeerEvent, SignalingError> {
    serde_json::from_str(text).map_err(|_| SignalingError::UnknownFormat)
}

#[cfg(not(target_arch = "wasm32"))]
mod ws {
    use super::*;
    use async_tungstenite::{
        WebSocketStream,
        smol::{ConnectStream, connect_async},
        tungstenite::Message,
    };

    pub(super) struct WsSignaller {
        stream: WebSocketStream<ConnectStream>,
    }

    pub(super) async fn connect(url: &str) -> Result<Box<dyn Signaller>, SignalingError> {
        let (stream, _) = connect_async(url).await?;
        Ok(Box::new(WsSignaller { stream }))
    }

    #[async_trait]
    impl Signaller for WsSignaller {
        async fn send(&mut self, request: PeerRequest) -> Result<(), SignalingError> {
            let text = serde_json::to_string(&request).map_err(user_error)?;
            Ok(self.stream.send(Message::Text(text.into())).await?)
        }

        async fn next_message(&mut self) -> Result<PeerEvent, SignalingError> {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Text(text))) => return parse_event(&text),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => {
                        return Err(SignalingError::StreamExhausted);
                    }
                    Some(Ok(_)) => return Err(SignalingError::UnknownFormat),
                    Some(Err(e)) => return Err(e.into()),
                }
            }
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod ws {
    use super::*;
    use futures::SinkExt;
    use ws_stream_wasm::{WsMessage, WsMeta, WsStream};

    pub(super) struct WsSignaller {
        stream: futures::stream::Fuse<WsStream>,
    }

    pub(super) async fn connect(url: &str) -> Result<Box<dyn Signaller>, SignalingError> {
        let (_, stream) = WsMeta::connect(url, None).await?;
        Ok(Box::new(WsSignaller {
            stream: stream.fuse(),
        }))
    }

    #[async_trait(?Send)]
    impl Signaller for WsSignaller {
        async fn send(&mut self, request: PeerRequest) -> Result<(), SignalingError> {
            let text = serde_json::to_string(&request).map_err(user_error)?;
            Ok(self.stream.send(WsMessage::Text(text)).await?)
        }

        async fn next_message(&mut self) -> Result<PeerEvent, SignalingError> {
            match self.stream.next().await {
                Some(WsMessage::Text(text)) => parse_event(&text),
                Some(_) => Err(SignalingError::UnknownFormat),
                None => Err(SignalingError::StreamExhausted),
            }
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl SignallerBuilder for WebSocketSignallerBuilder {
    async fn new_signaller(
        &self,
        _attempts: Option<u16>,
        room_url: String,
    ) -> Result<Box<dyn Signaller>, SignalingError> {
        // One attempt: retrying, with backoff, is the plugin's reconnect system's job.
        ws::connect(&room_url).await
    }
}

/// Whether a socket's signaling connection is up (and how long connecting took), and what WebRTC
/// negotiated through it, shared between its signaller and the plugin.
#[derive(Debug, Clone, Default)]
pub(crate) struct SignalingStatus(Arc<StatusCells>);

#[derive(Debug, Default)]
struct StatusCells {
    phase: AtomicU8,
    connect_micros: AtomicU64,
    /// Offers and answers sent or received.
    descriptions: AtomicU32,
    /// A relayed (TURN) ICE candidate was sent or received.
    relay_candidate: AtomicBool,
}

/// What WebRTC negotiated through a socket's signaling: enough to tell "nobody there" from
/// "somebody there, and no network path to them".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Negotiation {
    /// An offer or answer went out or came in: a remote socket was there and WebRTC tried.
    pub tried: bool,
    /// A relay (TURN) candidate was offered by either side.
    pub relay_offered: bool,
}

impl Negotiation {
    /// Both sockets' negotiations taken together.
    pub(crate) fn and(self, other: Negotiation) -> Negotiation {
        Negotiation {
            tried: self.tried || other.tried,
            relay_offered: self.relay_offered || other.relay_offered,
        }
    }
}

/// The states a [`SignalingStatus`] goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignalingPhase {
    /// Connecting to the server.
    Connecting,
    /// Connected.
    Up,
    /// Failed to connect, or lost.
    Down,
}

impl SignalingStatus {
    /// The current phase.
    pub(crate) fn get(&self) -> SignalingPhase {
        match self.0.phase.load(Ordering::Acquire) {
            0 => SignalingPhase::Connecting,
            1 => SignalingPhase::Up,
            _ => SignalingPhase::Down,
        }
    }

    fn set(&self, phase: SignalingPhase) {
        let v = match phase {
            SignalingPhase::Connecting => 0,
            SignalingPhase::Up => 1,
            SignalingPhase::Down => 2,
        };
        self.0.phase.store(v, Ordering::Release);
    }

    /// What WebRTC negotiated so far.
    pub(crate) fn negotiation(&self) -> Negotiation {
        Negotiation {
            tried: self.0.descriptions.load(Ordering::Acquire) > 0,
            relay_offered: self.0.relay_candidate.load(Ordering::Acquire),
        }
    }

    /// A WebRTC signal went out or came in.
    fn saw(&self, signal: &PeerSignal) {
        match signal {
            PeerSignal::Offer(_) | PeerSignal::Answer(_) => {
                self.0.descriptions.fetch_add(1, Ordering::AcqRel);
            }
            // The candidate's SDP line says its type: `... typ relay raddr ...`.
            PeerSignal::IceCandidate(candidate) if candidate.contains(" typ relay") => {
                self.0.relay_candidate.store(true, Ordering::Release);
            }
            PeerSignal::IceCandidate(_) => {}
        }
    }

    /// How long the successful connection took, once up.
    pub(crate) fn connect_time(&self) -> Option<Duration> {
        match self.0.connect_micros.load(Ordering::Acquire) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }
}

/// Wraps a [`SignallerBuilder`]: reports the connection's phase in a [`SignalingStatus`] and
/// gives up on a connection attempt after `connect_timeout`.
#[derive(Debug, Clone)]
pub(crate) struct Watched {
    inner: Arc<dyn SignallerBuilder>,
    status: SignalingStatus,
    connect_timeout: Duration,
    /// Whether our socket offers connections to newcomers (see `SocketTarget::offers`).
    offers: bool,
}

impl Watched {
    /// Wraps `inner`; without `offers`, newcomers are not offered a connection (their
    /// `NewPeer` is not passed on).
    pub(crate) fn new(
        inner: Arc<dyn SignallerBuilder>,
        connect_timeout: Duration,
        offers: bool,
    ) -> Self {
        Self {
            inner,
            status: SignalingStatus::default(),
            connect_timeout,
            offers,
        }
    }

    /// The status this wrapper reports into.
    pub(crate) fn status(&self) -> SignalingStatus {
        self.status.clone()
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl SignallerBuilder for Watched {
    async fn new_signaller(
        &self,
        attempts: Option<u16>,
        room_url: String,
    ) -> Result<Box<dyn Signaller>, SignalingError> {
        self.status.set(SignalingPhase::Connecting);
        let started = bevy::platform::time::Instant::now();
        let connect = self.inner.new_signaller(attempts, room_url).fuse();
        let deadline = futures_timer::Delay::new(self.connect_timeout).fuse();
        futures::pin_mut!(connect, deadline);
        let result = futures::select! {
            r = connect => r,
            _ = deadline => Err(user_error(format!(
                "no answer from the signaling server within {:?}", self.connect_timeout
            ))),
        };
        match result {
            Ok(inner) => {
                let micros = started.elapsed().as_micros().clamp(1, u64::MAX as u128) as u64;
                self.status
                    .0
                    .connect_micros
                    .store(micros, Ordering::Release);
                self.status.set(SignalingPhase::Up);
                Ok(Box::new(WatchedSignaller {
                    inner,
                    status: self.status.clone(),
                    offers: self.offers,
                }))
            }
            Err(e) => {
                self.status.set(SignalingPhase::Down);
                Err(e)
            }
        }
    }
}

struct WatchedSignaller {
    inner: Box<dyn Signaller>,
    status: SignalingStatus,
    offers: bool,
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Signaller for WatchedSignaller {
    async fn send(&mut self, request: PeerRequest) -> Result<(), SignalingError> {
        if let PeerRequest::Signal { data, .. } = &request {
            self.status.saw(data);
        }
        let result = self.inner.send(request).await;
        if result.is_err() {
            self.status.set(SignalingPhase::Down);
        }
        result
    }

    async fn next_message(&mut self) -> Result<PeerEvent, SignalingError> {
        loop {
            let result = self.inner.next_message().await;
            match &result {
                // Not ours to offer to: the newcomer hears from whoever does.
                Ok(PeerEvent::NewPeer(_)) if !self.offers => continue,
                Ok(PeerEvent::Signal { data, .. }) => self.status.saw(data),
                Ok(_) | Err(SignalingError::UnknownFormat) => {}
                Err(_) => self.status.set(SignalingPhase::Down),
            }
            return result;
        }
    }
}

impl Drop for WatchedSignaller {
    fn drop(&mut self) {
        self.status.set(SignalingPhase::Down);
    }
}

type Rooms = HashMap<String, HashMap<LinkId, mpsc::UnboundedSender<PeerEvent>>>;

#[derive(Debug, Default)]
struct HubState {
    next_id: u128,
    rooms: Rooms,
}

/// An in-process signaling hub (full mesh, like `matchbox_server`).
///
/// ```
/// # use bevy_peer_message::prelude::*;
/// # use std::sync::Arc;
/// let hub = LocalSignalingHub::default();
/// let host = PeerMessagePlugin::default()
///     .signaling(Signaling::custom(Arc::new(hub.clone()), "local://"));
/// let joiner = PeerMessagePlugin::default()
///     .signaling(Signaling::custom(Arc::new(hub), "local://"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct LocalSignalingHub {
    state: Arc<Mutex<HubState>>,
}

impl LocalSignalingHub {
    fn with<R>(&self, f: impl FnOnce(&mut HubState) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// How many signallers are in `room_url` now.
    pub fn occupancy(&self, room_url: &str) -> usize {
        self.with(|s| s.rooms.get(room_url).map_or(0, HashMap::len))
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl SignallerBuilder for LocalSignalingHub {
    async fn new_signaller(
        &self,
        _attempts: Option<u16>,
        room_url: String,
    ) -> Result<Box<dyn Signaller>, SignalingError> {
        let (tx, rx) = mpsc::unbounded();
        let id = self.with(|s| {
            s.next_id += 1;
            let id = LinkId(uuid::Uuid::from_u128(s.next_id));
            let _ = tx.unbounded_send(PeerEvent::IdAssigned(id));
            let room = s.rooms.entry(room_url.clone()).or_default();
            // Full mesh: everyone already there offers a connection to the newcomer.
            for other in room.values() {
                let _ = other.unbounded_send(PeerEvent::NewPeer(id));
            }
            room.insert(id, tx);
            id
        });
        Ok(Box::new(LocalSignaller {
            hub: self.clone(),
            room: room_url,
            id,
            rx,
        }))
    }
}

struct LocalSignaller {
    hub: LocalSignalingHub,
    room: String,
    id: LinkId,
    rx: mpsc::UnboundedReceiver<PeerEvent>,
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Signaller for LocalSignaller {
    async fn send(&mut self, request: PeerRequest) -> Result<(), SignalingError> {
        if let PeerRequest::Signal { receiver, data } = request {
            let sender = self.id;
            self.hub.with(|s| {
                if let Some(to) = s.rooms.get(&self.room).and_then(|r| r.get(&receiver)) {
                    let _ = to.unbounded_send(PeerEvent::Signal { sender, data });
                }
            });
        }
        Ok(())
    }

    async fn next_message(&mut self) -> Result<PeerEvent, SignalingError> {
        self.rx.next().await.ok_or(SignalingError::StreamExhausted)
    }
}

impl Drop for LocalSignaller {
    fn drop(&mut self) {
        let (id, room) = (self.id, std::mem::take(&mut self.room));
        self.hub.with(|s| {
            if let Some(members) = s.rooms.get_mut(&room) {
                members.remove(&id);
                for other in members.values() {
                    let _ = other.unbounded_send(PeerEvent::PeerLeft(id));
                }
                if members.is_empty() {
                    s.rooms.remove(&room);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use matchbox_socket::PeerSignal;

    #[test]
    fn newcomers_are_offered_to_and_signals_are_relayed() {
        futures::executor::block_on(async {
            let hub = LocalSignalingHub::default();
            let mut a = hub.new_signaller(None, "r".into()).await.unwrap();
            let mut b = hub.new_signaller(None, "r".into()).await.unwrap();
            let PeerEvent::IdAssigned(a_id) = a.next_message().await.unwrap() else {
                panic!()
            };
            let PeerEvent::IdAssigned(b_id) = b.next_message().await.unwrap() else {
                panic!()
            };
            assert_eq!(a.next_message().await.unwrap(), PeerEvent::NewPeer(b_id));
            a.send(PeerRequest::Signal {
                receiver: b_id,
                data: PeerSignal::Offer("sdp".into()),
            })
            .await
            .unwrap();
            assert_eq!(
                b.next_message().await.unwrap(),
                PeerEvent::Signal {
                    sender: a_id,
                    data: PeerSignal::Offer("sdp".into())
                }
            );
            assert_eq!(hub.occupancy("r"), 2);
            drop(b);
            assert_eq!(a.next_message().await.unwrap(), PeerEvent::PeerLeft(b_id));
            assert_eq!(hub.occupancy("r"), 1);
        });
    }
}
