//! Pluggable signaling: besides a websocket server, any [`SignallerBuilder`] can relay the
//! WebRTC handshake. [`LocalSignalingHub`] is one that needs no network at all: apps in one
//! process that share a hub find each other through it (tests, split-screen, local tools), and
//! it doubles as a small, complete example of writing your own.

use futures::{StreamExt, channel::mpsc};
use matchbox_socket::{
    PeerEvent, PeerId as LinkId, PeerRequest, SignalingError, Signaller, SignallerBuilder,
    async_trait::async_trait,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

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
