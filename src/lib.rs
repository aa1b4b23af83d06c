pub mod codec;
pub mod error;
pub mod peer;
pub mod room;
pub mod session;
pub mod wire;
