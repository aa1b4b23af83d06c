//! ICE servers (STUN and TURN) handed to the WebRTC socket, and coturn's short-lived TURN
//! credentials.

use hmac::{Hmac, Mac};

/// One STUN or TURN server (or several URLs of one provider) and its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:` / `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    pub username: Option<String>,
    /// TURN credential.
    pub credential: Option<String>,
}

impl IceServer {
    /// A STUN server: no credentials.
    pub fn stun<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Self {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            username: None,
            credential: None,
        }
    }

    /// A TURN server with its credentials (see [`TurnCredentials`] for short-lived ones).
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

/// The ICE servers a socket uses for NAT traversal: STUN to learn a public address, TURN to
/// relay when nothing else works. Any number of servers, each with its own credentials (a STUN
/// server and two TURN providers, say). Set with
/// [`PeerMessagePlugin::ice_servers`](crate::PeerMessagePlugin::ice_servers); change for the
/// next connection (fresh TURN credentials) with
/// [`PeerMessage::set_ice_servers`](crate::PeerMessage::set_ice_servers).
///
/// ```
/// # use bevy_peer_message::prelude::*;
/// let lan_only = IceServers::none();
/// assert!(lan_only.servers.is_empty());
/// let deployed = IceServers::stun(["stun:stun.example.org:3478"])
///     .with(IceServer::turn(["turn:eu.turn.example.org:3478"], "user", "secret"))
///     .with(IceServer::turn(["turn:us.relay.example.net:3478"], "other", "password"));
/// assert_eq!(deployed.servers.len(), 3);
/// assert_eq!(deployed.servers[1].username.as_deref(), Some("user"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServers {
    /// The servers, in order of preference.
    pub servers: Vec<IceServer>,
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
            servers: Vec::new(),
        }
    }

    /// One STUN server (its URLs).
    pub fn stun<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Self {
        Self::none().with(IceServer::stun(urls))
    }

    /// One TURN (or STUN and TURN) server with credentials.
    pub fn turn<S: Into<String>>(
        urls: impl IntoIterator<Item = S>,
        username: impl Into<String>,
        credential: impl Into<String>,
    ) -> Self {
        Self::none().with(IceServer::turn(urls, username, credential))
    }

    /// Adds a server.
    pub fn with(mut self, server: IceServer) -> Self {
        self.servers.push(server);
        self
    }

    /// Whether any TURN server is configured (without one, peers behind symmetric NATs cannot
    /// reach each other).
    pub fn has_turn(&self) -> bool {
        self.servers
            .iter()
            .flat_map(|s| &s.urls)
            .any(|u| u.starts_with("turn:") || u.starts_with("turns:"))
    }
}

impl Default for IceServers {
    fn default() -> Self {
        Self::public_stun()
    }
}

/// Short-lived TURN credentials in the scheme of coturn's `use-auth-secret` (the "TURN REST
/// API" draft, draft-uberti-behave-turn-rest): the user name is `<expiry>:<user>` (the expiry
/// in Unix seconds), the password is base64(HMAC-SHA1(shared secret, user name)).
///
/// Build them on your game's backend, which shares the secret with coturn
/// (`turnserver --use-auth-secret --static-auth-secret <secret>`), and hand them to the
/// player's game, which never sees the secret: a leaked credential works until it expires and
/// nowhere else.
///
/// ```
/// # use bevy_peer_message::prelude::*;
/// // On the backend, for player 42, valid for one hour from `now` (Unix seconds):
/// let now = 1_700_000_000;
/// let creds = TurnCredentials::rest(b"coturn shared secret", "player42", now + 3600);
/// assert_eq!(creds.username, "1700003600:player42");
/// // In the game, with what the backend sent:
/// let ice = IceServers::stun(["stun:turn.example.org:3478"]).with(IceServer::turn(
///     ["turn:turn.example.org:3478"],
///     creds.username,
///     creds.credential,
/// ));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    /// `<expiry>:<user>`.
    pub username: String,
    /// base64(HMAC-SHA1(secret, username)).
    pub credential: String,
}

impl TurnCredentials {
    /// Credentials for `user`, valid until `expires_at` (Unix seconds), signed with the secret
    /// shared with coturn.
    pub fn rest(shared_secret: &[u8], user: &str, expires_at: u64) -> Self {
        use base64::Engine;
        let username = format!("{expires_at}:{user}");
        let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(shared_secret)
            .expect("HMAC takes a key of any length");
        mac.update(username.as_bytes());
        let credential =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        Self {
            username,
            credential,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same computation as coturn's `turnutils_uclient`/the REST API draft; checked here
    /// against a value computed independently:
    /// `printf '1700003600:player42' | openssl dgst -sha1 -hmac 'coturn shared secret' -binary | base64`.
    #[test]
    fn rest_credentials_match_coturns_scheme() {
        let creds = TurnCredentials::rest(b"coturn shared secret", "player42", 1_700_003_600);
        assert_eq!(creds.username, "1700003600:player42");
        assert_eq!(creds.credential, "iMhIK1qujdzsMP6AJ5CpaEzLK38=");
    }

    #[test]
    fn turn_is_recognised_among_several_servers() {
        assert!(!IceServers::public_stun().has_turn());
        assert!(!IceServers::none().has_turn());
        let ice =
            IceServers::stun(["stun:a:3478"]).with(IceServer::turn(["turns:b:5349"], "u", "p"));
        assert!(ice.has_turn());
    }
}
