//! Replays the framing decoder's corpus (tests/corpus/*.txt): byte streams
//! with the descriptors that arrive with each read, and what must come out.
//! A new edge case found by the property tests belongs here.

mod common;

use common::{devnull, open_fd_count};
use fdpass_core::frame::FrameDecoder;

fn hex(s: &str) -> Vec<u8> {
  (0..s.len())
    .step_by(2)
    .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
    .collect()
}

type Case = (Vec<(Vec<u8>, usize, bool)>, Vec<[usize; 3]>, Option<String>);

/// One line per read (`read HEX FDS CTRUNC`), per expected frame
/// (`frame LEN FDS LOST`), and the expected error (`error CODE`).
fn parse(text: &str) -> Case {
  let (mut reads, mut frames, mut error) = (Vec::new(), Vec::new(), None);
  for line in text
    .lines()
    .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
  {
    let w: Vec<&str> = line.split_whitespace().collect();
    match w[0] {
      "read" => reads.push((hex(w[1]), w[2].parse().unwrap(), w[3] == "1")),
      "frame" => frames.push([
        w[1].parse().unwrap(),
        w[2].parse().unwrap(),
        w[3].parse().unwrap(),
      ]),
      "error" => error = Some(w[1].to_string()),
      other => panic!("unknown corpus line {other}"),
    }
  }
  (reads, frames, error)
}

#[test]
fn every_corpus_case_decodes_as_recorded_and_leaks_nothing() {
  let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
  let mut cases = 0;
  for entry in std::fs::read_dir(&dir).unwrap() {
    let path = entry.unwrap().path();
    let (reads, expected, error) = parse(&std::fs::read_to_string(&path).unwrap());
    let before = open_fd_count();
    let mut d = FrameDecoder::new(1 << 20);
    let mut got = Vec::new();
    let mut failed = None;
    'outer: for (bytes, nfds, truncated) in &reads {
      d.push(bytes, devnull(*nfds), *truncated);
      loop {
        let (mut out, mut fds) = (Vec::new(), Vec::new());
        match d.next_frame(&mut out, &mut fds) {
          Ok(Some(f)) => got.push([f.len, f.fds, f.fds_lost]),
          Ok(None) => break,
          Err(e) => {
            failed = Some(e.code());
            break 'outer;
          }
        }
      }
    }
    if failed.is_none() {
      failed = d.finish().err().map(|e| e.code());
    }
    drop(d);
    assert_eq!(got, expected, "{}", path.display());
    assert_eq!(failed, error, "{}", path.display());
    assert_eq!(
      open_fd_count(),
      before,
      "{}: descriptors leaked",
      path.display()
    );
    cases += 1;
  }
  assert!(cases >= 10, "the corpus is there");
}
