//! fdpass's stream framing: message boundaries and per-message descriptors
//! on SOCK_STREAM, where the kernel keeps neither.
//!
//! Wire format, one frame per message:
//!
//! ```text
//! offset  size  field
//! 0       1     version (1)
//! 1       1     flags (0; other values are reserved and refused)
//! 2       2     fd count, big-endian (0..=253)
//! 4       4     payload length, big-endian
//! 8       n     payload
//! ```
//!
//! A frame's descriptors travel as SCM_RIGHTS on the `sendmsg` that carries
//! the frame's first byte. Several frames may share one `sendmsg`; their
//! descriptors are then concatenated in frame order. The kernel delivers
//! ancillary data with the first byte of its range and never merges two
//! ranges that carry descriptors, so every descriptor arrives with or before
//! the header that declares it (before it, when one sendmsg carried several
//! frames and the kernel split it across reads). The decoder hands out
//! descriptors in arrival order to the frames that start at or after them.

use crate::error::{Error, Result};
use crate::MAX_FDS_PER_MESSAGE;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;

pub const FRAME_HEADER_LEN: usize = 8;
pub const FRAME_VERSION: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
  pub fds: u16,
  pub len: u32,
}

impl FrameHeader {
  pub fn encode(self) -> [u8; FRAME_HEADER_LEN] {
    let f = self.fds.to_be_bytes();
    let l = self.len.to_be_bytes();
    [FRAME_VERSION, 0, f[0], f[1], l[0], l[1], l[2], l[3]]
  }

  pub fn decode(b: &[u8; FRAME_HEADER_LEN]) -> Result<Self> {
    if b[0] != FRAME_VERSION {
      return Err(Error::Protocol {
        reason: format!(
          "frame version {} is unknown (expected {FRAME_VERSION}); if the peer does not speak fdpass framing, open the socket with raw: true",
          b[0]
        ),
      });
    }
    if b[1] != 0 {
      return Err(Error::Protocol {
        reason: format!("reserved frame flags {:#04x} are set", b[1]),
      });
    }
    let fds = u16::from_be_bytes([b[2], b[3]]);
    if fds as usize > MAX_FDS_PER_MESSAGE {
      return Err(Error::Protocol {
        reason: format!("a frame declares {fds} descriptors; the limit is {MAX_FDS_PER_MESSAGE}"),
      });
    }
    Ok(FrameHeader {
      fds,
      len: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
    })
  }
}

/// Descriptors that arrived with one `recvmsg` whose bytes began at `start`.
struct FdBatch {
  start: u64,
  fds: VecDeque<OwnedFd>,
  truncated: bool,
}

/// A decoded frame: its payload was appended to the caller's buffer and its
/// descriptors to the caller's vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedFrame {
  pub len: usize,
  pub fds: usize,
  /// Declared descriptors that the kernel dropped (MSG_CTRUNC).
  pub fds_lost: usize,
}

/// Turns the bytes and descriptors of successive `recvmsg` calls back into frames.
pub struct FrameDecoder {
  buf: Vec<u8>,
  /// Read position in `buf`.
  pos: usize,
  /// Stream offset of `buf[0]`.
  base: u64,
  batches: VecDeque<FdBatch>,
  max_len: usize,
  /// A truncated read was seen and no whole sendmsg's descriptors since.
  truncation_pending: bool,
}

/// Descriptors may arrive ahead of their frames (several frames share one
/// sendmsg); more than two sendmsgs' worth is a misbehaving peer.
const MAX_UNCLAIMED_FDS: usize = 2 * MAX_FDS_PER_MESSAGE;

impl FrameDecoder {
  pub fn new(max_len: usize) -> Self {
    FrameDecoder {
      buf: Vec::new(),
      pos: 0,
      base: 0,
      batches: VecDeque::new(),
      max_len,
      truncation_pending: false,
    }
  }

  /// The buffer to receive into; call `commit` after the read.
  pub fn buffer(&mut self) -> &mut Vec<u8> {
    if self.pos > 0 && (self.pos == self.buf.len() || self.pos >= 64 * 1024) {
      self.buf.drain(..self.pos);
      self.base += self.pos as u64;
      self.pos = 0;
    }
    &mut self.buf
  }

  /// Record the descriptors of the read that just appended `bytes` bytes.
  pub fn commit(&mut self, bytes: usize, fds: impl IntoIterator<Item = OwnedFd>, truncated: bool) {
    let end = self.base + self.buf.len() as u64;
    let fds: VecDeque<OwnedFd> = fds.into_iter().collect();
    if !fds.is_empty() || truncated {
      self.batches.push_back(FdBatch {
        start: end - bytes as u64,
        fds,
        truncated,
      });
    }
  }

  /// Feed bytes that were read elsewhere (tests, fuzzing).
  pub fn push(&mut self, data: &[u8], fds: Vec<OwnedFd>, truncated: bool) {
    self.buffer().extend_from_slice(data);
    self.commit(data.len(), fds, truncated);
  }

  /// Bytes buffered but not yet decoded, and descriptors not yet matched.
  pub fn pending(&self) -> (usize, usize) {
    (self.buf.len() - self.pos, self.unclaimed())
  }

  /// Is a whole frame (or a malformed header, which is an error to report) buffered?
  pub fn has_frame(&self) -> bool {
    let avail = self.buf.len() - self.pos;
    if avail < FRAME_HEADER_LEN {
      return false;
    }
    let mut h = [0u8; FRAME_HEADER_LEN];
    h.copy_from_slice(&self.buf[self.pos..self.pos + FRAME_HEADER_LEN]);
    match FrameHeader::decode(&h) {
      Ok(header) => {
        (header.len as usize) > self.max_len || avail >= FRAME_HEADER_LEN + header.len as usize
      }
      Err(_) => true,
    }
  }

  /// Decode the next complete frame, if there is one.
  pub fn next_frame(
    &mut self,
    out: &mut Vec<u8>,
    out_fds: &mut Vec<OwnedFd>,
  ) -> Result<Option<DecodedFrame>> {
    let avail = self.buf.len() - self.pos;
    if avail < FRAME_HEADER_LEN {
      return Ok(None);
    }
    let mut h = [0u8; FRAME_HEADER_LEN];
    h.copy_from_slice(&self.buf[self.pos..self.pos + FRAME_HEADER_LEN]);
    let header = FrameHeader::decode(&h)?;
    let len = header.len as usize;
    if len > self.max_len {
      return Err(Error::MessageTooLarge {
        size: len,
        max: self.max_len,
      });
    }
    if avail < FRAME_HEADER_LEN + len {
      return Ok(None);
    }
    let start = self.base + self.pos as u64;
    let (got, lost) = self.take_fds(start, header.fds as usize, out_fds)?;
    out
      .extend_from_slice(&self.buf[self.pos + FRAME_HEADER_LEN..self.pos + FRAME_HEADER_LEN + len]);
    self.pos += FRAME_HEADER_LEN + len;
    Ok(Some(DecodedFrame {
      len,
      fds: got,
      fds_lost: lost,
    }))
  }

  /// Match `want` descriptors to the frame that starts at stream offset
  /// `start`: the oldest unclaimed ones that arrived at or before it.
  fn take_fds(
    &mut self,
    start: u64,
    want: usize,
    out: &mut Vec<OwnedFd>,
  ) -> Result<(usize, usize)> {
    let mut got = 0;
    while let Some(b) = self.batches.front_mut() {
      if b.start > start {
        break; // arrived after this frame began: a later frame's
      }
      if b.truncated {
        // Lost descriptors may belong to any frame the truncated sendmsg carried.
        self.truncation_pending = true;
      } else if got == 0 && want > 0 && !b.fds.is_empty() {
        self.truncation_pending = false; // a new, whole sendmsg
      }
      let n = (want - got).min(b.fds.len());
      out.extend(b.fds.drain(..n));
      got += n;
      if !b.fds.is_empty() {
        break;
      }
      self.batches.pop_front();
      if got == want {
        break;
      }
    }
    if got < want {
      if self.truncation_pending {
        return Ok((got, want - got));
      }
      return Err(Error::Protocol {
        reason: format!("a frame declares {want} descriptors but {got} arrived with it"),
      });
    }
    if self.unclaimed() > MAX_UNCLAIMED_FDS {
      return Err(Error::Protocol {
        reason: format!(
          "the peer sent more than {MAX_UNCLAIMED_FDS} descriptors ahead of the frames that declare them"
        ),
      });
    }
    Ok((got, 0))
  }

  fn unclaimed(&self) -> usize {
    self.batches.iter().map(|b| b.fds.len()).sum()
  }

  /// At end of stream: an incomplete frame, or descriptors never claimed,
  /// mean the peer stopped mid-message. Everything buffered is dropped (closed).
  pub fn finish(&mut self) -> Result<()> {
    let (bytes, fds) = self.pending();
    self.buf.clear();
    self.pos = 0;
    self.batches.clear();
    if bytes > 0 || fds > 0 {
      return Err(Error::Protocol {
        reason: format!(
          "the peer closed the connection in the middle of a message; {bytes} bytes and {fds} descriptors were discarded (closed)"
        ),
      });
    }
    Ok(())
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn frame(payload: &[u8], fds: u16) -> Vec<u8> {
    let mut v = FrameHeader {
      fds,
      len: payload.len() as u32,
    }
    .encode()
    .to_vec();
    v.extend_from_slice(payload);
    v
  }

  fn devnull(n: usize) -> Vec<OwnedFd> {
    (0..n)
      .map(|_| std::fs::File::open("/dev/null").unwrap().into())
      .collect()
  }

  #[test]
  fn has_frame_tells_whole_frames_from_partial_ones() {
    let mut d = FrameDecoder::new(1024);
    let f = frame(b"abc", 0);
    d.push(&f[..5], vec![], false);
    assert!(!d.has_frame());
    d.push(&f[5..], vec![], false);
    assert!(d.has_frame());
    let (mut out, mut fds) = (Vec::new(), Vec::new());
    d.next_frame(&mut out, &mut fds).unwrap();
    assert!(!d.has_frame());
  }

  #[test]
  fn header_round_trips() {
    let h = FrameHeader {
      fds: 253,
      len: 0x0102_0304,
    };
    assert_eq!(FrameHeader::decode(&h.encode()).unwrap(), h);
    assert_eq!(h.encode(), [1, 0, 0, 253, 1, 2, 3, 4]);
  }

  #[test]
  fn frames_split_at_every_byte_come_out_whole() {
    let mut stream = frame(b"hello", 1);
    stream.extend(frame(b"", 0));
    stream.extend(frame(b"world!", 2));
    for split in 0..stream.len() {
      let mut d = FrameDecoder::new(1024);
      let (mut out, mut fds) = (Vec::new(), Vec::new());
      // A frame's fds come with the read that holds its first byte.
      let third = 2 * FRAME_HEADER_LEN + 5;
      let in_a = usize::from(split > 0) + if split > third { 2 } else { 0 };
      let (a, b) = stream.split_at(split);
      d.push(a, devnull(in_a), false);
      d.push(b, devnull(3 - in_a), false);
      let mut frames = vec![];
      while let Some(f) = d.next_frame(&mut out, &mut fds).unwrap() {
        frames.push(f);
      }
      assert_eq!(frames.len(), 3, "split at {split}");
      assert_eq!(out, b"helloworld!");
      assert_eq!(fds.len(), 3);
      assert_eq!(
        frames[2],
        DecodedFrame {
          len: 6,
          fds: 2,
          fds_lost: 0
        }
      );
      d.finish().unwrap();
    }
  }

  #[test]
  fn truncation_reports_lost_descriptors_and_keeps_going() {
    let mut d = FrameDecoder::new(1024);
    let mut stream = frame(b"a", 3);
    stream.extend(frame(b"b", 0));
    d.push(&stream, devnull(1), true);
    let (mut out, mut fds) = (Vec::new(), Vec::new());
    assert_eq!(
      d.next_frame(&mut out, &mut fds).unwrap(),
      Some(DecodedFrame {
        len: 1,
        fds: 1,
        fds_lost: 2
      })
    );
    assert_eq!(
      d.next_frame(&mut out, &mut fds).unwrap(),
      Some(DecodedFrame {
        len: 1,
        fds: 0,
        fds_lost: 0
      })
    );
  }

  #[test]
  fn undeclared_descriptors_are_reported_at_the_end() {
    let mut d = FrameDecoder::new(1024);
    d.push(&frame(b"a", 0), devnull(1), false);
    d.push(&frame(b"b", 0), vec![], false);
    let (mut out, mut fds) = (Vec::new(), Vec::new());
    assert!(d.next_frame(&mut out, &mut fds).unwrap().is_some());
    assert!(d.next_frame(&mut out, &mut fds).unwrap().is_some());
    assert!(fds.is_empty(), "no frame claimed it");
    assert_eq!(d.finish().unwrap_err().code(), "ERR_FDPASS_PROTOCOL");
  }

  #[test]
  fn descriptors_may_arrive_before_their_frame() {
    // One sendmsg carried frames a and b with b's fd; the kernel split it
    // so that b starts in the second read.
    let mut stream = frame(b"a", 0);
    let second = frame(b"b", 1);
    stream.extend_from_slice(&second[..3]);
    let mut d = FrameDecoder::new(1024);
    d.push(&stream, devnull(1), false);
    d.push(&second[3..], vec![], false);
    let (mut out, mut fds) = (Vec::new(), Vec::new());
    assert_eq!(d.next_frame(&mut out, &mut fds).unwrap().unwrap().fds, 0);
    assert_eq!(d.next_frame(&mut out, &mut fds).unwrap().unwrap().fds, 1);
    d.finish().unwrap();
  }

  #[test]
  fn too_many_early_descriptors_are_a_protocol_error() {
    let mut d = FrameDecoder::new(1024);
    d.push(&frame(b"a", 0), devnull(MAX_UNCLAIMED_FDS + 1), false);
    let (mut out, mut fds) = (Vec::new(), Vec::new());
    assert_eq!(
      d.next_frame(&mut out, &mut fds).unwrap_err().code(),
      "ERR_FDPASS_PROTOCOL"
    );
  }

  #[test]
  fn a_missing_descriptor_is_a_protocol_error() {
    let mut d = FrameDecoder::new(1024);
    d.push(&frame(b"a", 1), vec![], false);
    let (mut out, mut fds) = (Vec::new(), Vec::new());
    assert_eq!(
      d.next_frame(&mut out, &mut fds).unwrap_err().code(),
      "ERR_FDPASS_PROTOCOL"
    );
  }

  #[test]
  fn bad_headers_are_refused() {
    let (mut out, mut fds) = (Vec::new(), Vec::new());
    for bad in [
      [2u8, 0, 0, 0, 0, 0, 0, 0],
      [1, 1, 0, 0, 0, 0, 0, 0],
      [1, 0, 0, 254, 0, 0, 0, 0],
    ] {
      let mut d = FrameDecoder::new(1024);
      d.push(&bad, vec![], false);
      assert_eq!(
        d.next_frame(&mut out, &mut fds).unwrap_err().code(),
        "ERR_FDPASS_PROTOCOL"
      );
    }
    let mut d = FrameDecoder::new(4);
    d.push(&frame(b"12345", 0), vec![], false);
    assert_eq!(
      d.next_frame(&mut out, &mut fds).unwrap_err().code(),
      "ERR_FDPASS_MESSAGE_TOO_LARGE"
    );
  }

  #[test]
  fn eof_mid_frame_discards_and_reports() {
    let mut d = FrameDecoder::new(1024);
    d.push(&frame(b"hello", 1)[..6], devnull(1), false);
    let (mut out, mut fds) = (Vec::new(), Vec::new());
    assert_eq!(d.next_frame(&mut out, &mut fds).unwrap(), None);
    let err = d.finish().unwrap_err();
    assert!(err.to_string().contains("1 descriptors"), "{err}");
    assert_eq!(d.pending(), (0, 0));
  }
}
