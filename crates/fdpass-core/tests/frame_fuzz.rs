//! Property tests of the stream framing decoder: arbitrary byte streams with
//! descriptors arriving at arbitrary points never panic, never leak a
//! descriptor, and fail cleanly; valid streams split anywhere decode exactly.
//! Alone in its own binary so that counting /proc/self/fd is exact.

mod common;

use common::{devnull, open_fd_count};
use fdpass_core::frame::{FrameDecoder, FrameHeader, FRAME_HEADER_LEN};
use proptest::prelude::*;

/// The two properties run on parallel threads; fd counting needs them apart.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Feed reads into a decoder, draining frames as a socket would; returns
/// the frames (payload, fds) or the first error.
fn run(
  reads: &[(Vec<u8>, usize, bool)],
  max: usize,
) -> Result<Vec<(Vec<u8>, usize, usize)>, String> {
  let mut d = FrameDecoder::new(max);
  let mut frames = Vec::new();
  for (bytes, nfds, truncated) in reads {
    d.push(bytes, devnull(*nfds), *truncated);
    loop {
      let (mut out, mut fds) = (Vec::new(), Vec::new());
      match d.next_frame(&mut out, &mut fds) {
        Ok(Some(f)) => {
          assert_eq!(f.len, out.len());
          assert_eq!(f.fds, fds.len());
          frames.push((out, f.fds, f.fds_lost));
        }
        Ok(None) => break,
        Err(e) => return Err(e.code()),
      }
    }
  }
  d.finish().map_err(|e| e.code())?;
  Ok(frames)
}

proptest! {
  #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

  #[test]
  fn arbitrary_input_never_panics_or_leaks(
    reads in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..64), 0usize..4, any::<bool>()), 0..12),
    max in 0usize..256,
  ) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = open_fd_count();
    let r = run(&reads, max);
    if let Err(code) = &r {
      prop_assert!(["ERR_FDPASS_PROTOCOL", "ERR_FDPASS_MESSAGE_TOO_LARGE"].contains(&code.as_str()), "{}", code);
    }
    prop_assert_eq!(open_fd_count(), before, "every descriptor is closed");
  }

  #[test]
  fn valid_streams_split_anywhere_decode_exactly(
    frames in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..40), 0usize..4, any::<bool>()), 1..10),
    cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
  ) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = open_fd_count();
    // Serialise, remembering where each frame starts.
    // Frames whose flag is false share the previous frame's sendmsg: their
    // descriptors travel with that sendmsg's first byte.
    let mut stream = Vec::new();
    let mut starts: Vec<(usize, usize)> = Vec::new();
    for (i, (payload, nfds, own_sendmsg)) in frames.iter().enumerate() {
      if i == 0 || *own_sendmsg {
        starts.push((stream.len(), *nfds));
      } else {
        starts.last_mut().unwrap().1 += nfds;
      }
      stream.extend_from_slice(&FrameHeader { fds: *nfds as u16, len: payload.len() as u32 }.encode());
      stream.extend_from_slice(payload);
    }
    // Cut into reads; a frame's fds arrive with the read holding its first byte.
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
    points.push(0);
    points.push(stream.len());
    points.sort_unstable();
    points.dedup();
    let mut reads = Vec::new();
    for w in points.windows(2) {
      let (a, b) = (w[0], w[1]);
      let nfds: usize = starts.iter().filter(|(s, _)| *s >= a && *s < b).map(|(_, n)| n).sum();
      reads.push((stream[a..b].to_vec(), nfds, false));
    }
    let out = run(&reads, 1024).expect("a valid stream decodes");
    prop_assert_eq!(out.len(), frames.len());
    for ((payload, nfds, _), (got, got_fds, lost)) in frames.iter().zip(out.iter()) {
      prop_assert_eq!(payload, got);
      prop_assert_eq!(nfds, got_fds);
      prop_assert_eq!(*lost, 0);
    }
    prop_assert_eq!(open_fd_count(), before);
    let _ = FRAME_HEADER_LEN;
  }
}
