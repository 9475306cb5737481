package cni

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/podman"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// TestErrorTable feeds outcomes of the error table to the CNI mapping and
// checks the code and what the message must say (the rest of the table,
// errors only the core makes, is attach's TestDescribe; TestCodes maps
// its kinds).
func TestErrorTable(t *testing.T) {
	r8080 := wire.NewRule(wire.ProtoTCP, netip.Addr{}, 8080, 8080, 80, wire.FlagDualStack)
	r9000 := wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("127.0.0.1"), 9000, 9003, 90, 0)
	host := wire.NewTable(1, wire.PifHost, 0x3f, r8080)
	const sock = "/run/pp.sock"
	for _, tc := range []struct {
		name string
		err  error
		code uint
		want []string
	}{
		{"safe fail from the forwarder", &ctlclient.StatusError{Path: sock, Result: &ctlclient.Result{Status: ctlclient.StatusSafeFail,
			Edits: []wire.Edit{{Pif: wire.PifHost, Add: []wire.Rule{r8080}}}, Cause: errors.New("forwarder closed the connection")}},
			100, []string{sock, "add HOST TCP [*]:8080  =>  80", "closed the connection"}},
		{"socket fail", &ctlclient.StatusError{Path: sock, Result: &ctlclient.Result{Status: ctlclient.StatusSocketFail,
			Failed: []ctlclient.RuleFailure{{PifRule: ctlclient.PifRule{Pif: wire.PifHost, Rule: r9000}, Ports: []uint16{9000, 9001, 9003}}}}},
			101, []string{sock, "rolled back", "9000-9001, 9003", "TCP [127.0.0.1]:9000-9003"}},
		{"socket fail of rules already in place", &ctlclient.StatusError{Path: sock, Result: &ctlclient.Result{Status: ctlclient.StatusSocketFail,
			Failed: []ctlclient.RuleFailure{{PifRule: ctlclient.PifRule{Pif: wire.PifHost, Rule: r9000}, Ports: []uint16{9000}}}, Cause: ctlclient.ErrNothingToUndo}},
			101, []string{sock, "in place already, nothing was changed", "9000"}},
		{"rollback fail", &ctlclient.StatusError{Path: sock, Result: &ctlclient.Result{Status: ctlclient.StatusRollbackFail,
			Failed: []ctlclient.RuleFailure{{PifRule: ctlclient.PifRule{Pif: wire.PifHost, Rule: r8080}, Ports: []uint16{8080}}},
			Tables: wire.Tables{host}, Cause: errors.New("rollback: connection reset")}},
			102, []string{sock, "active now: HOST [TCP [*]:8080  =>  80]", "rollback: connection reset"}},
		{"rollback fail, tables unknown", &ctlclient.StatusError{Path: sock, Result: &ctlclient.Result{Status: ctlclient.StatusRollbackFail}},
			102, []string{"unknown"}},
		{"partly in effect", &ctlclient.MixedError{Path: sock, Absent: []ctlclient.PifRule{{Pif: wire.PifHost, Rule: r9000}},
			Result: &ctlclient.Result{Tables: wire.Tables{host}}}, 102, []string{sock, "TCP [127.0.0.1]:9000-9003", "active now: HOST [TCP [*]:8080  =>  80]"}},
		{"unreachable", &ctlclient.UnreachableError{Path: sock, Err: syscall.ECONNREFUSED}, 11, []string{sock, "connection refused"}},
		{"record lock busy", &store.BusyError{Path: "/d/x.lock", Err: context.DeadlineExceeded}, 11, []string{"/d/x.lock"}},
		{"bad config", &attach.ConfigError{Setting: attach.SettingTimeout, Err: errors.New("bad")}, 7, []string{"configuration key timeout: bad"}},
		{"bad key of CNI's own", &attach.ConfigError{Key: "cniVersion", Err: errors.New("bad")}, 7, []string{"configuration key cniVersion: bad"}},
		{"Podman reserves the ports", &podman.ReservationError{Podman: podman.Process{PID: 42}, Reservation: podman.Reservation{Enabled: true}}, 7,
			[]string{"set enable_port_reservation = false", "pid 42", "containers.conf.d"}},
		{"bad mapping", &attach.MappingError{Index: 3, Field: attach.FieldHostPort, Err: translate.ErrPort}, 7, []string{"configuration key runtimeConfig.portMappings[3].hostPort: port out of range"}},
		{"bad mapping found by translate", &translate.MappingError{Index: 2, Err: translate.ErrFamily}, 7, []string{"configuration key runtimeConfig.portMappings[2].hostIP: address families differ"}},
		{"corrupt record", &store.CorruptError{Path: "/d/r.json", Err: errors.New("bad")}, types.ErrIOFailure, []string{"/d/r.json", "remove them there"}},
		{"corrupt record and backup", &store.CorruptError{Path: "/d/r.json", Err: errors.New("bad"), Backup: "/d/r.json.bak", BackupErr: errors.New("short")},
			types.ErrIOFailure, []string{"/d/r.json", "/d/r.json.bak", "short"}},
		{"newer record", &store.CorruptError{Path: "/d/r.json", Version: 3, Err: &store.VersionError{Version: 3}}, types.ErrIOFailure, []string{"/d/r.json", "newer", "version 3"}},
		{"unsafe path", fmt.Errorf("store: %w", &store.UnsafeError{Path: "/d/r.json", What: "is a FIFO"}), types.ErrIOFailure, []string{"/d/r.json", "is a FIFO", "unsafe"}},
		{"socket path too long", cfgErr("socket", "expands to %q, %d bytes long", "/x", 200), 7, []string{"socket", "200 bytes"}},
		{"data directory unusable", fmt.Errorf("store: %w", &fs.PathError{Op: "mkdir", Path: "/var/lib/x", Err: syscall.EACCES}), types.ErrIOFailure, []string{"/var/lib/x", "permission denied"}},
		{"second network", &attach.SecondNetworkError{Why: "the previous result already has interface \"eth0\""}, 7,
			[]string{`no "socket" to let it make the network`, `set "socket" to use a forwarder started elsewhere`, `"allowChained": true`}},
		{"data directory from the core", &attach.ConfigError{Setting: attach.SettingDataDir, Err: errors.New("not set, and ...")}, 7, []string{"configuration key dataDir: not set"}},
		{"rootless data directory, not ready", &attach.StatusError{Err: &attach.ConfigError{Setting: attach.SettingDataDir, Err: errors.New("not set")}}, 50, []string{"configuration key dataDir: not set"}},
		{"mapping conflict", &translate.TableError{Pif: wire.PifHost, Rule: r8080, Err: translate.ErrConflict, Entries: []int{4}}, 100, []string{"rule made from portMappings entry 4"}},
		{"unnamed", errors.New("something"), 999, []string{"something"}},
	} {
		e := cniErr(tc.err).(*types.Error)
		if e.Code != tc.code {
			t.Errorf("%s: code %d, want %d (%v)", tc.name, e.Code, tc.code, e)
		}
		for _, w := range tc.want {
			if !strings.Contains(e.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.name, e.Error(), w)
			}
		}
	}
	if cniErr(nil) != nil {
		t.Error("nil error mapped to an error")
	}
}

// TestCodes: every kind of the core gets the number of the core's one
// table, the README's codes, and what cannot be named CNI's 999.
func TestCodes(t *testing.T) {
	want := map[attach.Kind]uint{
		attach.KindSafeFail: 100, attach.KindSocketFail: 101, attach.KindRollbackFail: 102, attach.KindMismatch: 103,
		attach.KindCheckFailed: 104, attach.KindUnreachable: 11, attach.KindBadConfig: 7, attach.KindNotAvailable: 50,
		attach.KindIO: types.ErrIOFailure, attach.KindUnknown: 999,
	}
	for _, k := range attach.Kinds() {
		code, ok := want[k]
		if !ok {
			t.Errorf("no CNI code known for %v", k)
			continue
		}
		if got := toCNI(&attach.Error{Kind: k, Msg: "m", Details: "d"}); got.Code != code || int(got.Code) != k.Code(999) || got.Msg != "m" || got.Details != "d" {
			t.Errorf("%v: %+v, want code %d", k, got, code)
		}
	}
}
