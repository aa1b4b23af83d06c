//! Who a peer is and what it can prove: its key pair ([`Identity`]), the [`PeerId`] derived
//! from the public key, the handshake's signatures over fresh nonces, and the proof of a room
//! secret. Sans-IO and Bevy-free: keys and seeds come in, bytes come out.
//!
//! ## The proof on every link
//!
//! Each side sends a `Hello` carrying its public key and a nonce drawn for this link alone.
//! Once it has the other side's `Hello`, each side sends an `Auth`: an ed25519 signature over
//! the *transcript* (the link's binding, both `Hello`s as sent, the signer's join payload),
//! and, in a private room, an HMAC of the same transcript keyed with the room secret. So:
//! - an `Auth` is only valid on the link it was made for: it covers the verifier's own fresh
//!   nonce, so a captured `Hello` or `Auth` replayed anywhere, now or later, proves nothing;
//! - the *binding* names both ends of the link as the signaling server knows them (the two
//!   sockets' ids), so a room member cannot relay another peer's handshake through its own
//!   link and pass for it;
//! - the secret itself never leaves the app: a joiner without it cannot make the MAC, and the
//!   MAC of one link is worthless on another.
//!
//! One signature and one verification per side per link; nothing per packet (the data channels
//! are already encrypted and authenticated end to end by DTLS).

use crate::core::{
    peer::PeerId,
    wire::{Auth, NONCE_LEN, PUBLIC_KEY_LEN, SECRET_PROOF_LEN, SIGNATURE_LEN},
};
use bytes::Bytes;
use ed25519_dalek::SigningKey;
#[cfg(not(fuzzing))]
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use std::{fmt, sync::Arc};

/// A peer's identity: an ed25519 key pair. Its [`PeerId`] is derived from the public key, so
/// an app that keeps its identity (see [`Identity::to_secret_bytes`]) keeps its id across
/// restarts; by default every app run draws a fresh one.
///
/// ```
/// use bevy_peer_message::prelude::*;
///
/// let identity = Identity::generate();
/// // Persist these 32 bytes (they are a private key: keep them private)...
/// let saved = identity.to_secret_bytes();
/// // ...and the next run is the same peer.
/// let restored = Identity::from_secret_bytes(saved);
/// assert_eq!(restored.peer_id(), identity.peer_id());
/// # let _ = PeerMessagePlugin::default().identity(restored);
/// ```
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
    id: PeerId,
}

impl Identity {
    /// A fresh random identity (from the OS's random source; the browser's
    /// `crypto.getRandomValues` on wasm).
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        if getrandom::fill(&mut seed).is_err() {
            // The OS refused randomness (never seen). Fall back to the id generator's own
            // fallback so the app still runs; such an identity is unique, not secret.
            let (a, b) = (
                crate::core::peer::random_u128(),
                crate::core::peer::random_u128(),
            );
            seed[..16].copy_from_slice(&a.to_le_bytes());
            seed[16..].copy_from_slice(&b.to_le_bytes());
        }
        Self::from_secret_bytes(seed)
    }

    /// The identity whose private key is `bytes` (from [`Identity::to_secret_bytes`]).
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&bytes);
        let id = PublicKey(key.verifying_key().to_bytes()).peer_id();
        Self { key, id }
    }

    /// The private key, to persist the identity. Anyone holding these bytes can be this peer.
    pub fn to_secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The id every peer knows us by: derived from the public key.
    pub fn peer_id(&self) -> PeerId {
        self.id
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// Signs a handshake transcript.
    pub(crate) fn sign(&self, transcript: &Transcript) -> [u8; SIGNATURE_LEN] {
        #[cfg(fuzzing)]
        {
            fuzzing_signature(&self.public_key(), transcript)
        }
        #[cfg(not(fuzzing))]
        {
            self.key.sign(&transcript.0).to_bytes()
        }
    }

    /// This link's nonce number `counter` in incarnation `incarnation`: unpredictable to
    /// anyone without our private key, never repeated within an incarnation.
    pub(crate) fn nonce(&self, incarnation: u64, counter: u64) -> [u8; NONCE_LEN] {
        let digest = Sha256::new()
            .chain_update(b"bevy_peer_message link nonce")
            .chain_update(self.key.to_bytes())
            .chain_update(incarnation.to_le_bytes())
            .chain_update(counter.to_le_bytes())
            .finalize();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&digest[..NONCE_LEN]);
        nonce
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.id)
    }
}

impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.public_key() == other.public_key()
    }
}

impl Eq for Identity {}

/// A peer's public key, as its `Hello` carries it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// The [`PeerId`] of the key's holder: the first 128 bits of a SHA-256 of the key.
    pub fn peer_id(&self) -> PeerId {
        let digest = Sha256::new()
            .chain_update(b"bevy_peer_message peer id")
            .chain_update(self.0)
            .finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        PeerId(u128::from_le_bytes(id))
    }

    /// Whether `signature` is this key's (strict ed25519 verification) over `transcript`.
    pub(crate) fn verify(&self, transcript: &Transcript, signature: &[u8; SIGNATURE_LEN]) -> bool {
        #[cfg(fuzzing)]
        {
            fuzzing_signature(self, transcript) == *signature
        }
        #[cfg(not(fuzzing))]
        {
            VerifyingKey::from_bytes(&self.0).is_ok_and(|key| {
                key.verify_strict(&transcript.0, &Signature::from_bytes(signature))
                    .is_ok()
            })
        }
    }
}

/// Fuzz builds only (`--cfg fuzzing`, set by cargo-fuzz): a stand-in for ed25519 that costs a
/// hash instead of curve arithmetic, so that the fuzz targets spend their time in the room's
/// and session's state machines (curve arithmetic was 90% of a run) rather than in
/// ed25519-dalek, which is fuzzed upstream. Like the real thing, only the holder of the key
/// pair makes it in practice (the fuzzer would have to find a SHA-512 preimage), and every
/// proof still covers the link's transcript, so replays and relays fail the same way.
#[cfg(fuzzing)]
fn fuzzing_signature(key: &PublicKey, transcript: &Transcript) -> [u8; SIGNATURE_LEN] {
    Sha512::new()
        .chain_update(b"fuzzing signature")
        .chain_update(key.0)
        .chain_update(transcript.0)
        .finalize()
        .into()
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.peer_id())
    }
}

/// A private room's shared secret. Joiners prove they know it without sending it; a peer
/// without it (or with another) is refused on both sides with
/// [`PeerErrorKind::RoomSecretMismatch`](crate::PeerErrorKind::RoomSecretMismatch).
///
/// ```
/// use bevy_peer_message::prelude::*;
///
/// let plugin = PeerMessagePlugin::default().room_secret(RoomSecret::new("hunter2"));
/// # let _ = plugin;
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RoomSecret(Arc<[u8]>);

impl RoomSecret {
    /// A secret from any bytes: a password, an invite code, a key from the game's backend.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self(secret.as_ref().into())
    }

    /// The proof that the holder of this secret took part in the handshake `transcript`.
    pub(crate) fn prove(&self, transcript: &Transcript) -> [u8; SECRET_PROOF_LEN] {
        self.mac(transcript).finalize().into_bytes().into()
    }

    /// Whether `proof` is this secret's proof of `transcript` (compared in constant time).
    pub(crate) fn check(&self, transcript: &Transcript, proof: &[u8; SECRET_PROOF_LEN]) -> bool {
        self.mac(transcript).verify_slice(proof).is_ok()
    }

    fn mac(&self, transcript: &Transcript) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        };
        mac.update(b"bevy_peer_message room secret");
        mac.update(&transcript.0);
        mac
    }
}

impl fmt::Debug for RoomSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RoomSecret(..)")
    }
}

/// What one side of a link signs: a digest of the link's binding, the signer's `Hello`, the
/// verifier's `Hello` (each as encoded on the wire) and the signer's join payload.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Transcript([u8; 64]);

impl Transcript {
    /// The transcript of the signer's `Auth` on the link `binding`.
    pub(crate) fn new(
        binding: &LinkBinding,
        signer_hello: &[u8],
        verifier_hello: &[u8],
        payload: &[u8],
    ) -> Self {
        let mut hash = Sha512::new();
        hash.update(b"bevy_peer_message auth v2");
        hash.update(binding.0);
        for part in [signer_hello, verifier_hello, payload] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
        Self(hash.finalize().into())
    }
}

/// The `Auth` that the holder of `identity` sends on the link `binding`, where it sent
/// `own_hello` and received `their_hello` (both as encoded), with its join `payload` and, in a
/// private room, its proof of the room `secret`.
pub fn make_auth(
    identity: &Identity,
    binding: &LinkBinding,
    own_hello: &[u8],
    their_hello: &[u8],
    payload: Bytes,
    secret: Option<&RoomSecret>,
) -> Auth {
    let transcript = Transcript::new(binding, own_hello, their_hello, &payload);
    Auth {
        signature: identity.sign(&transcript),
        secret_proof: secret.map(|s| s.prove(&transcript)),
        payload,
    }
}

/// The two ends of a link as the signaling server named them (our socket's id and the remote
/// socket's), in a canonical order so that both ends compute the same binding.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LinkBinding([u8; 32]);

impl LinkBinding {
    /// The binding of the link between sockets `a` and `b` (in either order).
    pub fn new(a: u128, b: u128) -> Self {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let mut out = [0u8; 32];
        out[..16].copy_from_slice(&low.to_le_bytes());
        out[16..].copy_from_slice(&high.to_le_bytes());
        Self(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(binding: LinkBinding, nonce: u8) -> Transcript {
        Transcript::new(&binding, b"signer hello", &[nonce; 16], b"")
    }

    #[test]
    fn an_identity_round_trips_and_its_id_follows_the_key() {
        let a = Identity::generate();
        let b = Identity::from_secret_bytes(a.to_secret_bytes());
        assert_eq!(a.peer_id(), b.peer_id());
        assert_eq!(a.public_key().peer_id(), a.peer_id());
        assert_ne!(Identity::generate().peer_id(), a.peer_id());
        assert!(!format!("{a:?}").contains(&format!("{:?}", a.to_secret_bytes())));
    }

    #[test]
    fn a_signature_holds_only_for_its_own_transcript_and_key() {
        let me = Identity::from_secret_bytes([1; 32]);
        let other = Identity::from_secret_bytes([2; 32]);
        let binding = LinkBinding::new(10, 20);
        assert_eq!(binding, LinkBinding::new(20, 10), "both ends agree");
        let t = transcript(binding, 7);
        let sig = me.sign(&t);
        assert!(me.public_key().verify(&t, &sig));
        assert!(!other.public_key().verify(&t, &sig), "another key");
        assert!(
            !me.public_key().verify(&transcript(binding, 8), &sig),
            "another nonce"
        );
        let relayed = transcript(LinkBinding::new(10, 30), 7);
        assert!(!me.public_key().verify(&relayed, &sig), "another link");
        assert!(!PublicKey([0xff; 32]).verify(&t, &sig), "not a key at all");
    }

    #[test]
    fn a_secret_proof_needs_the_secret_and_the_transcript() {
        let t = transcript(LinkBinding::new(1, 2), 0);
        let secret = RoomSecret::new("open sesame");
        let proof = secret.prove(&t);
        assert!(secret.check(&t, &proof));
        assert!(!RoomSecret::new("open sesame!").check(&t, &proof));
        assert!(!secret.check(&transcript(LinkBinding::new(1, 2), 1), &proof));
        assert_eq!(format!("{secret:?}"), "RoomSecret(..)");
    }

    #[test]
    fn nonces_differ_per_link_and_incarnation() {
        let me = Identity::from_secret_bytes([3; 32]);
        assert_ne!(me.nonce(1, 0), me.nonce(1, 1));
        assert_ne!(me.nonce(1, 0), me.nonce(2, 0));
        let other = Identity::from_secret_bytes([4; 32]);
        assert_ne!(me.nonce(1, 0), other.nonce(1, 0));
    }
}
