//! ICE servers (STUN and TURN) handed to the WebRTC socket.

/// ICE servers for NAT traversal: STUN to learn a public address, TURN to relay when nothing
/// else works.
///
/// ```
/// # use bevy_peer_message::prelude::*;
/// let lan_only = IceServers::none();
/// let relayed = IceServers::turn(["turn:turn.example.org:3478"], "user", "secret");
/// assert!(lan_only.urls.is_empty());
/// assert_eq!(relayed.username.as_deref(), Some("user"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServers {
    /// `stun:` / `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    pub username: Option<String>,
    /// TURN credential.
    pub credential: Option<String>,
}

impl IceServers {
    /// Google's public STUN servers, matchbox's own default.
    pub fn public_stun() -> Self {
        Self::stun([
            "stun:stun.l.google.com:19302",
            "stun:stun1.l.google.com:19302",
        ])
    }

    /// No ICE servers: host candidates only (same LAN, or tests).
    pub fn none() -> Self {
        Self {
            urls: Vec::new(),
            username: None,
            credential: None,
        }
    }

    /// Your own STUN servers.
    pub fn stun<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Self {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            username: None,
            credential: None,
        }
    }

    /// TURN (and/or STUN) servers with credentials.
    pub fn turn<S: Into<String>>(
        urls: impl IntoIterator<Item = S>,
        username: impl Into<String>,
        credential: impl Into<String>,
    ) -> Self {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            username: Some(username.into()),
            credential: Some(credential.into()),
        }
    }
}

impl Default for IceServers {
    fn default() -> Self {
        Self::public_stun()
    }
}
