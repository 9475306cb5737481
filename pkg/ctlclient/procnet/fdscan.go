package procnet

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// FDScan is a process's fd table read on demand: a question about one
// socket inode reads links only until the answer is known, and no link
// is read twice. A verification that looks for a few sockets of pasta
// (its control socket, the listeners of one rule) then reads a few of
// its hundreds of descriptors (pools of pipes and sockets) instead of
// all of them: pasta opens its control socket among its first
// descriptors (HoldsAny looks from the lowest up) and its listening
// sockets on every switch, after its pools, in the lowest descriptors
// free, mostly the highest in use (Holds looks from the highest down). A
// table of parallelLinks descriptors or more (one socket per forwarded
// port) is read whole, by several workers, on the first question.
//
// It is what ReadFDs reads, at the moment each link is read: a
// descriptor closed before its turn is skipped. It is used by one
// goroutine.
type FDScan struct {
	dir    string
	names  []string // the descriptors, ascending
	lo, hi int      // names[lo:hi] are not read yet
	table  FDTable  // what was read so far
	buf    []byte
}

// ScanFDs lists the fd table of process pid, reading no link yet. It
// fails (fs.ErrPermission) where /proc/PID/fd is not readable (see
// ReadFDs).
func ScanFDs(pid int) (*FDScan, error) {
	dir := filepath.Join(Root, strconv.Itoa(pid), "fd")
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// /proc lists descriptors in ascending order already; sort in case.
	if !ascending(names) {
		sortNumeric(names)
	}
	s := &FDScan{dir: dir, names: names, hi: len(names), table: FDTable{pid: pid, Sockets: map[uint64]bool{}}}
	if len(names) >= parallelLinks {
		if err := s.readAll(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Holds reports whether the process holds a socket with inode ino,
// reading links from the highest descriptor down until it finds it or
// the table ends.
func (s *FDScan) Holds(ino uint64) bool {
	return s.find(func() bool { return s.table.Sockets[ino] }, false)
}

// HoldsAny reports whether the process holds a socket with one of the
// inodes, reading links from the lowest descriptor up.
func (s *FDScan) HoldsAny(inodes []uint64) bool {
	return s.find(func() bool {
		for _, ino := range inodes {
			if s.table.Sockets[ino] {
				return true
			}
		}
		return false
	}, true)
}

// find reads links until found says yes or none is left, from the
// lowest unread descriptor up, or from the highest down.
func (s *FDScan) find(found func() bool, up bool) bool {
	if found() {
		return true
	}
	if s.lo >= s.hi {
		return false
	}
	dfd, err := unix.Open(s.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		s.lo = s.hi // gone: nothing more to learn
		return false
	}
	defer unix.Close(dfd)
	if s.buf == nil {
		s.buf = make([]byte, 256)
	}
	for s.lo < s.hi {
		var name string
		if up {
			name = s.names[s.lo]
			s.lo++
		} else {
			s.hi--
			name = s.names[s.hi]
		}
		link, ok := readLink(dfd, name, &s.buf)
		if !ok {
			continue
		}
		s.add(name, link)
		if found() {
			return true
		}
	}
	return false
}

// Table reads the rest of the table and returns all of it.
func (s *FDScan) Table() FDTable {
	if s.lo < s.hi {
		_ = s.readAll()
	}
	return s.table
}

// readAll reads the links not read yet, several workers for a large
// table (see walkLinks).
func (s *FDScan) readAll() error {
	rest := s.names[s.lo:s.hi]
	s.lo = s.hi
	var socks [][]uint64
	var ns [][]string
	err := walkNames(s.dir, rest, true, func(workers int) {
		socks, ns = make([][]uint64, workers), make([][]string, workers)
	}, func(w int, name string, link []byte) {
		if ino, ok := parseSocketLink(link); ok {
			socks[w] = append(socks[w], ino)
		} else if isNSLink(link) {
			ns[w] = append(ns[w], filepath.Join(s.dir, name))
		}
	})
	for w := range socks {
		for _, ino := range socks[w] {
			s.table.Sockets[ino] = true
		}
		s.table.nsCandidates = append(s.table.nsCandidates, ns[w]...)
	}
	return err
}

func (s *FDScan) add(name string, link []byte) {
	if ino, ok := parseSocketLink(link); ok {
		s.table.Sockets[ino] = true
	} else if isNSLink(link) {
		s.table.nsCandidates = append(s.table.nsCandidates, filepath.Join(s.dir, name))
	}
}

// isNSLink says whether a link text may be a network namespace: one
// opened by its /proc path reads "net:[N]"; one opened by a bind mount
// reads as that path (ip netns: /run/netns/NAME).
func isNSLink(link []byte) bool {
	return bytes.HasPrefix(link, []byte("net:[")) || bytes.Contains(link, []byte("/netns/")) || bytes.HasSuffix(link, []byte("/ns/net"))
}

// readLink reads the link name of directory dfd into *buf, growing it as
// needed; false when the descriptor was closed meanwhile.
func readLink(dfd int, name string, buf *[]byte) ([]byte, bool) {
	for {
		n, err := unix.Readlinkat(dfd, name, *buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, false
		}
		if n == len(*buf) && len(*buf) < 1<<16 { // maybe cut short
			*buf = make([]byte, 2*len(*buf))
			continue
		}
		return (*buf)[:n], true
	}
}

func ascending(names []string) bool {
	prev := -1
	for _, n := range names {
		v, err := strconv.Atoi(n)
		if err != nil || v < prev {
			return false
		}
		prev = v
	}
	return true
}

func sortNumeric(names []string) {
	key := func(s string) int {
		v, err := strconv.Atoi(s)
		if err != nil {
			return int(^uint(0) >> 1)
		}
		return v
	}
	// Insertion sort: the list is nearly sorted when it is not sorted.
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && key(names[j]) < key(names[j-1]); j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
}
