// Package fdpassframe speaks fdpass's stream framing over a *net.UnixConn
// (standard library only), so that a Go program can exchange file
// descriptors with an fdpass 'stream' socket.
//
// Wire format, one frame per message:
//
//	offset size field
//	0      1    version (1)
//	1      1    flags (0; other values are refused)
//	2      2    fd count, big-endian (0..253)
//	4      4    payload length, big-endian
//	8      n    payload
//
// A frame's descriptors travel as SCM_RIGHTS on the write that carries the
// frame's first byte. On seqpacket and dgram sockets (and raw streams) there
// is no framing: one WriteMsgUnix / ReadMsgUnix is one message (SendMsg,
// RecvMsg).
package fdpassframe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

const (
	HeaderLen = 8
	Version   = 1
	// MaxFDs is the most descriptors one message may carry (SCM_MAX_FD).
	MaxFDs = 253
	// MaxLen is the largest payload a Reader accepts.
	MaxLen = 16 << 20
	// maxUnclaimed bounds descriptors that arrive ahead of their frames.
	maxUnclaimed = 2 * MaxFDs
)

// ErrProtocol wraps every framing violation; ErrTruncated reports MSG_CTRUNC
// (the kernel dropped descriptors, e.g. because of RLIMIT_NOFILE).
var (
	ErrProtocol  = errors.New("fdpass protocol error")
	ErrTruncated = errors.New("descriptors were truncated (MSG_CTRUNC)")
)

func protocolError(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, a...))
}

// SendFrame sends one frame. Its fds ride on the write that carries the
// header; if that write is partial, the rest goes without them.
func SendFrame(c *net.UnixConn, data []byte, fds []int) error {
	if len(fds) > MaxFDs {
		return fmt.Errorf("at most %d fds per message", MaxFDs)
	}
	buf := make([]byte, HeaderLen+len(data))
	buf[0] = Version
	binary.BigEndian.PutUint16(buf[2:], uint16(len(fds)))
	binary.BigEndian.PutUint32(buf[4:], uint32(len(data)))
	copy(buf[HeaderLen:], data)
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	n, _, err := c.WriteMsgUnix(buf, oob, nil)
	for err == nil && n < len(buf) {
		var m int
		m, err = c.Write(buf[n:])
		n += m
	}
	return err
}

// SendMsg sends one unframed message (seqpacket, dgram, raw stream); to is
// the destination of an unconnected dgram socket, otherwise nil.
func SendMsg(c *net.UnixConn, data []byte, fds []int, to *net.UnixAddr) error {
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	n, _, err := c.WriteMsgUnix(data, oob, to)
	if err == nil && n < len(data) {
		err = io.ErrShortWrite
	}
	return err
}

// RecvMsg receives one unframed message with room for MaxFDs descriptors
// (close-on-exec: Go's ReadMsgUnix passes MSG_CMSG_CLOEXEC on Linux). A
// stream's or seqpacket's end reads as io.EOF.
func RecvMsg(c *net.UnixConn) (data []byte, fds []int, from *net.UnixAddr, err error) {
	buf := make([]byte, 65536)
	data, fds, from, trunc, err := recvmsg(c, buf)
	if err == nil && trunc {
		closeAll(fds)
		return nil, nil, nil, errors.New("the message was truncated (MSG_TRUNC)")
	}
	return data, fds, from, err
}

func recvmsg(c *net.UnixConn, buf []byte) ([]byte, []int, *net.UnixAddr, bool, error) {
	oob := make([]byte, syscall.CmsgSpace(4*MaxFDs))
	n, oobn, flags, from, err := c.ReadMsgUnix(buf, oob)
	if errors.Is(err, io.EOF) {
		return nil, nil, nil, false, io.EOF
	}
	if err != nil {
		return nil, nil, nil, false, err
	}
	var fds []int
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, nil, nil, false, err
	}
	for i := range msgs {
		if msgs[i].Header.Level == syscall.SOL_SOCKET && msgs[i].Header.Type == syscall.SCM_RIGHTS {
			got, err := syscall.ParseUnixRights(&msgs[i])
			if err != nil {
				closeAll(fds)
				return nil, nil, nil, false, err
			}
			fds = append(fds, got...)
		}
	}
	if flags&syscall.MSG_CTRUNC != 0 {
		closeAll(fds)
		return nil, nil, nil, false, ErrTruncated
	}
	if n == 0 && len(fds) == 0 && c.LocalAddr().Network() != "unixgram" {
		return nil, nil, nil, false, io.EOF
	}
	return buf[:n], fds, from, flags&syscall.MSG_TRUNC != 0, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// batch is the descriptors of one read whose bytes began at stream offset start.
type batch struct {
	start int64
	fds   []int
}

// Reader turns the bytes and fds of successive reads back into frames. Each
// read's fds are remembered with the stream offset of its first byte; a
// frame takes the oldest unclaimed fds that arrived with or before the read
// holding its first byte (when one write carried several frames, later
// frames' fds arrive ahead of them).
type Reader struct {
	c       *net.UnixConn
	buf     []byte
	base    int64 // stream offset of buf[0]
	batches []batch
}

func NewReader(c *net.UnixConn) *Reader { return &Reader{c: c} }

// RecvFrame returns the next frame's payload and descriptors (the caller
// closes them). At a clean end of stream it returns io.EOF.
func (r *Reader) RecvFrame() ([]byte, []int, error) {
	chunk := make([]byte, 65536)
	for {
		data, fds, err := r.nextFrame()
		if err != nil || data != nil {
			return data, fds, err
		}
		got, fds, _, _, err := recvmsg(r.c, chunk)
		if err == io.EOF {
			nbytes, nfds := r.Pending()
			r.Close()
			if nbytes > 0 || nfds > 0 {
				return nil, nil, protocolError("the peer closed mid-message: %d bytes and %d fds left over", nbytes, nfds)
			}
			return nil, nil, io.EOF
		}
		if err != nil {
			return nil, nil, err
		}
		if len(fds) > 0 {
			r.batches = append(r.batches, batch{r.base + int64(len(r.buf)), fds})
		}
		r.buf = append(r.buf, got...)
	}
}

// nextFrame decodes a buffered frame; data is nil when none is complete.
func (r *Reader) nextFrame() ([]byte, []int, error) {
	if len(r.buf) < HeaderLen {
		return nil, nil, nil
	}
	h := r.buf[:HeaderLen]
	nfds := int(binary.BigEndian.Uint16(h[2:]))
	length := int64(binary.BigEndian.Uint32(h[4:]))
	switch {
	case h[0] != Version:
		return nil, nil, protocolError("frame version %d is unknown (expected %d); is the peer raw?", h[0], Version)
	case h[1] != 0:
		return nil, nil, protocolError("reserved frame flags %#02x are set", h[1])
	case nfds > MaxFDs:
		return nil, nil, protocolError("a frame declares %d fds; the limit is %d", nfds, MaxFDs)
	case length > MaxLen:
		return nil, nil, protocolError("a frame of %d bytes is larger than %d", length, MaxLen)
	case int64(len(r.buf)) < HeaderLen+length:
		return nil, nil, nil
	}
	var fds []int
	for len(r.batches) > 0 && len(fds) < nfds && r.batches[0].start <= r.base {
		b := &r.batches[0]
		k := min(nfds-len(fds), len(b.fds))
		fds = append(fds, b.fds[:k]...)
		b.fds = b.fds[k:]
		if len(b.fds) == 0 {
			r.batches = r.batches[1:]
		}
	}
	if len(fds) < nfds {
		closeAll(fds)
		return nil, nil, protocolError("a frame declares %d fds but %d arrived with it", nfds, len(fds))
	}
	if _, n := r.Pending(); n > maxUnclaimed {
		closeAll(fds)
		return nil, nil, protocolError("more than %d fds arrived ahead of their frames", maxUnclaimed)
	}
	end := HeaderLen + int(length)
	data := append([]byte{}, r.buf[HeaderLen:end]...)
	r.buf = r.buf[end:]
	r.base += int64(end)
	return data, fds, nil
}

// Pending reports bytes buffered and fds not yet claimed by a frame.
func (r *Reader) Pending() (bytes, fds int) {
	for _, b := range r.batches {
		fds += len(b.fds)
	}
	return len(r.buf), fds
}

// Close closes unclaimed fds and drops buffered bytes.
func (r *Reader) Close() {
	for _, b := range r.batches {
		closeAll(b.fds)
	}
	r.batches = nil
	r.base += int64(len(r.buf))
	r.buf = nil
}
