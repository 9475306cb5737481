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

	"github.com/passt-portmap/passt-portmap/integration/pktinfo"
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
		prefix := []byte(strconv.FormatUint(port, 10) + ":")
		for _, network := range []string{"udp4", "udp6"} {
			c, err := listen(network, a)
			if err != nil {
				fmt.Fprintln(os.Stderr, "udpecho:", err)
				os.Exit(1)
			}
			go func() {
				errs <- c.Serve(func(b []byte, _ net.Addr) []byte { return append(prefix[:len(prefix):len(prefix)], b...) })
			}()
		}
	}
	fmt.Fprintln(os.Stderr, "udpecho:", <-errs)
	os.Exit(1)
}

// listen binds port on every address of network ("udp4" or "udp6").
func listen(network, port string) (*pktinfo.Conn, error) {
	c, err := net.ListenPacket(network, ":"+port)
	if err != nil {
		return nil, err
	}
	return pktinfo.New(c, network)
}
