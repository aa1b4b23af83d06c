//! A stand-alone signaling server (matchbox_signaling, full mesh): what browser builds connect
//! to, since a page cannot run one itself.
//!
//! ```text
//! cargo run --example signaling_server                  # listens on 0.0.0.0:3536
//! cargo run --example signaling_server -- 127.0.0.1:4000
//! ```
//!
//! Apps then use `Signaling::server("ws://ADDR:PORT")`; each room is a path (`/ROOM`).
//! It runs until killed.

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "0.0.0.0:3536".into());
    let Ok(bind) = bind.parse() else {
        eprintln!("usage: signaling_server [ADDRESS:PORT]  (default 0.0.0.0:3536)");
        std::process::exit(2);
    };
    match bevy_peer_message::EmbeddedServer::start(bind) {
        Ok(server) => {
            println!("signaling server listening on {}", server.addr());
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("cannot start the signaling server on {bind}: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {
    // A page cannot listen for connections: the server is native only.
}
