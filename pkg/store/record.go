// Package store keeps the plugin's ownership records: for every CNI
// attachment (network name, container ID, interface name) the forwarder it
// used and the exact rules it put into that forwarder's tables. The records
// are what let DEL, CHECK and GC work when a runtime sends no port
// mappings, and what make ADD idempotent across plugin processes.
//
// Layout under the data directory:
//
//	DIR/NETWORK/CONTAINERID@IFNAME.json       the record (JSON, one per attachment)
//	DIR/NETWORK/CONTAINERID@IFNAME.json.bak   its backup copy
//	DIR/NETWORK/CONTAINERID@IFNAME.lock       its lock file (flock)
//
// Name components are escaped (see escape) so that any input maps to one
// file inside DIR. A record is written atomically: temporary file in the
// same directory, fsync, rename, fsync of the directory; the backup copy
// is written the same way beside it, so that a record file damaged or lost
// later (truncated, overwritten, removed) is read from its copy and what
// the attachment owns is never lost. Writers of one
// record are serialized by an exclusive flock on its lock file, taken with
// a deadline; readers need no lock because a record file is only ever
// replaced whole.
//
// Rules are kept as the hex of their 56-byte encoding, which is what the
// plugin compares byte for byte with the forwarder's tables, and beside it
// in pesto's notation for a person to read. The hex is authoritative.
package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// FormatVersion is the version of the record format written by this package.
const FormatVersion = 1

// Key names one attachment.
type Key struct {
	Network     string
	ContainerID string
	IfName      string
}

func (k Key) String() string {
	return fmt.Sprintf("network %q container %q interface %q", k.Network, k.ContainerID, k.IfName)
}

// Validate reports an empty component or one holding a NUL byte, as a
// *KeyError.
func (k Key) Validate() error {
	for _, c := range []struct{ name, v string }{{"network", k.Network}, {"container ID", k.ContainerID}, {"interface", k.IfName}} {
		if c.v == "" {
			return &KeyError{Part: c.name, Why: "is empty"}
		}
		for i := 0; i < len(c.v); i++ {
			if c.v[i] == 0 {
				return &KeyError{Part: c.name, Why: fmt.Sprintf("%q holds a NUL byte", c.v)}
			}
		}
	}
	return nil
}

// KeyError is a key that names no attachment: the caller's input is at
// fault (an empty interface name, say).
type KeyError struct {
	Part string // "network", "container ID" or "interface"
	Why  string
}

func (e *KeyError) Error() string { return "attachment key: the " + e.Part + " " + e.Why }

// Record is what one attachment owns.
type Record struct {
	Version     int    `json:"version"`
	Network     string `json:"network"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
	// Netns is the namespace path given at ADD (informational).
	Netns string `json:"netns,omitempty"`
	// Socket is the forwarder's control socket the rules were written to.
	Socket string `json:"socket"`
	// PIDFile is the forwarder's PID file, if known.
	PIDFile string `json:"pidFile,omitempty"`
	// Identity identifies the forwarder that Rules and Pending were
	// written to (nil when it could not be established): a forwarder
	// restarted at the same path has another one, and none of the rules
	// of before. It works across network namespaces (see Identity).
	Identity *Identity `json:"identity,omitempty"`
	// ForwarderID is what records of earlier versions identified the
	// forwarder by: the inode of its listening control socket in the
	// plugin's /proc/net/unix (0 when unknown). It is read, never
	// written.
	ForwarderID uint64 `json:"forwarderID,omitempty"`
	// Managed is true when the plugin started the forwarder itself; Dir
	// is then its per-attachment directory.
	Managed bool   `json:"managed,omitempty"`
	Dir     string `json:"forwarderDir,omitempty"`
	// Rules are the rules this attachment owns, per pif, in the order
	// they were added.
	Rules []OwnedRule `json:"rules"`
	// Pending are rules an ADD was about to add: written before its
	// transaction and cleared after it. A run that died in between may
	// have left them in the forwarder's table; the next ADD adopts them
	// and DEL removes them where present, while a rule that is neither
	// owned nor pending is another client's and is never taken over.
	Pending []OwnedRule `json:"pending,omitempty"`
	// Side is what a chained attachment set up in the pod's namespace
	// besides its managed forwarder (nil for other attachments): DEL and
	// GC remove it, CHECK checks it.
	Side *Side `json:"side,omitempty"`
	// Intent numbers the intents of the attachment (see Locked.Arm): an
	// intent counts only while its number is above its record's.
	Intent  uint64    `json:"intent,omitempty"`
	Updated time.Time `json:"updated"`
}

// Side is a chained attachment's side interface in the pod's namespace
// (Netns): the tap pasta made, the pod's and pasta's addresses on it (an
// invalid prefix: none of that family), and the rules and table that send
// the side's replies through it.
type Side struct {
	// NetnsInode is the inode of the namespace at Netns when the side was
	// set up: a namespace at that path with another inode is not the pod's.
	NetnsInode uint64       `json:"netnsInode"`
	IfName     string       `json:"ifname"`
	Table      int          `json:"table"`
	Priority   int          `json:"priority"`
	Addr4      netip.Prefix `json:"addr4,omitzero"`
	Gateway4   netip.Addr   `json:"gateway4,omitzero"`
	Addr6      netip.Prefix `json:"addr6,omitzero"`
	Gateway6   netip.Addr   `json:"gateway6,omitzero"`
}

// Identity names one forwarder (see ctlclient.Identity): the pid that
// created its listening control socket (SO_PEERCRED) and the device,
// inode and creation time of its socket file.
type Identity struct {
	PeerPID int32  `json:"peerPID"`
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	Born    int64  `json:"born"`
}

// Claimed returns the owned rules followed by the pending ones not among
// them: every rule of this attachment that may be in a table.
func (r *Record) Claimed() []OwnedRule { return wire.Union(r.Rules, r.Pending) }

// Key returns the record's key.
func (r *Record) Key() Key {
	return Key{Network: r.Network, ContainerID: r.ContainerID, IfName: r.IfName}
}

// OwnedRule is a rule in a named pif's table. Its JSON form (pif, rule
// in pesto notation, and the authoritative bytes in hex) is
// wire.PifRule's.
type OwnedRule = wire.PifRule

// marshal encodes v without escaping '<', '>' and '&', so that pesto's
// "=>" stays readable in the file.
func marshal(v any, indent string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Encode returns the record's file contents: indented JSON and a newline.
func Encode(r *Record) ([]byte, error) {
	b, err := marshal(r, "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Decode parses a record file. It refuses unknown format versions.
func Decode(b []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	if r.Version > FormatVersion {
		return nil, &VersionError{Version: r.Version}
	}
	if r.Version != FormatVersion {
		return nil, fmt.Errorf("record format version %d, this plugin reads %d", r.Version, FormatVersion)
	}
	if err := r.Key().Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}
