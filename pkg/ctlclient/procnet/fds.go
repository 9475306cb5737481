package procnet

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// FDTable is what one pass over /proc/PID/fd found: the inodes of the
// sockets the process holds, and the descriptors whose link names what
// may be a network namespace (see NetNS).
type FDTable struct {
	pid     int
	Sockets map[uint64]bool
	// nsCandidates are /proc/PID/fd/N paths whose link reads "net:[N]",
	// or a path under a netns directory or ending in /ns/net.
	nsCandidates []string
}

// ReadFDs reads the fd table of process pid once: one readlinkat per
// descriptor, relative to the open directory, into one buffer. It fails
// (fs.ErrPermission) where /proc/PID/fd is not readable: another user's
// process, or a non-dumpable one (pasta makes itself non-dumpable) when
// the caller is not root.
func ReadFDs(pid int) (FDTable, error) {
	dir := filepath.Join(Root, strconv.Itoa(pid), "fd")
	// One list of socket inodes and one of namespace candidates per
	// worker of walkLinks, merged after.
	var socks [][]uint64
	var ns [][]string
	err := walkLinks(dir, func(workers, names int) {
		socks, ns = make([][]uint64, workers), make([][]string, workers)
		for w := range socks {
			socks[w] = make([]uint64, 0, names/workers+1)
		}
	}, func(w int, name string, link []byte) {
		if ino, ok := parseSocketLink(link); ok {
			socks[w] = append(socks[w], ino)
			return
		}
		// A namespace opened by its /proc path reads "net:[N]"; one opened
		// by a bind mount reads as that path (ip netns: /run/netns/NAME).
		if bytes.HasPrefix(link, []byte("net:[")) || bytes.Contains(link, []byte("/netns/")) || bytes.HasSuffix(link, []byte("/ns/net")) {
			ns[w] = append(ns[w], filepath.Join(dir, name))
		}
	})
	if err != nil {
		return FDTable{}, err
	}
	n := 0
	for _, l := range socks {
		n += len(l)
	}
	t := FDTable{pid: pid, Sockets: make(map[uint64]bool, n)}
	for w := range socks {
		for _, ino := range socks[w] {
			t.Sockets[ino] = true
		}
		t.nsCandidates = append(t.nsCandidates, ns[w]...)
	}
	return t, nil
}

// NetNS returns the paths (/proc/PID/fd/N) of the network namespace files
// the process held at ReadFDs, other than its own namespace: pasta holds
// the namespace it is attached to, where it binds SPLICE listeners. It
// opens only the descriptors whose links looked like namespaces.
func (t FDTable) NetNS() []string {
	if len(t.nsCandidates) == 0 {
		return nil
	}
	own, _ := os.Stat(filepath.Join(Root, strconv.Itoa(t.pid), "ns", "net"))
	var out []string
	for _, p := range t.nsCandidates {
		if !isNetNS(p) {
			continue
		}
		if st, err := os.Stat(p); err == nil && own != nil && os.SameFile(st, own) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// parallelLinks is the size of an fd table from which walkLinks shares
// the readlinkat calls (each a few microseconds in the kernel: pasta holds
// one socket per port it forwards) among goroutines.
const parallelLinks = 2048

// walkLinks calls fn with the name and link text of every entry of the
// /proc fd directory dir (the link is only valid during the call).
// Entries closed meanwhile are skipped. When setup is not nil, large
// tables are read by several workers at once: setup gets their number and
// the number of entries before any call, and fn gets the worker's index;
// calls with the same index never overlap. With setup nil, one worker
// (index 0) reads all.
func walkLinks(dir string, setup func(workers, names int), fn func(w int, name string, link []byte)) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	workers := 1
	if setup != nil {
		if len(names) >= parallelLinks {
			workers = min(runtime.GOMAXPROCS(0), 4)
		}
		setup(workers, len(names))
	}
	sc, err := d.SyscallConn()
	if err != nil {
		return err
	}
	return sc.Control(func(dfd uintptr) {
		if workers == 1 {
			readLinks(int(dfd), names, func(name string, link []byte) { fn(0, name, link) })
			return
		}
		var wg sync.WaitGroup
		for w := range workers {
			part := names[w*len(names)/workers : (w+1)*len(names)/workers]
			wg.Go(func() {
				readLinks(int(dfd), part, func(name string, link []byte) { fn(w, name, link) })
			})
		}
		wg.Wait()
	})
}

// readLinks reads the links names of the directory dfd into one buffer.
func readLinks(dfd int, names []string, fn func(name string, link []byte)) {
	buf := make([]byte, 256)
	for _, name := range names {
		for {
			n, err := unix.Readlinkat(dfd, name, buf)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				break // closed meanwhile
			}
			if n == len(buf) && len(buf) < 1<<16 { // maybe cut short
				buf = make([]byte, 2*len(buf))
				continue
			}
			fn(name, buf[:n])
			break
		}
	}
}

// parseSocketLink is ParseSocketLink on bytes, without allocating.
func parseSocketLink(link []byte) (uint64, bool) {
	s, ok := bytes.CutPrefix(link, []byte("socket:["))
	if !ok {
		return 0, false
	}
	s, ok = bytes.CutSuffix(s, []byte("]"))
	if !ok || len(s) == 0 || len(s) > 20 {
		return 0, false
	}
	var ino uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if ino > (1<<64-1-d)/10 {
			return 0, false // overflow
		}
		ino = ino*10 + d
	}
	return ino, true
}
