//! The room's protocol beside its sockets: the [`Room`], the sockets its links run on, the link
//! conditioner and the sockets still lingering after a `leave()`.
//!
//! The transport's own loop pumps it ([`Transport::drive`](crate::io::Transport::drive)):
//! whenever a socket has a packet or a link change, and at the room's next deadline
//! ([`Room::poll_timeout`]). So heartbeats, pings, pongs, acks and repeated `Hello`s go out
//! whatever the game's frames do, and the in-flight window turns as acks arrive, not once per
//! frame. The Bevy side locks it once per system run: to deliver what arrived (it pumps first,
//! so a packet that came in just before the frame is read in that frame) and to send what the
//! frame queued.

use crate::{
    core::conditioner::LinkConditioner,
    core::room::Room,
    io::sockets::{Incoming, LinkChange, LinkId, SocketSet},
    io::{Pump, Socket},
};
use bytes::Bytes;
use std::{task::Waker, time::Duration};

/// The longest the engine goes without draining its sockets while it has a room. Unreliable
/// packets do not wake it (see `Socket`), so while the game's frames stall this bounds how
/// long they queue in the transport before the session takes (or sheds) them.
const DRAIN_INTERVAL: Duration = Duration::from_millis(250);

/// Sockets (and a server) kept open briefly after `leave()` so the goodbyes get out.
#[derive(Debug)]
pub(crate) struct Lingering {
    /// The sockets.
    pub sockets: Vec<Box<dyn Socket>>,
    /// The embedded server, kept (not used) as long as the sockets.
    #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
    pub _server: Option<crate::io::server::EmbeddedServer>,
    /// When to close them whatever happens.
    pub until: Duration,
}

/// The protocol of one app: at most one room at a time.
#[derive(Debug)]
pub(crate) struct Engine {
    /// The room, between `host()`/`join()` and `leave()`.
    pub room: Option<Room<LinkId>>,
    /// The room's sockets.
    pub sockets: SocketSet,
    /// Delay, jitter and loss on incoming packets, when rehearsing a bad network.
    pub conditioner: Option<LinkConditioner<(LinkId, Bytes)>>,
    lingering: Vec<Lingering>,
    /// Wakes the transport's loop; the sockets are polled with it, whoever pumps.
    waker: Waker,
    /// Times pumped (diagnostics).
    pumps: u64,
    /// A link came up or went down since the last `take_links_changed`.
    links_changed: bool,
    /// When it was last pumped.
    last_pump: Duration,
}

impl Default for Engine {
    fn default() -> Self {
        Self {
            room: None,
            sockets: SocketSet::default(),
            conditioner: None,
            lingering: Vec::new(),
            waker: Waker::noop().clone(),
            pumps: 0,
            links_changed: false,
            last_pump: Duration::ZERO,
        }
    }
}

impl Engine {
    /// Takes in what the sockets have (links, then packets, through the conditioner if any),
    /// runs the room's timers and sends what is due. Returns the next deadline.
    pub(crate) fn pump(&mut self, now: Duration) -> Option<Duration> {
        self.pumps += 1;
        self.last_pump = now;
        if let Some(room) = self.room.as_mut() {
            let conditioner = &mut self.conditioner;
            let links_changed = &mut self.links_changed;
            self.sockets.poll(&self.waker, |incoming| match incoming {
                Incoming::Link(LinkChange::Up(link)) => {
                    *links_changed = true;
                    room.handle_link_up(link)
                }
                Incoming::Link(LinkChange::Down(link)) => {
                    *links_changed = true;
                    room.handle_link_down(link, now)
                }
                Incoming::Packet(link, packet) => match conditioner {
                    // The handshake is exempt, so that reconnects can complete.
                    Some(c) if room.link_bound(link) => c.admit(now, (link, packet)),
                    _ => room.handle_packet(link, packet, now),
                },
            });
            if let Some(c) = conditioner {
                c.release(now, |(link, packet)| room.handle_packet(link, packet, now));
            }
            room.handle_timeout(now);
        }
        self.transmit(now);
        self.lingering.retain_mut(|l| {
            l.sockets.retain_mut(|s| s.ended().is_none());
            if now < l.until && !l.sockets.is_empty() {
                return true;
            }
            for s in &mut l.sockets {
                s.close();
            }
            false
        });
        self.poll_timeout(now)
    }

    /// Sends everything the room has due now.
    pub(crate) fn transmit(&mut self, now: Duration) {
        if let Some(room) = self.room.as_mut() {
            let sockets = &mut self.sockets;
            room.poll_transmit(now, &mut |link, channel, packet| {
                sockets.send(link, channel, packet);
            });
        }
    }

    /// The next instant the engine must run: the room's next deadline, the conditioner's next
    /// release, the end of a linger.
    pub(crate) fn poll_timeout(&self, now: Duration) -> Option<Duration> {
        let room = self.room.as_ref().and_then(|r| r.poll_timeout(now));
        let held = self.conditioner.as_ref().and_then(|c| c.poll_timeout());
        let linger = self.lingering.iter().map(|l| l.until).min();
        let drain = (self.room.is_some() && !self.sockets.is_empty())
            .then_some(self.last_pump + DRAIN_INTERVAL);
        [room, held, linger, drain].into_iter().flatten().min()
    }

    /// Keeps sockets (and a server) open until `linger.until` so the goodbyes get out.
    pub(crate) fn linger(&mut self, linger: Lingering) {
        self.lingering.push(linger);
        self.wake();
    }

    /// Wakes the transport's loop: something changed that it must look at (a new socket to
    /// register with, a new deadline).
    pub(crate) fn wake(&self) {
        self.waker.wake_by_ref();
    }

    /// Whether a link came up or went down since the last call.
    pub(crate) fn take_links_changed(&mut self) -> bool {
        std::mem::take(&mut self.links_changed)
    }

    /// How many times the engine was pumped (diagnostics).
    pub(crate) fn pumps(&self) -> u64 {
        self.pumps
    }
}

impl Pump for Engine {
    fn pump(&mut self, now: Duration, waker: &Waker) -> Option<Duration> {
        if !self.waker.will_wake(waker) {
            self.waker = waker.clone();
        }
        Engine::pump(self, now)
    }
}
