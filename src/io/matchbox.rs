//! The WebRTC transport: one `matchbox_socket::WebRtcSocket` per [`Socket`], with two data
//! channels and its message loop running in the background (native: a thread of its own;
//! wasm: the browser's event loop).
//!
//! Nothing here can panic on a closed socket: sends use `try_send`, peer updates use
//! `try_update_peers`, and a panic inside matchbox's loop (it has `expect`s on network paths)
//! is caught and reported as the loop's end.

use crate::{
    core::{error::SignalingError, wire::Channel},
    io::ice::IceServers,
    io::signaling::{SignalingPhase, SignalingStatus, Watched},
    io::{Negotiation, NetworkPath, Pump, RemoteId, Socket, SocketTarget, Transport},
};
use bevy::platform::time::Instant;
use bytes::Bytes;
use futures::{FutureExt, Stream, channel::oneshot};
use matchbox_socket::{
    CandidateType, ChannelConfig, PeerState, RtcIceServerConfig, SignallerBuilder, WebRtcSocket,
    WebRtcSocketBuilder,
};
use std::{
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{Arc, Mutex, Weak},
    task::{Context, Poll, Waker},
    time::Duration,
};

/// The transport of the product: matchbox WebRTC sockets, on the wall clock.
#[derive(Debug)]
pub(crate) struct Matchbox {
    epoch: Instant,
}

impl Default for Matchbox {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }
}

impl Transport for Matchbox {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn drive(&self, pump: Weak<Mutex<dyn Pump>>) {
        run_loop(pump, self.epoch);
    }

    fn open(&self, target: &SocketTarget) -> Box<dyn Socket> {
        let watched = Watched::new(
            target.signaller.clone(),
            target.connect_timeout,
            target.offers,
        );
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
    done: oneshot::Receiver<Result<(), SignalingError>>,
    ended: Option<Result<(), SignalingError>>,
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
            .ice_servers(ice.servers.iter().map(|server| RtcIceServerConfig {
                urls: server.urls.clone(),
                username: server.username.clone(),
                credential: server.credential.clone(),
            }))
            .add_channel(ChannelConfig::reliable())
            .add_channel(ChannelConfig::unreliable())
            .signaller_builder(signaller);
        let (socket, message_loop) = builder.build();
        let (tx, done) = oneshot::channel();
        let guarded = async move {
            let result = match AssertUnwindSafe(message_loop).catch_unwind().await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => {
                    bevy::log::info!("socket ended: {e}");
                    Err(match e {
                        matchbox_socket::Error::ConnectionFailed(_) => SignalingError::Unreachable,
                        matchbox_socket::Error::Disconnected(_) => SignalingError::Lost,
                    })
                }
                Err(panic) => {
                    bevy::log::error!("{}", panic_message(&panic));
                    Err(SignalingError::Crashed)
                }
            };
            let _ = tx.send(result);
            give_back_freed_memory().await;
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

    fn negotiation(&self) -> Negotiation {
        self.status.negotiation()
    }

    fn path(&self, remote: RemoteId) -> Option<NetworkPath> {
        let pair = self.socket.candidate_pair(matchbox_id(remote))?;
        Some(if pair.is_relayed() {
            NetworkPath::Relayed
        } else if pair.local == CandidateType::Host && pair.remote == CandidateType::Host {
            NetworkPath::Direct
        } else {
            NetworkPath::ServerReflexive
        })
    }

    fn poll_links(&mut self, waker: &Waker, f: &mut dyn FnMut(RemoteId, bool)) {
        if let Ok(changes) = self.socket.try_update_peers() {
            for (remote, state) in changes {
                f(remote_id(remote), state == PeerState::Connected);
            }
        }
        // Nothing is left: polling now only registers the waker. A change that slipped in
        // between is taken here (the socket's own peer table then misses it, which only its
        // `connected_peers`/`is_relayed`, unused here, would show).
        let mut cx = Context::from_waker(waker);
        while let Poll::Ready(Some((remote, state))) = Pin::new(&mut self.socket).poll_next(&mut cx)
        {
            f(remote_id(remote), state == PeerState::Connected);
        }
    }

    fn receive(&mut self, waker: &Waker, f: &mut dyn FnMut(RemoteId, Bytes)) {
        for channel in [Channel::Reliable, Channel::Unreliable] {
            // Unreliable packets wake nobody (see `Socket`).
            let waker = match channel {
                Channel::Reliable => waker,
                Channel::Unreliable => Waker::noop(),
            };
            let mut cx = Context::from_waker(waker);
            if let Ok(ch) = self.socket.get_channel_mut(channel as usize) {
                while let Poll::Ready(Some((remote, packet))) =
                    Pin::new(&mut *ch).poll_next(&mut cx)
                {
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

    fn ended(&mut self) -> Option<Result<(), SignalingError>> {
        if self.ended.is_none() {
            match self.done.try_recv() {
                Ok(Some(result)) => self.ended = Some(result),
                Ok(None) => {}
                Err(_) => self.ended = Some(Err(SignalingError::Crashed)),
            }
        }
        self.ended
    }

    fn close(&mut self) {
        self.socket.close();
    }
}

/// Runs after a socket's loop ended, when its WebRTC connections and their buffers have been
/// freed (a re-open after every drop makes this frequent on a flaky network). glibc keeps freed
/// memory in its per-thread arenas, and webrtc-rs allocates on several threads: without this
/// a long-running native app's resident memory grew with every re-open although the memory in
/// use stayed flat (BENCHMARKS.md, "Security: soak and fuzzing"). `malloc_trim` hands the free
/// pages of every arena back to the system. At most one is pending at a time, 2 s after the
/// loop ended (webrtc-rs tears connections down on its own threads); it runs on the ending
/// socket's own thread, never in a frame.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
async fn give_back_freed_memory() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static PENDING: AtomicBool = AtomicBool::new(false);
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    futures_timer::Delay::new(Duration::from_secs(2)).await;
    PENDING.store(false, Ordering::Release);
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: glibc's malloc_trim takes only the allocator's own locks and may be called from
    // any thread at any time.
    unsafe {
        malloc_trim(0);
    }
}

/// Other allocators and platforms give memory back on their own terms.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
async fn give_back_freed_memory() {}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("matchbox message loop panicked: {text}")
}

/// Wakes the native protocol thread.
#[cfg(not(target_arch = "wasm32"))]
struct Unpark(std::thread::Thread);

#[cfg(not(target_arch = "wasm32"))]
impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// The longest the loop sleeps without news: it notices a dropped pump this fast.
const MAX_IDLE: Duration = Duration::from_secs(1);
/// The shortest sleep when the pump asks to run again at once (a deadline that cannot move
/// must not spin the loop).
const MIN_SLEEP: Duration = Duration::from_millis(1);

/// How long the loop sleeps after a pump that returned `next` at `now`.
fn sleep_for(next: Option<Duration>, now: Duration) -> Duration {
    next.map_or(MAX_IDLE, |t| t.saturating_sub(now))
        .clamp(MIN_SLEEP, MAX_IDLE)
}

/// Natively: a thread of its own, parked until a socket has news or the deadline comes.
#[cfg(not(target_arch = "wasm32"))]
fn run_loop(pump: Weak<Mutex<dyn Pump>>, epoch: Instant) {
    let spawned = std::thread::Builder::new()
        .name("peer-message-protocol".into())
        .spawn(move || {
            let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
            loop {
                let Some(pump) = pump.upgrade() else {
                    return;
                };
                let next = crate::io::lock(&pump).pump(epoch.elapsed(), &waker);
                drop(pump);
                std::thread::park_timeout(sleep_for(next, epoch.elapsed()));
            }
        });
    if let Err(e) = spawned {
        bevy::log::error!("could not start the protocol thread: {e}");
    }
}

/// On wasm: a task on the browser's event loop, woken by the sockets' events and a timer.
#[cfg(target_arch = "wasm32")]
fn run_loop(pump: Weak<Mutex<dyn Pump>>, epoch: Instant) {
    struct Loop {
        pump: Weak<Mutex<dyn Pump>>,
        epoch: Instant,
        /// The timer and when it fires. It is replaced only for an earlier deadline: dropping
        /// a timer wakes the task (its channel closes), so replacing it on every poll would
        /// keep the task awake forever.
        timer: Option<(futures_timer::Delay, Duration)>,
    }
    impl Future for Loop {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            loop {
                let Some(pump) = self.pump.upgrade() else {
                    return Poll::Ready(());
                };
                let next = crate::io::lock(&pump).pump(self.epoch.elapsed(), cx.waker());
                drop(pump);
                let now = self.epoch.elapsed();
                let due = now + sleep_for(next, now);
                let replace = self
                    .timer
                    .as_ref()
                    .is_none_or(|(_, at)| due + MIN_SLEEP <= *at);
                if replace {
                    let delay = futures_timer::Delay::new(due.saturating_sub(now));
                    self.timer = Some((delay, due));
                }
                let fired = match self.timer.as_mut() {
                    Some((delay, _)) => Pin::new(delay).poll(cx).is_ready(),
                    None => true,
                };
                if !fired {
                    return Poll::Pending;
                }
                self.timer = None;
            }
        }
    }
    wasm_bindgen_futures::spawn_local(Loop {
        pump,
        epoch,
        timer: None,
    });
}

/// Natively, a thread of its own for each socket's message loop: it must run whatever Bevy's
/// task pools are configured to do (a single-threaded pool would only tick it once a frame),
/// and one socket's work (a re-opened socket setting up connections to everyone) must never
/// hold up another's traffic. webrtc-rs itself runs on smol's threads. (One shared thread for
/// every socket was tried: it did not change memory, and a loaded machine's tests saw a
/// healthy link's heartbeats held up.)
#[cfg(not(target_arch = "wasm32"))]
fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
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
