#!/usr/bin/env bash
# Builds the Go and C peers and runs every sender against every receiver
# (python/go/c × python/go/c) on stream (framed and raw), seqpacket and
# dgram, checking that each receiver got the sender's files (dev, ino,
# content). Also: the sender listening (stream), frames coalesced into one
# sendmsg (stream), `echo` for each peer, and that each receiver rejects
# broken streams (exit non-zero, with a message). Exits non-zero on any failure.
#
#   examples/peers/selftest.sh            N=50 messages of K=3 fds
#   N=200 K=10 examples/peers/selftest.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=$here/.build
N=${N:-50}
K=${K:-3}
TIMEOUT=${TIMEOUT:-60}
peers=(python go c)

mkdir -p "$build"
echo "building: go -> .build/fdpass-peer-go, c -> .build/fdpass_peer" >&2
(cd "$here/go" && go build -o "$build/fdpass-peer-go" ./cmd/fdpass-peer)
cc -O2 -Wall -Wextra -Werror -o "$build/fdpass_peer" "$here/c/fdpass_peer.c"

work=$(mktemp -d /tmp/fdpass-selftest-XXXXXX)
trap 'rm -rf "$work"' EXIT

cmd_of() { # sets CMD to the command line of peer $1
  case $1 in
    python) CMD=(python3 "$here/python/fdpass_peer.py") ;;
    go) CMD=("$build/fdpass-peer-go") ;;
    c) CMD=("$build/fdpass_peer") ;;
    py-coalesce) CMD=(python3 "$work/coalesce.py") ;;
    py-echo-driver) CMD=(python3 "$work/echo_driver.py") ;;
  esac
}

type_args() { # mode -> --type ... [--raw]
  case $1 in
    stream|stream-listen|stream-coalesced) echo --type stream ;;
    stream-raw) echo --type stream --raw ;;
    seqpacket) echo --type seqpacket ;;
    dgram) echo --type dgram ;;
  esac
}

# A sender that packs 1..5 frames into each sendmsg (their fds concatenated,
# so later frames' fds arrive ahead of them) and sometimes splits a sendmsg's
# bytes in two, the second part without fds: what fdpass does when sends
# queue up behind a full socket buffer.
cat >"$work/coalesce.py" <<'EOF'
import os, socket, sys, tempfile
sys.path.insert(0, sys.argv[1])
from fdpass_peer import HEADER, describe, emit
path, n, k = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
tmp = tempfile.mkdtemp()
i, group = 0, 1
while i < n:
    buf, fds = b'', []
    for i in range(i, min(n, i + group)):
        mine = []
        for j in range(k):
            p = os.path.join(tmp, f'file-{i}-{j}')
            with open(p, 'w') as f:
                f.write(f'file-{i}-{j}')
            mine.append(os.open(p, os.O_RDONLY))
        data = f'msg-{i}'.encode()
        emit(data, [describe(fd) for fd in mine])
        buf += HEADER.pack(1, 0, len(mine), len(data)) + data
        fds += mine
    i += 1
    cut = len(buf) if group % 2 else len(buf) // 2 + 3  # split odd groups' sendmsg
    sent = socket.send_fds(s, [buf[:cut]], fds) if fds else s.send(buf[:cut])
    s.sendall(buf[sent:])
    for fd in fds:
        os.close(fd)
    group = group % 5 + 1
s.close()
EOF

# Drives an `echo --listen` peer: sends N messages of K fds one at a time and
# checks that each comes back with the same files.
cat >"$work/echo_driver.py" <<'EOF'
import os, socket, sys, tempfile
sys.path.insert(0, sys.argv[1])
from fdpass_peer import FrameReader, send_frame, MAX_FDS
mode, path, n, k = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
kind = socket.SOCK_SEQPACKET if mode == 'seqpacket' else socket.SOCK_DGRAM if mode == 'dgram' else socket.SOCK_STREAM
s = socket.socket(socket.AF_UNIX, kind)
s.settimeout(10)
if mode == 'dgram':
    s.bind('')
s.connect(path)
framed = mode == 'stream'
reader = FrameReader(s)
tmp = tempfile.mkdtemp()
for i in range(n):
    fds = []
    for j in range(k):
        p = os.path.join(tmp, f'file-{i}-{j}')
        with open(p, 'w') as f:
            f.write(f'file-{i}-{j}')
        fds.append(os.open(p, os.O_RDONLY))
    data = f'msg-{i}'.encode()
    if framed:
        send_frame(s, data, fds)
        got = reader.recv_frame()
        if got is None:
            sys.exit(f'message {i}: the echo peer closed')
        back, back_fds = got
    else:
        socket.send_fds(s, [data], fds)
        back, back_fds, _, _ = socket.recv_fds(s, 65536, MAX_FDS)
    want = [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in fds]
    have = [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in back_fds]
    if back != data or have != want:
        sys.exit(f'message {i}: sent {data!r} {want}, got back {back!r} {have}')
    for fd in fds + back_fds:
        os.close(fd)
print('ok')
EOF

# Sends one broken stream; the receiver must exit non-zero with a message.
cat >"$work/bad_sender.py" <<'EOF'
import os, socket, struct, sys, time
case, path = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
fd = os.open('/dev/null', os.O_RDONLY)
rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack('i', fd))]
frame = lambda v, fl, n, data: struct.pack('>BBHI', v, fl, n, len(data)) + data
if case == 'version':
    s.sendall(frame(2, 0, 0, b'msg-0'))
elif case == 'flags':
    s.sendall(frame(1, 4, 0, b'msg-0'))
elif case == 'missing-fds':  # declares 1 fd, sends none
    s.sendall(frame(1, 0, 1, b'msg-0'))
elif case == 'late-fds':  # the fd comes after the frame's first byte
    f = frame(1, 0, 1, b'msg-0')
    s.sendall(f[:4])
    time.sleep(0.2)  # let the receiver read the first part alone
    s.sendmsg([f[4:]], rights)
elif case == 'closed-mid-frame':
    s.sendall(frame(1, 0, 0, b'msg-0')[:6])
elif case == 'extra-fds':  # an fd no frame declares
    s.sendmsg([frame(1, 0, 0, b'msg-0')], rights)
s.close()
EOF

cat >"$work/verify.py" <<'EOF'
import json, sys
sent, got, n, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def lines(p):
    with open(p) as f:
        return [json.loads(l) for l in f if l.strip()]
s, r = lines(sent), lines(got)
if len(s) != n:
    sys.exit(f'the sender printed {len(s)} messages, not {n}')
if len(r) != n:
    sys.exit(f'the receiver printed {len(r)} messages, not {n}')
for i, (a, b) in enumerate(zip(s, r)):
    if b['data'] != a['data'] or a['data'] != f'msg-{i}':
        sys.exit(f'message {i}: data {b["data"]!r}, sent {a["data"]!r}')
    if len(a['fds']) != k or len(b['fds']) != k:
        sys.exit(f'message {i}: {len(b["fds"])} fds arrived, {len(a["fds"])} sent, {k} wanted')
    for j, (x, y) in enumerate(zip(a['fds'], b['fds'])):
        if (x['dev'], x['ino']) != (y['dev'], y['ino']):
            sys.exit(f'message {i} fd {j}: received {y}, sent {x}')
        if y.get('content') != f'file-{i}-{j}':
            sys.exit(f'message {i} fd {j}: content {y.get("content")!r}, want file-{i}-{j}')
EOF

wait_listening() { # errfile pid
  for _ in $(seq 200); do
    grep -q '^listening' "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

failures=0
declare -A result
fail() { # case dir reason
  result[$1]=FAIL
  failures=$((failures + 1))
  {
    echo "FAIL $1: $3"
    for f in "$2"/*.err; do [ -s "$f" ] && sed "s|^|  $(basename "$f"): |" "$f"; done
  } >&2
  return 0
}

run_case() { # mode sender receiver
  local mode=$1 snd=$2 rcv=$3 key="$1 $2 $3" dir ta listener connector lrole crole lpid rc=0
  dir=$work/${mode}-${snd}-${rcv}
  mkdir -p "$dir"
  read -ra ta <<<"$(type_args "$mode")"
  if [ "$mode" = stream-listen ]; then
    listener=$snd lrole=send connector=$rcv crole=recv
  else
    listener=$rcv lrole=recv connector=$snd crole=send
  fi
  cmd_of "$listener"
  timeout "$TIMEOUT" "${CMD[@]}" "$lrole" "${ta[@]}" --listen "$dir/sock" --count "$N" --fds "$K" \
    >"$dir/$lrole.out" 2>"$dir/$lrole.err" &
  lpid=$!
  if ! wait_listening "$dir/$lrole.err" "$lpid"; then
    kill "$lpid" 2>/dev/null || true
    wait "$lpid" 2>/dev/null || true
    fail "$key" "$dir" "the $listener $lrole never printed 'listening'"
    return
  fi
  cmd_of "$connector"
  if [ "$connector" = py-coalesce ]; then
    timeout "$TIMEOUT" "${CMD[@]}" "$here/python" "$dir/sock" "$N" "$K" >"$dir/send.out" 2>"$dir/send.err" || rc=$?
  else
    timeout "$TIMEOUT" "${CMD[@]}" "$crole" "${ta[@]}" --connect "$dir/sock" --count "$N" --fds "$K" \
      >"$dir/$crole.out" 2>"$dir/$crole.err" || rc=$?
  fi
  if [ "$rc" != 0 ]; then
    kill "$lpid" 2>/dev/null || true
    wait "$lpid" 2>/dev/null || true
    fail "$key" "$dir" "the $connector $crole exited $rc"
    return
  fi
  wait "$lpid" || rc=$?
  if [ "$rc" != 0 ]; then
    fail "$key" "$dir" "the $listener $lrole exited $rc"
    return
  fi
  local why
  if ! why=$(python3 "$work/verify.py" "$dir/send.out" "$dir/recv.out" "$N" "$K" 2>&1); then
    fail "$key" "$dir" "$why"
    return
  fi
  result[$key]=ok
}

run_echo() { # mode peer
  local mode=$1 p=$2 key="echo $1 $2" dir ta epid rc=0 why
  dir=$work/echo-${mode}-${p}
  mkdir -p "$dir"
  read -ra ta <<<"$(type_args "$mode")"
  cmd_of "$p"
  timeout "$TIMEOUT" "${CMD[@]}" echo "${ta[@]}" --listen "$dir/sock" --count "$N" >"$dir/echo.out" 2>"$dir/echo.err" &
  epid=$!
  if ! wait_listening "$dir/echo.err" "$epid"; then
    kill "$epid" 2>/dev/null || true
    wait "$epid" 2>/dev/null || true
    fail "$key" "$dir" "the $p echo never printed 'listening'"
    return
  fi
  local dmode=$mode
  [ "$mode" = stream-raw ] && dmode=raw
  if ! why=$(timeout "$TIMEOUT" python3 "$work/echo_driver.py" "$here/python" "$dmode" "$dir/sock" "$N" "$K" 2>&1); then
    kill "$epid" 2>/dev/null || true
    wait "$epid" 2>/dev/null || true
    fail "$key" "$dir" "driver: $why"
    return
  fi
  wait "$epid" || rc=$?
  if [ "$rc" != 0 ]; then
    fail "$key" "$dir" "the $p echo exited $rc"
    return
  fi
  if [ "$(wc -l <"$dir/echo.out")" != "$N" ]; then
    fail "$key" "$dir" "the $p echo printed $(wc -l <"$dir/echo.out") lines, not $N"
    return
  fi
  result[$key]=ok
}

bad_cases=(version flags missing-fds late-fds closed-mid-frame extra-fds)
run_bad() { # case receiver
  local c=$1 p=$2 key="bad $1 $2" dir lpid rc=0
  dir=$work/bad-${c}-${p}
  mkdir -p "$dir"
  cmd_of "$p"
  timeout "$TIMEOUT" "${CMD[@]}" recv --type stream --listen "$dir/sock" --count 1 --fds 1 \
    >"$dir/recv.out" 2>"$dir/recv.err" &
  lpid=$!
  if ! wait_listening "$dir/recv.err" "$lpid"; then
    kill "$lpid" 2>/dev/null || true
    wait "$lpid" 2>/dev/null || true
    fail "$key" "$dir" "the $p recv never printed 'listening'"
    return
  fi
  python3 "$work/bad_sender.py" "$c" "$dir/sock" || true
  wait "$lpid" || rc=$?
  if [ "$rc" = 0 ] || [ "$rc" = 124 ] || ! grep -qv '^listening' "$dir/recv.err"; then
    fail "$key" "$dir" "the $p recv exited $rc (want non-zero, not a timeout, with a message)"
    return
  fi
  result[$key]=ok
}

modes=(stream stream-raw seqpacket dgram stream-listen)
for mode in "${modes[@]}"; do
  for s in "${peers[@]}"; do
    for r in "${peers[@]}"; do
      run_case "$mode" "$s" "$r"
    done
  done
done
for r in "${peers[@]}"; do
  run_case stream-coalesced py-coalesce "$r"
done
for mode in stream stream-raw seqpacket dgram; do
  for p in "${peers[@]}"; do
    run_echo "$mode" "$p"
  done
done

for c in "${bad_cases[@]}"; do
  for r in "${peers[@]}"; do
    run_bad "$c" "$r"
  done
done

# Summary: one row per mode and sender, one column per receiver.
echo
echo "N=$N messages x K=$K fds; rows: mode and sender, columns: receiver"
printf '%-26s %-12s' mode sender
printf ' %-6s' "${peers[@]}"
echo
for mode in "${modes[@]}"; do
  for s in "${peers[@]}"; do
    printf '%-26s %-12s' "$mode" "$s"
    for r in "${peers[@]}"; do printf ' %-6s' "${result[$mode $s $r]:-?}"; done
    echo
  done
done
printf '%-26s %-12s' stream-coalesced py-coalesce
for r in "${peers[@]}"; do printf ' %-6s' "${result[stream-coalesced py-coalesce $r]:-?}"; done
echo
for mode in stream stream-raw seqpacket dgram; do
  printf '%-26s %-12s' "echo $mode" py-driver
  for p in "${peers[@]}"; do printf ' %-6s' "${result[echo $mode $p]:-?}"; done
  echo
done
for c in "${bad_cases[@]}"; do
  printf '%-26s %-12s' "rejects $c" py-bad
  for r in "${peers[@]}"; do printf ' %-6s' "${result[bad $c $r]:-?}"; done
  echo
done
echo
if [ "$failures" != 0 ]; then
  echo "$failures case(s) failed" >&2
  exit 1
fi
echo "all ${#result[@]} cases passed"
