package procnet

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Holder is a process that holds a listening socket.
type Holder struct {
	PID   int
	Comm  string // /proc/PID/comm: the program's name, e.g. "conmon"
	Local netip.AddrPort
	UDP   bool
}

func (h Holder) String() string {
	proto := "tcp"
	if h.UDP {
		proto = "udp"
	}
	return fmt.Sprintf("%s (pid %d) on %s %s", h.Comm, h.PID, proto, h.Local)
}

// PortHolders returns who holds port in the caller's network namespace: the
// listening TCP sockets (udp: the bound, unconnected UDP sockets) on that
// port, found through sock_diag, each with the process that has it open,
// found by its inode in /proc/*/fd. A socket whose holder cannot be seen
// (another user's process when the caller is not root) is left out. The
// result is sorted by PID; it is empty when nothing holds the port.
func PortHolders(udp bool, port uint16) ([]Holder, error) {
	socks := map[uint64]InetSocket{}
	err := DiagEach(func(s InetSocket) {
		if s.UDP == udp && s.Local.Port() == port && s.Listening() {
			socks[s.Inode] = s
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list sockets on port %d: %w", port, err)
	}
	if len(socks) == 0 {
		return nil, nil
	}
	var out []Holder
	err = EachHolder(func(ino uint64) bool { _, ok := socks[ino]; return ok }, func(pid int, inodes []uint64) bool {
		comm, _ := os.ReadFile(filepath.Join(Root, strconv.Itoa(pid), "comm"))
		for _, ino := range inodes {
			s := socks[ino]
			out = append(out, Holder{PID: pid, Comm: strings.TrimSpace(string(comm)), Local: s.Local, UDP: s.UDP})
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}
