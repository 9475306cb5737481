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
			prefix := []byte(strconv.FormatUint(port, 10) + ":")
			if network == "udp4" {
				go func() { errs <- echo4(ipv4.NewPacketConn(c), prefix) }()
			} else {
				go func() { errs <- echo6(ipv6.NewPacketConn(c), prefix) }()
			}
		}
	}
	fmt.Fprintln(os.Stderr, "udpecho:", <-errs)
	os.Exit(1)
}

func echo4(p *ipv4.PacketConn, prefix []byte) error {
	if err := p.SetControlMessage(ipv4.FlagDst, true); err != nil {
		return err
	}
	buf := make([]byte, 2048)
	for {
		n, cm, from, err := p.ReadFrom(buf)
		if err != nil {
			return err
		}
		var reply *ipv4.ControlMessage
		if cm != nil {
			reply = &ipv4.ControlMessage{Src: cm.Dst}
		}
		if _, err := p.WriteTo(append(prefix[:len(prefix):len(prefix)], buf[:n]...), reply, from); err != nil {
			return err
		}
	}
}

func echo6(p *ipv6.PacketConn, prefix []byte) error {
	if err := p.SetControlMessage(ipv6.FlagDst, true); err != nil {
		return err
	}
	buf := make([]byte, 2048)
	for {
		n, cm, from, err := p.ReadFrom(buf)
		if err != nil {
			return err
		}
		var reply *ipv6.ControlMessage
		if cm != nil {
			reply = &ipv6.ControlMessage{Src: cm.Dst}
		}
		if _, err := p.WriteTo(append(prefix[:len(prefix):len(prefix)], buf[:n]...), reply, from); err != nil {
			return err
		}
	}
}
