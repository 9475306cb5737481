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
// the caller is not root. ScanFDs reads only what a question needs.
func ReadFDs(pid int) (FDTable, error) {
	s, err := ScanFDs(pid)
	if err != nil {
		return FDTable{}, err
	}
	return s.Table(), nil
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

// walkLinks calls fn with the link text of every entry of the /proc fd
// directory dir, one after the other (the link is only valid during the
// call).
func walkLinks(dir string, fn func(link []byte)) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return walkNames(dir, names, false, func(int) {}, func(_ int, _ string, link []byte) { fn(link) })
}

// walkNames calls fn with the name and link text of the entries names
// of the /proc fd directory dir (the link is only valid during the
// call). Entries closed meanwhile are skipped. With parallel, large
// tables are read by several workers at once: setup gets their number
// before any call, and fn gets the worker's index; calls with the same
// index never overlap.
func walkNames(dir string, names []string, parallel bool, setup func(workers int), fn func(w int, name string, link []byte)) error {
	workers := 1
	if parallel && len(names) >= parallelLinks {
		workers = min(runtime.GOMAXPROCS(0), 4)
	}
	setup(workers)
	if len(names) == 0 {
		return nil
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dfd)
	read := func(w int, part []string) {
		buf := make([]byte, 256)
		for _, name := range part {
			if link, ok := readLink(dfd, name, &buf); ok {
				fn(w, name, link)
			}
		}
	}
	if workers == 1 {
		read(0, names)
		return nil
	}
	var wg sync.WaitGroup
	for w := range workers {
		part := names[w*len(names)/workers : (w+1)*len(names)/workers]
		wg.Go(func() { read(w, part) })
	}
	wg.Wait()
	return nil
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
