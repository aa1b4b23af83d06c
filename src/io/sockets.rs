//! The sockets of one room: the current one and older ones still carrying links while their
//! peers move over to the current one. Works on any [`Transport`].

use crate::{
    core::{error::SignalingError, wire::Channel},
    io::{Negotiation, NetworkPath, RemoteId, SignalingPhase, Socket, SocketTarget, Transport},
};
use bytes::Bytes;
use std::{collections::HashSet, task::Waker, time::Duration};

/// One link of ours: which of our sockets it belongs to, and the other end's id on it. The
/// remote id alone is not enough: after we re-open, our new socket connects again to the same
/// remote socket, under the same remote id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct LinkId {
    /// Our socket's serial number (unique within a [`SocketSet`]).
    pub socket: u32,
    /// The other end's id.
    pub remote: RemoteId,
    /// Our socket's id, as the signaling server named it (the other end knows us by it).
    pub local: RemoteId,
}

impl crate::core::room::LinkEnds for LinkId {
    fn ends(&self) -> (u128, u128) {
        (self.local.0, self.remote.0)
    }
}

impl std::fmt::Debug for LinkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}@{}", self.remote, self.socket)
    }
}

/// A change in the set of links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkChange {
    /// A link is up.
    Up(LinkId),
    /// A link is gone.
    Down(LinkId),
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
pub(crate) struct OpenSocket {
    socket: Box<dyn Socket>,
    /// When it was opened (plugin clock).
    pub opened_at: Duration,
    serial: u32,
    /// Our id on it, once the signaling server gave it.
    local: Option<RemoteId>,
    links: HashSet<RemoteId>,
    /// Its signaling was up at some point.
    pub ever_up: bool,
    /// Its signaling failure has been reported already.
    pub failure_reported: bool,
    /// Its signaling phase and whether it had ended, when last looked at by `take_changes`.
    seen: Option<(SignalingPhase, bool)>,
    /// Packets in and out per link (debug builds only: diagnostics).
    #[cfg(debug_assertions)]
    traffic: std::collections::HashMap<RemoteId, (u64, u64)>,
}

impl OpenSocket {
    /// Whether WebRTC negotiated through this socket (an offer or answer went either way).
    pub(crate) fn negotiated(&self) -> bool {
        self.socket.negotiation().tried
    }

    /// How long this socket's signaling connection took to come up.
    pub(crate) fn connect_time(&self) -> Option<Duration> {
        self.socket.connect_time()
    }

    /// Signaling phase of this socket.
    pub(crate) fn signaling(&mut self) -> SignalingPhase {
        let phase = self.socket.signaling();
        if phase == SignalingPhase::Up {
            self.ever_up = true;
        }
        phase
    }

    /// Our matchbox id on this socket, its signaling phase and links (diagnostics).
    pub(crate) fn describe(&mut self) -> String {
        let id = self.socket.local_id();
        let phase = self.socket.signaling();
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
        let local = self.local.unwrap_or(RemoteId(0));
        self.links.iter().map(move |&remote| LinkId {
            socket,
            remote,
            local,
        })
    }
}

/// The sockets of one room: the current one (last) and older ones still carrying links while
/// their peers move over to the current one.
#[derive(Debug, Default)]
pub(crate) struct SocketSet {
    sockets: Vec<OpenSocket>,
    next_serial: u32,
    /// A link came up (or brought data) on one of them at some point.
    linked: bool,
}

impl SocketSet {
    /// How `link` travels, once WebRTC knows.
    pub(crate) fn path(&self, link: LinkId) -> Option<NetworkPath> {
        self.sockets
            .iter()
            .find(|s| s.serial == link.socket)
            .and_then(|s| s.socket.path(link.remote))
    }

    /// Whether a link ever came up on one of the sockets.
    pub(crate) fn ever_linked(&self) -> bool {
        self.linked
    }

    /// What WebRTC negotiated through every socket.
    pub(crate) fn negotiation(&self) -> Negotiation {
        self.sockets
            .iter()
            .fold(Negotiation::default(), |n, s| n.and(s.socket.negotiation()))
    }

    /// Opens a new current socket; older ones keep running until retired.
    pub(crate) fn open(&mut self, transport: &dyn Transport, target: &SocketTarget, now: Duration) {
        let socket = transport.open(target);
        let serial = self.next_serial;
        self.next_serial = self.next_serial.wrapping_add(1);
        self.sockets.push(OpenSocket {
            socket,
            opened_at: now,
            serial,
            local: None,
            links: HashSet::new(),
            ever_up: false,
            failure_reported: false,
            seen: None,
            #[cfg(debug_assertions)]
            traffic: Default::default(),
        });
    }

    /// The newest socket.
    pub(crate) fn current(&mut self) -> Option<&mut OpenSocket> {
        self.sockets.last_mut()
    }

    /// Every socket, oldest first (diagnostics).
    pub(crate) fn describe(&mut self) -> Vec<String> {
        self.sockets.iter_mut().map(OpenSocket::describe).collect()
    }

    /// Whether any socket's signaling phase changed, or a socket ended, since the last call
    /// (a new socket counts as a change).
    pub(crate) fn take_changes(&mut self) -> bool {
        let mut changed = false;
        for socket in &mut self.sockets {
            let now = (socket.socket.signaling(), socket.socket.ended().is_some());
            if socket.seen != Some(now) {
                socket.seen = Some(now);
                changed = true;
            }
        }
        changed
    }

    /// Whether there is no socket at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Link changes, then packets, of every socket; each socket wakes `waker` when it has
    /// more.
    pub(crate) fn poll(&mut self, waker: &Waker, mut f: impl FnMut(Incoming)) {
        let linked = &mut self.linked;
        for socket in &mut self.sockets {
            let serial = socket.serial;
            if socket.local.is_none() {
                socket.local = socket.socket.local_id();
            }
            // Known before any link: the signaling server names us first.
            let local = socket.local.unwrap_or(RemoteId(0));
            let links = &mut socket.links;
            socket.socket.poll_links(waker, &mut |remote, up| {
                let link = LinkId {
                    socket: serial,
                    remote,
                    local,
                };
                if up {
                    *linked = true;
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
            socket.socket.receive(waker, &mut |remote, packet| {
                *linked = true;
                links.insert(remote);
                #[cfg(debug_assertions)]
                {
                    traffic.entry(remote).or_default().0 += 1;
                }
                let link = LinkId {
                    socket: serial,
                    remote,
                    local,
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
                socket.socket.send(link.remote, channel, packet)
            }
            _ => false,
        }
    }

    /// Removes the sockets whose loop ended, handing each to `f` with how it ended and whether
    /// it was the current one.
    pub(crate) fn reap_ended(
        &mut self,
        mut f: impl FnMut(OpenSocket, Result<(), SignalingError>, bool),
    ) {
        let mut i = 0;
        while i < self.sockets.len() {
            let ended = self.sockets[i].socket.ended();
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

    /// Closes every older socket none of whose links is still in use; `gone` hears of each
    /// link of theirs (the transport will not report them down any more).
    pub(crate) fn retire_unused(
        &mut self,
        in_use: impl Fn(LinkId) -> bool,
        mut gone: impl FnMut(LinkId),
    ) {
        let last = self.sockets.len().saturating_sub(1);
        let mut i = 0;
        while i < last.min(self.sockets.len()) {
            if self.sockets[i].links().any(&in_use) {
                i += 1;
            } else {
                let mut old = self.sockets.remove(i);
                old.links().for_each(&mut gone);
                old.socket.close();
            }
        }
    }

    /// Closes the current socket (older ones stay, if they carry links in use). Its links are
    /// the caller's to forget (the transport will not report them down).
    pub(crate) fn drop_current(&mut self) -> Option<OpenSocket> {
        let mut socket = self.sockets.pop()?;
        socket.socket.close();
        Some(socket)
    }

    /// Takes every socket out (to linger, then close).
    pub(crate) fn take_all(&mut self) -> Vec<Box<dyn Socket>> {
        self.sockets.drain(..).map(|s| s.socket).collect()
    }
}
