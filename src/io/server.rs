//! The embedded signaling server: a `matchbox_signaling` full-mesh server that a native host
//! runs in-process, on a small tokio runtime in a thread of its own. It only relays WebRTC
//! handshakes; game traffic never goes through it.

use crate::core::error::ServerError;
use bevy::prelude::*;
use matchbox_signaling::SignalingServer;
use std::{net::SocketAddr, thread::JoinHandle};

/// A running embedded server; stops when dropped.
#[derive(Debug)]
pub struct EmbeddedServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedServer {
    /// Binds `bind` now (so errors surface at once) and serves in the background.
    pub fn start(bind: SocketAddr) -> Result<Self, ServerError> {
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel();
        let mut server = SignalingServer::full_mesh_builder(bind)
            .with_shutdown(shutdown_rx)
            .build();
        let addr = server.bind().map_err(|e| {
            error!("embedded signaling server: cannot listen on {bind}: {e}");
            ServerError::Bind { addr: bind }
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                error!("embedded signaling server: cannot start a runtime: {e}");
                ServerError::Start { kind: e.kind() }
            })?;
        let thread = std::thread::Builder::new()
            .name("peer-message-signaling".into())
            .spawn(move || {
                if let Err(e) = runtime.block_on(server.serve()) {
                    error!("embedded signaling server stopped: {e}");
                }
            })
            .map_err(|e| {
                error!("embedded signaling server: cannot start its thread: {e}");
                ServerError::Start { kind: e.kind() }
            })?;
        info!("embedded signaling server listening on {addr}");
        Ok(Self {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Don't block the frame on the server's graceful shutdown.
        drop(self.thread.take());
    }
}
