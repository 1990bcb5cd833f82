// fdpass's stream framing in Go, plus a test peer (standard library only).
// Same command line as ../python/fdpass_peer.py:
//
//	fdpass-peer send|recv TYPE MODE PATH COUNT FILE
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

const maxFDs = 253

// SendFrame sends one fdpass frame; its fds ride on the write that carries
// the header, and the rest of a partial write goes without them.
func SendFrame(c *net.UnixConn, data []byte, fds []int) error {
	buf := make([]byte, 8+len(data))
	buf[0] = 1
	binary.BigEndian.PutUint16(buf[2:], uint16(len(fds)))
	binary.BigEndian.PutUint32(buf[4:], uint32(len(data)))
	copy(buf[8:], data)
	n, _, err := c.WriteMsgUnix(buf, unix.UnixRights(fds...), nil)
	for err == nil && n < len(buf) {
		var m int
		m, err = c.Write(buf[n:])
		n += m
	}
	return err
}

// FrameReader reassembles frames: a frame takes the oldest fds that
// arrived with or before it.
type FrameReader struct {
	c   *net.UnixConn
	buf []byte
	fds []int
}

func (r *FrameReader) RecvFrame() ([]byte, []int, error) {
	for {
		if len(r.buf) >= 8 {
			n := int(binary.BigEndian.Uint16(r.buf[2:]))
			l := int(binary.BigEndian.Uint32(r.buf[4:]))
			if r.buf[0] != 1 || r.buf[1] != 0 || n > maxFDs {
				return nil, nil, errors.New("not an fdpass frame")
			}
			if len(r.buf) >= 8+l {
				if len(r.fds) < n {
					return nil, nil, errors.New("a frame declares more fds than arrived")
				}
				data := append([]byte(nil), r.buf[8:8+l]...)
				r.buf = r.buf[8+l:]
				fds := r.fds[:n:n]
				r.fds = r.fds[n:]
				return data, fds, nil
			}
		}
		data, fds, err := recvWithFDs(r.c)
		if err != nil {
			return nil, nil, err
		}
		if len(data) == 0 && len(fds) == 0 {
			return nil, nil, errors.New("the peer closed early")
		}
		r.buf = append(r.buf, data...)
		r.fds = append(r.fds, fds...)
	}
}

func recvWithFDs(c *net.UnixConn) ([]byte, []int, error) {
	buf := make([]byte, 65536)
	oob := make([]byte, unix.CmsgSpace(4*maxFDs))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, err
	}
	if flags&unix.MSG_CTRUNC != 0 {
		return nil, nil, errors.New("MSG_CTRUNC")
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, nil, err
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return nil, nil, err
		}
		for _, fd := range got {
			unix.CloseOnExec(fd)
		}
		fds = append(fds, got...)
	}
	return buf[:n], fds, nil
}

// sendDatagrams uses an unbound socket that names the receiver on each
// sendmsg (net.UnixConn has no unbound unixgram sender).
func sendDatagrams(path string, count, fd int) error {
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	to := &unix.SockaddrUnix{Name: path}
	for i := 0; i < count; i++ {
		if err := unix.Sendmsg(s, []byte(fmt.Sprintf("msg-%d", i)), unix.UnixRights(fd, fd), to, 0); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	if len(os.Args) != 7 {
		fmt.Fprintln(os.Stderr, "usage: fdpass-peer send|recv TYPE MODE PATH COUNT FILE")
		os.Exit(2)
	}
	role, kind, mode, path, file := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[6]
	count, _ := strconv.Atoi(os.Args[5])
	network := map[string]string{"stream": "unix", "seqpacket": "unixpacket", "dgram": "unixgram"}[kind]
	framed := kind == "stream" && mode == "framed"
	if err := run(role, network, framed, path, count, file); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(role, network string, framed bool, path string, count int, file string) error {
	addr := &net.UnixAddr{Name: path, Net: network}
	if role == "send" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		fd := int(f.Fd())
		if network == "unixgram" {
			return sendDatagrams(path, count, fd)
		}
		c, err := net.DialUnix(network, nil, addr)
		if err != nil {
			return err
		}
		for i := 0; i < count; i++ {
			data := []byte(fmt.Sprintf("msg-%d", i))
			if framed {
				err = SendFrame(c, data, []int{fd, fd})
			} else {
				_, _, err = c.WriteMsgUnix(data, unix.UnixRights(fd, fd), nil)
			}
			if err != nil {
				return err
			}
		}
		return c.Close()
	}
	var c *net.UnixConn
	if network == "unixgram" {
		var err error
		if c, err = net.ListenUnixgram(network, addr); err != nil {
			return err
		}
		fmt.Println("ready")
	} else {
		l, err := net.ListenUnix(network, addr)
		if err != nil {
			return err
		}
		fmt.Println("ready")
		if c, err = l.AcceptUnix(); err != nil {
			return err
		}
	}
	reader := &FrameReader{c: c}
	out := json.NewEncoder(os.Stdout)
	for i := 0; i < count; i++ {
		var data []byte
		var fds []int
		var err error
		if framed {
			data, fds, err = reader.RecvFrame()
		} else {
			data, fds, err = recvWithFDs(c)
		}
		if err != nil {
			return err
		}
		ids := []map[string]uint64{}
		for _, fd := range fds {
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil {
				return err
			}
			ids = append(ids, map[string]uint64{"dev": uint64(st.Dev), "ino": st.Ino})
			unix.Close(fd)
		}
		if err := out.Encode(map[string]any{"data": string(data), "fds": ids}); err != nil {
			return err
		}
	}
	return nil
}
