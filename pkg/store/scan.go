package store

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/pkg/safefs"
)

// cursorName is the file in a network's directory where Scan keeps its
// place: the file system's position after the last entry it read.
const cursorName = ".scan-cursor"

// scanEntriesPerKey is how many directory entries Scan reads per key asked
// for: a record has up to three (record, backup copy, lock file).
const scanEntriesPerKey = 3

// Scan returns the keys of up to n records of network, taking turns: each
// call goes on where the last one stopped (a cursor kept in the network's
// directory), and starts over after the last, so that repeated calls
// visit every record in turn while each reads a bounded number of
// directory entries, however many records there are. Keys are those of
// record files, and of backup copies whose record file is lost.
func (s *Store) Scan(network string, n int) ([]Key, error) {
	nd, err := s.networkDir(network, false)
	if missing(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("scan records: %w", err)
	}
	defer nd.Close()
	cur, err := nd.OpenFile(cursorName, unix.O_RDWR|unix.O_CREAT, fileMode)
	if err != nil {
		return nil, fmt.Errorf("scan records: %w", err)
	}
	defer cur.Close()
	var buf [24]byte
	k, _ := cur.ReadAt(buf[:], 0)
	off, _ := strconv.ParseInt(strings.TrimSpace(string(buf[:k])), 10, 64)

	var keys []Key
	seen := map[string]bool{}
	budget := n * scanEntriesPerKey
	wrapped, done := false, false
	for !done && budget > 0 {
		entries, end, err := nd.ReadFrom(off, budget)
		if err != nil {
			if off != 0 && !wrapped {
				off, wrapped = 0, true // a stale position: start over
				continue
			}
			return keys, fmt.Errorf("scan records: %w", err)
		}
		for _, e := range entries {
			if seen[e.Name] { // once around
				done = true
				break
			}
			seen[e.Name] = true
			budget--
			off = e.Next
			if key, ok := scanKey(nd, network, e.Name); ok {
				keys = append(keys, key)
				if done = len(keys) == n; done {
					break
				}
			}
		}
		if end && !done {
			off = 0
			done = wrapped
			wrapped = true
		}
	}
	b := []byte(strconv.FormatInt(off, 10) + "\n")
	if _, err := cur.WriteAt(b, 0); err == nil {
		_ = cur.Truncate(int64(len(b)))
	}
	return keys, nil
}

// scanKey returns the key of a directory entry that stands for a record:
// a record file, or a backup copy whose record file is lost.
func scanKey(nd *safefs.Dir, network, name string) (Key, bool) {
	base, kind := classify(name)
	switch kind {
	case fileRecord:
	case fileBackup:
		if _, err := nd.Lstat(base + recordSuffix); !errors.Is(err, unix.ENOENT) && !missing(err) {
			return Key{}, false // listed with its record file
		}
	default:
		return Key{}, false
	}
	cid, ifn, ok := strings.Cut(base, "@")
	if !ok || strings.HasPrefix(base, ".") {
		return Key{}, false
	}
	var k Key
	var err error
	if k.ContainerID, err = unescape(cid); err != nil {
		return Key{}, false
	}
	if k.IfName, err = unescape(ifn); err != nil {
		return Key{}, false
	}
	k.Network = network
	return k, k.Validate() == nil
}
