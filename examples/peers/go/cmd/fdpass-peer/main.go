// Command fdpass-peer is the Go reference peer for fdpass (see ../../../README.md):
//
//	fdpass-peer send|recv|echo --type stream|seqpacket|dgram [--raw]
//	            (--connect PATH | --listen PATH) [--count N] [--fds K]
//
// Build: cd examples/peers/go && go build -o fdpass-peer ./cmd/fdpass-peer
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"example.com/fdpass-peer/fdpassframe"
	"golang.org/x/sys/unix"
)

type options struct {
	role, typ, connect, listen string
	raw                        bool
	count, fds                 int
}

func main() {
	var o options
	fs := flag.NewFlagSet("fdpass-peer", flag.ContinueOnError)
	fs.StringVar(&o.typ, "type", "", "stream | seqpacket | dgram")
	fs.BoolVar(&o.raw, "raw", false, "stream without fdpass framing")
	fs.StringVar(&o.connect, "connect", "", "connect to PATH")
	fs.StringVar(&o.listen, "listen", "", "listen on (dgram: bind) PATH")
	fs.IntVar(&o.count, "count", 1, "messages to send or receive")
	fs.IntVar(&o.fds, "fds", 1, "descriptors per message (send)")
	usage := func(msg string) {
		fmt.Fprintf(os.Stderr, "fdpass-peer: %s\nusage: fdpass-peer send|recv|echo --type stream|seqpacket|dgram [--raw] (--connect PATH | --listen PATH) [--count N] [--fds K]\n", msg)
		os.Exit(2)
	}
	if len(os.Args) < 2 {
		usage("missing role")
	}
	o.role = os.Args[1]
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	network := map[string]string{"stream": "unix", "seqpacket": "unixpacket", "dgram": "unixgram"}[o.typ]
	switch {
	case o.role != "send" && o.role != "recv" && o.role != "echo":
		usage("the role is send, recv or echo")
	case network == "":
		usage("--type is stream, seqpacket or dgram")
	case (o.connect == "") == (o.listen == ""):
		usage("give exactly one of --connect and --listen")
	case o.fds < 0 || o.fds > fdpassframe.MaxFDs || o.count < 0:
		usage("--fds must be 0..253 and --count >= 0")
	case o.typ == "dgram" && (o.role == "send") != (o.connect != ""):
		usage("dgram: send uses --connect; recv and echo use --listen")
	case fs.NArg() > 0:
		usage("unexpected " + strings.Join(fs.Args(), " "))
	}
	err := run(o, network)
	if o.listen != "" {
		os.Remove(o.listen)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("the peer closed before all messages arrived")
		}
		fmt.Fprintf(os.Stderr, "fdpass-peer %s: %v\n", o.role, err)
		os.Exit(1)
	}
}

func open(o options, network string) (*net.UnixConn, error) {
	if o.listen != "" {
		addr := &net.UnixAddr{Name: o.listen, Net: network}
		if network == "unixgram" {
			c, err := net.ListenUnixgram(network, addr)
			if err == nil {
				fmt.Fprintln(os.Stderr, "listening")
			}
			return c, err
		}
		l, err := net.ListenUnix(network, addr)
		if err != nil {
			return nil, err
		}
		l.SetUnlinkOnClose(false)
		defer l.Close()
		fmt.Fprintln(os.Stderr, "listening")
		return l.AcceptUnix()
	}
	if network != "unixgram" {
		return net.DialUnix(network, nil, &net.UnixAddr{Name: o.connect, Net: network})
	}
	// dgram: autobind (an empty address) so that replies can come back; net
	// cannot express that, so build the socket and hand it to net.
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(s), "dgram")
	defer f.Close()
	if err := unix.Bind(s, &unix.SockaddrUnix{}); err != nil {
		return nil, fmt.Errorf("autobind: %w", err)
	}
	if err := unix.Connect(s, &unix.SockaddrUnix{Name: o.connect}); err != nil {
		return nil, fmt.Errorf("connect %s: %w", o.connect, err)
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

type fdInfo struct {
	Dev     uint64          `json:"dev"`
	Ino     uint64          `json:"ino"`
	Content json.RawMessage `json:"content,omitempty"` // recv/echo only
}

type line struct {
	Data string   `json:"data"`
	FDs  []fdInfo `json:"fds"`
}

func describe(fd int, content bool) (fdInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fdInfo{}, err
	}
	info := fdInfo{Dev: uint64(st.Dev), Ino: st.Ino}
	if content {
		buf := make([]byte, 65536)
		info.Content = json.RawMessage("null") // not a file (pipe, socket...)
		if n, err := unix.Pread(fd, buf, 0); err == nil {
			if info.Content, err = json.Marshal(string(buf[:n])); err != nil {
				return fdInfo{}, err
			}
		}
	}
	return info, nil
}

func emit(out *json.Encoder, data []byte, fds []int, content bool) error {
	l := line{Data: string(data), FDs: []fdInfo{}}
	for _, fd := range fds {
		info, err := describe(fd, content)
		if err != nil {
			return err
		}
		l.FDs = append(l.FDs, info)
	}
	return out.Encode(l)
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func run(o options, network string) error {
	c, err := open(o, network)
	if err != nil {
		return err
	}
	defer c.Close()
	framed := o.typ == "stream" && !o.raw
	out := json.NewEncoder(os.Stdout)
	send := func(data []byte, fds []int, to *net.UnixAddr) error {
		if framed {
			return fdpassframe.SendFrame(c, data, fds)
		}
		return fdpassframe.SendMsg(c, data, fds, to)
	}

	if o.role == "send" {
		dir, err := os.MkdirTemp("", "fdpass-peer-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		for i := 0; i < o.count; i++ {
			var fds []int
			for j := 0; j < o.fds; j++ {
				name := fmt.Sprintf("file-%d-%d", i, j)
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(name), 0o600); err != nil {
					return err
				}
				fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					return err
				}
				fds = append(fds, fd)
			}
			data := []byte(fmt.Sprintf("msg-%d", i))
			err := emit(out, data, fds, false)
			if err == nil {
				err = send(data, fds, nil)
			}
			closeAll(fds)
			if err != nil {
				return err
			}
		}
		return nil
	}

	reader := fdpassframe.NewReader(c)
	for i := 0; i < o.count; i++ {
		var data, fds = []byte(nil), []int(nil)
		var from *net.UnixAddr
		if framed {
			data, fds, err = reader.RecvFrame()
		} else {
			data, fds, from, err = fdpassframe.RecvMsg(c)
		}
		if err != nil {
			return err
		}
		err = emit(out, data, fds, true)
		if err == nil && o.role == "echo" {
			if o.typ == "dgram" && (from == nil || from.Name == "") {
				err = errors.New("cannot echo: the sender has no address (bind it, e.g. autobind)")
			} else if o.typ != "dgram" {
				from = nil
			}
			if err == nil {
				err = send(data, fds, from)
			}
		}
		closeAll(fds)
		if err != nil {
			return err
		}
	}
	if nbytes, nfds := reader.Pending(); nbytes > 0 || nfds > 0 {
		reader.Close()
		return fmt.Errorf("%d bytes and %d fds arrived beyond %d messages", nbytes, nfds, o.count)
	}
	return nil
}
