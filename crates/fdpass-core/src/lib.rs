//! The core of fdpass: Unix domain sockets that carry open file descriptors
//! (`SCM_RIGHTS`), with every trap of that mechanism handled in one place:
//! the syscalls, and the connection engine (`engine`: send queue, batch
//! reader, blocking calls) on top of them. It knows nothing about
//! JavaScript; the napi binding adapts it to Node-API and an event loop.
//!
//! Ownership rule: a descriptor that arrives is an `OwnedFd` from the moment
//! `recvmsg` returns, so an error on any later path closes it instead of
//! leaking it.

pub mod address;
pub mod engine;
pub mod error;
pub mod fd;
pub mod frame;
pub mod listener;
pub mod pidfd;
pub mod platform;
pub mod recv;
pub mod send;
pub mod shared_counts;
pub mod socket;

pub use address::SocketAddress;
pub use error::{Error, Result};
pub use frame::{FrameDecoder, FrameHeader, FRAME_HEADER_LEN};
pub use recv::{ControlBuffer, Received};
pub use socket::{PeerCredentials, SocketType};

/// The most descriptors one message may carry. Linux refuses more with
/// EINVAL (`SCM_MAX_FD`); fdpass uses the same limit on macOS so that a
/// program behaves the same on both.
pub const MAX_FDS_PER_MESSAGE: usize = 253;
