package procnet

import (
	"net"
	"os"
	"syscall"
	"testing"
)

// sockInode returns the inode of a socket of this process.
func sockInode(t *testing.T, c syscall.Conn) uint64 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Fstat(int(fd), &st) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return st.Ino
}

// FDScan answers as ReadFDs would, reading only as far as each question
// needs: a socket opened last is found from the top after a few links,
// one opened first from the bottom, and an inode the process does not
// hold only after every link.
func TestFDScan(t *testing.T) {
	var inodes []uint64
	for range 8 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		inodes = append(inodes, sockInode(t, l.(*net.TCPListener)))
	}
	s, err := ScanFDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !s.Holds(inodes[len(inodes)-1]) {
		t.Fatal("the socket opened last is not held")
	}
	if read := len(s.names) - (s.hi - s.lo); read > 4 {
		t.Errorf("finding the socket opened last read %d of %d links", read, len(s.names))
	}
	if !s.HoldsAny(inodes[:1]) {
		t.Fatal("the socket opened first is not held")
	}
	if s.Holds(1) {
		t.Fatal("inode 1 is held")
	}
	if s.lo < s.hi {
		t.Errorf("an inode not held was answered with links %d-%d unread", s.lo, s.hi)
	}
	all, err := ReadFDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, ino := range inodes {
		if !s.Table().Sockets[ino] || !all.Sockets[ino] {
			t.Errorf("inode %d missing from the tables", ino)
		}
	}
}
