package main

import (
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// forwarderID identifies the forwarder listening at socket now: the inode
// of its listening control socket in /proc/net/unix, 0 when none listens
// there or it cannot be told. A forwarder that exits takes its rules with
// it; one started again at the same path has another inode.
func forwarderID(socket string) uint64 {
	inodes, err := procnet.UnixListeners(socket)
	if err != nil || len(inodes) != 1 {
		return 0
	}
	return inodes[0]
}

// restarted reports whether rec's rules were written to a forwarder other
// than the one listening at its socket now (id now): they went with that
// one, and a byte-equal rule in the running one is another client's.
func restarted(rec *store.Record, now uint64) bool {
	return rec.ForwarderID != 0 && now != 0 && now != rec.ForwarderID
}
