//! `peer-message-signaling`: the signaling server to deploy for a game (matchbox-compatible,
//! full mesh; each room is a path, `ws://HOST:PORT/ROOM`). Health (`/healthz`), readiness
//! (`/readyz`), Prometheus metrics (`/metrics`), limits, and a graceful shutdown on SIGTERM or
//! SIGINT: it stops taking peers (readiness 503) for `--drain-secs`, then closes every
//! websocket and exits. Established game links never depend on it.
//!
//! ```text
//! cargo run --release --features server --bin peer-message-signaling -- \
//!     --bind 0.0.0.0:3536 --max-rooms 10000 --max-peers-per-room 256 \
//!     --max-connections-per-ip 64 --drain-secs 5
//! ```
//!
//! Behind nginx, pass `--behind-proxy true` and have nginx set `X-Real-IP $remote_addr`: the
//! per-address limit then counts players, not the proxy.

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use bevy_peer_message::{EmbeddedServer, ServerLimits};
    use std::{
        net::SocketAddr,
        sync::atomic::{AtomicBool, Ordering},
        time::Duration,
    };

    /// Set by the signal handler (an atomic store is all a handler may do).
    static STOP: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_signal(_: libc::c_int) {
        STOP.store(true, Ordering::SeqCst);
    }

    struct Args {
        bind: SocketAddr,
        limits: ServerLimits,
        drain: Duration,
    }

    const USAGE: &str = "usage: peer-message-signaling [--bind ADDR:PORT] [--max-rooms N] \
                         [--max-peers-per-room N] [--max-connections-per-ip N] \
                         [--max-message-size BYTES] [--drain-secs N] \
                         [--behind-proxy true|false]";

    fn parse() -> Result<Args, String> {
        let mut args = Args {
            bind: SocketAddr::from(([0, 0, 0, 0], 3536)),
            limits: ServerLimits::default(),
            drain: Duration::from_secs(5),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().ok_or(format!("{flag} needs a value"))?;
            let number = || {
                value
                    .parse::<usize>()
                    .map_err(|e| format!("{flag} {value}: {e}"))
            };
            match flag.as_str() {
                "--bind" => {
                    args.bind = value.parse().map_err(|e| format!("--bind {value}: {e}"))?
                }
                "--max-rooms" => args.limits.max_rooms = number()?,
                "--max-peers-per-room" => args.limits.max_peers_per_room = number()?,
                "--max-connections-per-ip" => args.limits.max_connections_per_ip = number()?,
                "--max-message-size" => args.limits.max_message_size = number()?,
                "--drain-secs" => args.drain = Duration::from_secs(number()? as u64),
                "--behind-proxy" => {
                    args.limits.behind_proxy = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(format!("--behind-proxy {value}: true or false")),
                    }
                }
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(args)
    }

    pub fn main() {
        let args = match parse() {
            Ok(args) => args,
            Err(e) => {
                eprintln!("{e}\n{USAGE}");
                std::process::exit(2);
            }
        };
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
            libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        }
        let server = match EmbeddedServer::start_with(args.bind, args.limits) {
            Ok(server) => server,
            Err(e) => {
                eprintln!("cannot start the signaling server on {}: {e}", args.bind);
                std::process::exit(1);
            }
        };
        println!("signaling server listening on {}", server.addr());
        while !STOP.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("draining for {:?}", args.drain);
        server.drain();
        std::thread::sleep(args.drain);
        let metrics = server.metrics();
        let ended = server.stop(Duration::from_secs(10));
        println!(
            "stopped; peers still connected: {}{}",
            metrics.peers,
            if ended {
                ""
            } else {
                " (some websockets did not close in time)"
            }
        );
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::main();
}

#[cfg(target_arch = "wasm32")]
fn main() {
    // A page cannot listen for connections: the server is native only.
}
