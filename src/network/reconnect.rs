//! The reconnect policy: when to re-open the room's socket, how often to try, and what the
//! game is told. Liveness itself (who is away, who timed out) is the room's, run beside the
//! sockets; this acts on it, on the Bevy side: in the frame after something changed (a socket's
//! signaling, a link, a room event), when a re-open has waited out its backoff, and otherwise
//! at most every `reconnect_interval` as a safety net.
//!
//! Who re-opens when:
//! - a joiner whose host is away (silent for `liveness_timeout`, or its link dropped) opens a
//!   new socket: a fresh signaling session and fresh WebRTC connections, to the host and to
//!   every other peer; the sessions resume on them. So does any peer while a peer that hosted
//!   the room before a migration is away (after a partition healed, the side that moved on
//!   reaches the side that did not);
//! - any peer whose socket's signaling connection failed or was lost re-opens, keeping the old
//!   socket while it still carries links in use (existing links keep working; the new socket
//!   lets new joiners in and lets later drops recover);
//! - a joiner whose new link never carried a `Hello` re-opens for fresh connections (a host
//!   leaves that to the joiner, who hears nothing from it and does the same);
//! - a host whose joiner is away does nothing but wait: the joiner comes back through
//!   signaling; so does a joiner whose fellow joiner is away;
//! - a star joiner with no host (or an away one), whose socket nobody negotiated with for a
//!   second after its signaling came up, opens another: it offers connections to nobody, so a
//!   host whose socket came after its own never heard of it (the host links to the new one).
//!
//! Each attempt waits per the backoff. The first failure of an outage is one [`PeerError`](crate::PeerError); the
//! other attempts of the same outage go to the log. A joiner whose host stays away past
//! `resume_timeout` joins again as a new session (see `PeerMessageSettings::rejoin`); that
//! part lives with the room events in the driver.

use super::{
    Engine, PeerNetwork, Phase, apply_events, error, hosts_away_since, update_state, with_engine,
};
use crate::{
    config::PeerMessageSettings,
    core::error::{PeerErrorKind, SignalingError},
    core::peer::Role,
    core::rng::Rng,
    core::room::Topology,
    io::SignalingPhase,
};
use bevy::prelude::*;
use std::time::Duration;

/// How long a star joiner's socket waits for its host before a new one is opened (see
/// `reconnect`).
const STAR_WAIT: Duration = Duration::from_secs(1);

/// The reconnect system's memory.
#[derive(Debug)]
pub(super) struct Reconnect {
    /// How long the last successful signaling connection took: re-open attempts give up after
    /// four times that (at least 1 s, at most `signaling_connect_timeout`), so an attempt whose
    /// packets vanished while the network was away is retried as soon as it returns.
    connect_time: Option<Duration>,
    attempts: u32,
    /// This outage (from a socket failing until one is up again) has been reported as a
    /// `PeerError`; further failures of the same outage only go to the log.
    outage_reported: bool,
    next_attempt: Duration,
    /// Something changed that the policy must look at.
    attention: bool,
    /// The policy's next deadline, when nothing changes before.
    next_check: Duration,
    random: Rng,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            connect_time: None,
            attempts: 0,
            outage_reported: false,
            next_attempt: Duration::ZERO,
            attention: true,
            next_check: Duration::ZERO,
            random: Rng::new(crate::core::peer::random_u128() as u64),
        }
    }
}

impl Reconnect {
    /// A room was just opened at `now`.
    pub(super) fn start(&mut self, now: Duration) {
        self.attempts = 0;
        self.next_attempt = now;
        self.connect_time = None;
        self.attention = true;
    }

    /// Something changed that the policy must look at in this frame.
    pub(super) fn notice(&mut self) {
        self.attention = true;
    }
}

/// Reports a socket failure: the first of an outage as a [`PeerError`](crate::PeerError), the others (one per
/// re-open attempt) in the log only.
fn socket_failed(world: &mut World, net: &mut PeerNetwork, reason: SignalingError) {
    if net.reconnect.outage_reported {
        info!(
            "re-open attempt {} failed: {reason}",
            net.reconnect.attempts
        );
    } else {
        net.reconnect.outage_reported = true;
        error(world, None, PeerErrorKind::Signaling(reason));
    }
}

/// Run condition of [`reconnect`]: something changed, or its deadline has come.
pub(crate) fn reconnect_due(net: Res<PeerNetwork>) -> bool {
    net.phase != Phase::Offline
        && (net.reconnect.attention || net.now() >= net.reconnect.next_check)
}

/// The reconnect system, in `PreUpdate` after `receive`, when something changed or at its
/// deadline: sockets whose loop or signaling died, stalled handshakes, a host that is away,
/// and re-opening the socket with backoff when the room needs it (see the module's docs).
pub(crate) fn reconnect(world: &mut World) {
    with_engine(world, |world, net, engine| {
        let settings = world.resource::<PeerMessageSettings>().clone();
        let now = net.now();
        net.reconnect.attention = false;
        net.reconnect.next_check = now + settings.reconnect_interval;

        let stalled = engine
            .room
            .as_mut()
            .map_or(0, |room| room.take_stalled_handshakes());
        if stalled > 0 {
            warn!(
                "{stalled} new link(s) carried no handshake for {:?}; dropped them",
                settings.resume.handshake_timeout
            );
        }

        // Sockets whose loop ended: their links are gone; a current one has failed.
        let mut failures = Vec::new();
        if let Some(room) = engine.room.as_mut() {
            engine.sockets.reap_ended(|socket, result, was_current| {
                for link in socket.links() {
                    room.handle_link_down(link, now);
                }
                if was_current && !socket.failure_reported {
                    failures.push(result.err().unwrap_or(SignalingError::Closed));
                }
            });
        }
        for reason in failures {
            socket_failed(world, net, reason);
        }
        apply_events(world, net, engine);

        let host_away = hosts_away_since(engine);
        let stalled_joiner = stalled > 0
            && engine
                .room
                .as_ref()
                .is_some_and(|r| r.local().role == Role::Joiner);
        let mut need = engine.sockets.is_empty() || stalled_joiner;
        let mut lost = None;
        if let Some(current) = engine.sockets.current() {
            // A current socket whose signaling failed or dropped.
            if current.signaling() == SignalingPhase::Down {
                if !current.failure_reported {
                    current.failure_reported = true;
                    lost = Some(if current.ever_up {
                        SignalingError::Lost
                    } else {
                        SignalingError::Unreachable
                    });
                }
                need = true;
            }
            if host_away.is_some_and(|since| current.opened_at <= since) {
                need = true;
            }
            // A star joiner offers connections to nobody, so a host whose socket came after
            // its own never hears of it: with no host (or an away one) a second after its
            // signaling came up, and nobody trying to connect, it opens a new socket, which
            // the host, there by then, links to. (A connection under way gets twice the
            // handshake timeout: WebRTC's setup takes seconds on a loaded machine.)
            let wait = match current.negotiated() {
                false => STAR_WAIT,
                true => settings.resume.handshake_timeout * 2,
            };
            let up_at = current.opened_at + current.connect_time().unwrap_or_default();
            if let Some(room) = engine.room.as_ref()
                && room.topology() == Topology::Star
                && room.local().role == Role::Joiner
                && room.host().is_none_or(|h| room.away_since(h).is_some())
                && current.signaling() == SignalingPhase::Up
                && now.saturating_sub(up_at) >= wait
                && !current.links().any(|l| room.link_in_use(l))
            {
                need = true;
            }
            if current.signaling() == SignalingPhase::Up {
                net.reconnect.connect_time = current.connect_time().or(net.reconnect.connect_time);
                if !need && host_away.is_none() {
                    net.reconnect.attempts = 0;
                    net.reconnect.outage_reported = false;
                }
            }
        }
        if let Some(reason) = lost {
            socket_failed(world, net, reason);
        }
        apply_events(world, net, engine);
        if net.phase != Phase::Offline && need {
            if now >= net.reconnect.next_attempt {
                reopen(net, engine, &settings, now);
            }
            // Still needed until the new socket's signaling is up: look again when the backoff
            // allows the next attempt.
            net.reconnect.next_check = net.reconnect.next_check.min(net.reconnect.next_attempt);
        }
        if let Some(room) = engine.room.as_mut() {
            let mut gone = Vec::new();
            engine
                .sockets
                .retire_unused(|link| room.link_in_use(link), |link| gone.push(link));
            // The room forgets their links (tombstones of closed ones included).
            for link in gone {
                room.handle_link_down(link, now);
            }
        }
        update_state(world, net, engine);
    });
}

fn reopen(
    net: &mut PeerNetwork,
    engine: &mut Engine,
    settings: &PeerMessageSettings,
    now: Duration,
) {
    let Some(mut target) = net.target.clone() else {
        return;
    };
    let attempt = net.reconnect.attempts;
    net.reconnect.attempts += 1;
    let random = net.reconnect.random.next_f32();
    net.reconnect.next_attempt = now + settings.backoff.delay(net.reconnect.attempts, random);
    // A current socket with links still in use keeps serving them while the new one comes up.
    let keep = match (engine.sockets.current(), engine.room.as_ref()) {
        (Some(current), Some(room)) => current.links().any(|l| room.link_in_use(l)),
        _ => false,
    };
    if !keep
        && let Some(old) = engine.sockets.drop_current()
        && let Some(room) = engine.room.as_mut()
    {
        for link in old.links() {
            room.handle_link_down(link, now);
        }
    }
    info!(
        "re-opening the socket (attempt {}, next no sooner than {:?})",
        attempt + 1,
        net.reconnect.next_attempt.saturating_sub(now)
    );
    let timeout = match net.reconnect.connect_time {
        Some(t) => (t * 4)
            .max(Duration::from_secs(1))
            .min(settings.signaling_connect_timeout),
        None => settings.signaling_connect_timeout,
    };
    target.connect_timeout = timeout;
    engine.sockets.open(&*net.transport, &target, now);
    engine.wake();
}
