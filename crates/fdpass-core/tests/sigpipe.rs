//! A peer that went away is EPIPE, never a SIGPIPE that kills the process.
//! The Rust runtime ignores SIGPIPE, so this binary restores the default
//! disposition first, as a Node process has it for native code.

mod common;
use common::*;
use fdpass_core::socket::socketpair;
use fdpass_core::SocketType;

#[test]
fn sending_to_a_closed_peer_returns_epipe_with_sigpipe_at_its_default() {
  // SAFETY: restoring the default handler touches no Rust state.
  unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
  // A datagram socketpair (macOS's MESSAGE) reports a gone peer differently.
  let types = [
    Some(SocketType::Stream),
    cfg!(target_os = "linux").then_some(SocketType::SeqPacket),
  ];
  for ty in types.into_iter().flatten() {
    let (a, b) = socketpair(ty).unwrap();
    drop(b);
    let err = send(&a, ty, b"x", &[]).unwrap_err();
    assert_eq!(err.code(), "EPIPE", "{ty:?}");
  }
}
