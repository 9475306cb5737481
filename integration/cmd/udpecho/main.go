// Command udpecho answers every UDP datagram on each given port with
// "PORT:" followed by the datagram, on every address (IPv4 and IPv6). It
// is the UDP server inside the runtime tests' container images, which
// busybox has none of; built without cgo it runs in an image that holds
// nothing else.
//
// It answers from the address each datagram was sent to (IP_PKTINFO,
// IPV6_PKTINFO), as DNS servers do: a pod with a second interface (the
// plugin's side interface when it is chained after a pod network) gets
// datagrams on that interface's address, and a reply from the address
// the kernel would pick would leave by the pod network instead.
//
//	udpecho PORT...
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: udpecho PORT...")
		os.Exit(2)
	}
	errs := make(chan error, 2*len(os.Args))
	for _, a := range os.Args[1:] {
		port, err := strconv.ParseUint(a, 10, 16)
		if err != nil {
			fmt.Fprintf(os.Stderr, "udpecho: port %q: %v\n", a, err)
			os.Exit(2)
		}
		for _, network := range []string{"udp4", "udp6"} {
			c, err := net.ListenPacket(network, ":"+a)
			if err != nil {
				fmt.Fprintln(os.Stderr, "udpecho:", err)
				os.Exit(1)
			}
			var dc dstConn = conn6{ipv6.NewPacketConn(c)}
			if network == "udp4" {
				dc = conn4{ipv4.NewPacketConn(c)}
			}
			prefix := []byte(strconv.FormatUint(port, 10) + ":")
			go func() { errs <- echo(dc, prefix) }()
		}
	}
	fmt.Fprintln(os.Stderr, "udpecho:", <-errs)
	os.Exit(1)
}

// echo answers every datagram c reads with prefix and the datagram, from
// the address it was sent to.
func echo(c dstConn, prefix []byte) error {
	if err := c.readDst(); err != nil {
		return err
	}
	buf := make([]byte, 2048)
	for {
		n, dst, from, err := c.read(buf)
		if err != nil {
			return err
		}
		if err := c.write(append(prefix[:len(prefix):len(prefix)], buf[:n]...), dst, from); err != nil {
			return err
		}
	}
}

// dstConn is a UDP socket of one address family that tells the address
// each datagram was sent to (readDst turns that on) and writes from a
// given source address (nil: the kernel's choice).
type dstConn interface {
	readDst() error
	read(b []byte) (n int, dst net.IP, from net.Addr, err error)
	write(b []byte, src net.IP, to net.Addr) error
}

type conn4 struct{ p *ipv4.PacketConn }

func (c conn4) readDst() error { return c.p.SetControlMessage(ipv4.FlagDst, true) }

func (c conn4) read(b []byte) (int, net.IP, net.Addr, error) {
	n, cm, from, err := c.p.ReadFrom(b)
	if cm == nil {
		return n, nil, from, err
	}
	return n, cm.Dst, from, err
}

func (c conn4) write(b []byte, src net.IP, to net.Addr) error {
	_, err := c.p.WriteTo(b, &ipv4.ControlMessage{Src: src}, to)
	return err
}

type conn6 struct{ p *ipv6.PacketConn }

func (c conn6) readDst() error { return c.p.SetControlMessage(ipv6.FlagDst, true) }

func (c conn6) read(b []byte) (int, net.IP, net.Addr, error) {
	n, cm, from, err := c.p.ReadFrom(b)
	if cm == nil {
		return n, nil, from, err
	}
	return n, cm.Dst, from, err
}

func (c conn6) write(b []byte, src net.IP, to net.Addr) error {
	_, err := c.p.WriteTo(b, &ipv6.ControlMessage{Src: src}, to)
	return err
}
