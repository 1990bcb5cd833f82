//! What the TypeScript layer and the addon must agree on, defined once on
//! this side and exported to it (binding.js, binding.d.ts): event codes,
//! per-message flags, the names of descriptor kinds, the descriptor limit.
use fdpass_core::engine::reader;
use fdpass_core::fd::FdKind;
use napi_derive::napi;

/// Socket event: messages arrived; the callback gets their data, their
/// metadata and, for datagrams, their senders.
#[napi]
pub const EV_MESSAGES: i64 = crate::deliver::EV_MESSAGES;
/// Socket event: this many queued sends reached the kernel.
#[napi]
pub const EV_SENT: i64 = crate::deliver::EV_SENT;
/// Socket event: queued sends failed; the error, then how many.
#[napi]
pub const EV_SEND_FAILED: i64 = crate::deliver::EV_SEND_FAILED;
/// Socket event: the peer closed its side.
#[napi]
pub const EV_END: i64 = crate::deliver::EV_END;
/// Socket or server event: the connection or the watch failed; the error follows.
#[napi]
pub const EV_ERROR: i64 = crate::deliver::EV_ERROR;
/// Server event: connections wait to be accepted.
#[napi]
pub const EV_ACCEPTABLE: i64 = crate::server::EV_ACCEPTABLE;

/// Per-message flag in the metadata: the data was longer than the buffer and was cut.
#[napi]
pub const FLAG_DATA_TRUNCATED: i32 = reader::FLAG_DATA_TRUNCATED;
/// Per-message flag in the metadata: the kernel dropped descriptors (MSG_CTRUNC).
#[napi]
pub const FLAG_FDS_TRUNCATED: i32 = reader::FLAG_FDS_TRUNCATED;

/// The most descriptors one message may carry.
#[napi]
pub const MAX_FDS_PER_MESSAGE: u32 = fdpass_core::MAX_FDS_PER_MESSAGE as u32;

/// The names of the kinds of file a descriptor can refer to, indexed as
/// the stat calls report a kind.
#[napi]
pub fn fd_kinds() -> Vec<String> {
  FdKind::ALL.iter().map(|k| k.as_str().to_string()).collect()
}
