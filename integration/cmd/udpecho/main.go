// Command udpecho answers every UDP datagram on each given port with
// "PORT:" followed by the datagram, on every address (IPv4 and IPv6). It
// is the UDP server inside the runtime tests' container images, which
// busybox has none of; built without cgo it runs in an image that holds
// nothing else.
//
//	udpecho PORT...
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: udpecho PORT...")
		os.Exit(2)
	}
	errs := make(chan error, len(os.Args))
	for _, a := range os.Args[1:] {
		port, err := strconv.ParseUint(a, 10, 16)
		if err != nil {
			fmt.Fprintf(os.Stderr, "udpecho: port %q: %v\n", a, err)
			os.Exit(2)
		}
		c, err := net.ListenPacket("udp", ":"+a)
		if err != nil {
			fmt.Fprintln(os.Stderr, "udpecho:", err)
			os.Exit(1)
		}
		go func() { errs <- echo(c, port) }()
	}
	fmt.Fprintln(os.Stderr, "udpecho:", <-errs)
	os.Exit(1)
}

func echo(c net.PacketConn, port uint64) error {
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		reply := append([]byte(strconv.FormatUint(port, 10)+":"), buf[:n]...)
		if _, err := c.WriteTo(reply, from); err != nil {
			return err
		}
	}
}
