package procnet

import (
	"net"
	"os"
	"strings"
	"testing"
)

func TestPortHolders(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("run as root: the holder is found through /proc/PID/fd")
	}
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	self := strings.TrimSpace(string(comm))
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	udp, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcpPort := uint16(tcp.Addr().(*net.TCPAddr).Port)
	udpPort := uint16(udp.LocalAddr().(*net.UDPAddr).Port)
	// A port that was free a moment ago: bound and closed at once.
	freeL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freePort := uint16(freeL.Addr().(*net.TCPAddr).Port)
	freeL.Close()

	for _, tc := range []struct {
		name string
		udp  bool
		port uint16
		want string // local address of the holder, "" for none
	}{
		{"tcp listener", false, tcpPort, "127.0.0.1"},
		{"udp socket", true, udpPort, "::1"},
		{"tcp port of the udp socket", false, udpPort, ""},
		{"closed port", false, freePort, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs, err := PortHolders(tc.udp, tc.port)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				for _, h := range hs {
					if h.PID == os.Getpid() {
						t.Fatalf("found this process holding %d: %v", tc.port, hs)
					}
				}
				return
			}
			if len(hs) != 1 || hs[0].PID != os.Getpid() || hs[0].Comm != self || hs[0].Local.Addr().String() != tc.want || hs[0].UDP != tc.udp {
				t.Fatalf("PortHolders(%v, %d) = %v, want this process (%s, pid %d) on %s", tc.udp, tc.port, hs, self, os.Getpid(), tc.want)
			}
			if s := hs[0].String(); !strings.Contains(s, self) || !strings.Contains(s, "pid ") {
				t.Errorf("String() = %q", s)
			}
		})
	}
}
