package attach

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/podman"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// TestDescribe feeds each outcome of the error table to Describe and
// checks its kind (the front ends map kinds onto codes) and what the words
// must say.
func TestDescribe(t *testing.T) {
	r8080 := wire.NewRule(wire.ProtoTCP, netip.Addr{}, 8080, 8080, 80, wire.FlagDualStack)
	r9000 := wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("127.0.0.1"), 9000, 9003, 90, 0)
	host := wire.NewTable(1, wire.PifHost, 0x3f, r8080)
	const sock = "/run/pp.sock"
	for _, tc := range []struct {
		name string
		err  error
		kind Kind
		want []string
	}{
		{"safe fail from the planner", atSocket(sock, fmt.Errorf("plan: %w", &translate.TableError{Pif: wire.PifHost, Rule: r8080, Err: translate.ErrConflict, Entries: []int{2}})),
			KindSafeFail, []string{sock, "conflict", "entry 2"}},
		{"safe fail from the forwarder", &ctlclient.StatusError{Path: sock, Result: &ctlclient.Result{Status: ctlclient.StatusSafeFail,
			Edits: []wire.Edit{{Pif: wire.PifHost, Add: []wire.Rule{r8080}}}, Cause: errors.New("forwarder closed the connection")}},
			KindSafeFail, []string{sock, "add HOST TCP [*]:8080  =>  80", "closed the connection"}},
		{"socket fail", &ctlclient.StatusError{Path: sock, Result: &ctlclient.Result{Status: ctlclient.StatusSocketFail,
			Failed: []ctlclient.RuleFailure{{PifRule: ctlclient.PifRule{Pif: wire.PifHost, Rule: r9000}, Ports: []uint16{9000, 9001, 9003}}}}},
			KindSocketFail, []string{sock, "rolled back", "9000-9001, 9003", "TCP [127.0.0.1]:9000-9003"}},
		{"socket fail of rules already in place", &ctlclient.StatusError{Path: sock, Result: &ctlclient.Result{Status: ctlclient.StatusSocketFail,
			Failed: []ctlclient.RuleFailure{{PifRule: ctlclient.PifRule{Pif: wire.PifHost, Rule: r9000}, Ports: []uint16{9000}}}, Cause: ctlclient.ErrNothingToUndo}},
			KindSocketFail, []string{sock, "in place already, nothing was changed", "9000"}},
		{"rollback fail", &ctlclient.StatusError{Path: sock, Result: &ctlclient.Result{Status: ctlclient.StatusRollbackFail,
			Failed: []ctlclient.RuleFailure{{PifRule: ctlclient.PifRule{Pif: wire.PifHost, Rule: r8080}, Ports: []uint16{8080}}},
			Tables: wire.Tables{host}, Cause: errors.New("rollback: connection reset")}},
			KindRollbackFail, []string{sock, "active now: HOST [TCP [*]:8080  =>  80]", "rollback: connection reset"}},
		{"rollback fail, tables unknown", &ctlclient.StatusError{Path: sock, Result: &ctlclient.Result{Status: ctlclient.StatusRollbackFail}},
			KindRollbackFail, []string{"unknown"}},
		{"partly in effect", &ctlclient.MixedError{Path: sock, Absent: []ctlclient.PifRule{{Pif: wire.PifHost, Rule: r9000}},
			Result: &ctlclient.Result{Tables: wire.Tables{host}}}, KindRollbackFail, []string{sock, "TCP [127.0.0.1]:9000-9003", "active now: HOST [TCP [*]:8080  =>  80]"}},
		{"protocol mismatch", atSocket(sock, fmt.Errorf("read: %w", &wire.MismatchError{Field: "version", Got: "3", Want: "[2]"})),
			KindMismatch, []string{sock, "announced version 3", "supports [2]"}},
		{"check", &CheckError{Socket: sock, Reasons: []string{"missing: HOST TCP [*]:8080  =>  80", "not listening: HOST x: host ports 9000"}},
			KindCheckFailed, []string{sock, "missing: HOST TCP [*]:8080", "host ports 9000"}},
		{"unreachable", &ctlclient.UnreachableError{Path: sock, Err: syscall.ECONNREFUSED}, KindUnreachable, []string{sock, "connection refused"}},
		{"busy", atSocket(sock, &ctlclient.UnreachableError{Path: sock, Err: context.DeadlineExceeded}), KindUnreachable, []string{sock, "deadline"}},
		{"record lock busy", &store.BusyError{Path: "/d/x.lock", Err: context.DeadlineExceeded}, KindUnreachable, []string{"/d/x.lock"}},
		{"bad config", &ConfigError{Key: "timeout", Err: errors.New("bad")}, KindBadConfig, []string{"timeout"}},
		{"bad mapping", &MappingError{Index: 3, Field: FieldHostPort, Err: fmt.Errorf("%w: 0 is not in 1..65535", translate.ErrPort)}, KindBadConfig, []string{"portMappings[3].hostPort", "port out of range"}},
		{"bad mapping found by translate", &translate.MappingError{Index: 3, Mapping: translate.PortMapping{HostPort: 80, HostIP: "::1"}, Err: translate.ErrFamily}, KindBadConfig, []string{"portMappings[3].hostIP", "families differ"}},
		{"Podman reserves the ports", &podman.ReservationError{Podman: podman.Process{PID: 42}, Reservation: podman.Reservation{Enabled: true}}, KindBadConfig, []string{"enable_port_reservation = false", "pid 42"}},
		{"status", &StatusError{Err: errors.New("forwarder at /s: refused")}, KindNotAvailable, []string{"/s", "refused"}},
		{"pasta missing", &forwarderError{Op: "start", Dir: "/d", Err: exec.ErrNotFound}, KindBadConfig, []string{"/d", "pasta"}},
		{"pasta did not come up", &forwarderError{Op: "start", Dir: "/d", Err: errors.New("no hello within 5s")}, KindUnreachable, []string{"/d", "no hello"}},
		{"corrupt record", &store.CorruptError{Path: "/d/r.json", Err: errors.New("bad")}, KindIO, []string{"/d/r.json", "remove them there"}},
		{"record names another directory", &recordDirError{Dir: "/etc", Want: "/d/forwarders/ab", Key: store.Key{Network: "n", ContainerID: "c", IfName: "e"}},
			KindIO, []string{"/etc", "/d/forwarders/ab", "nothing was stopped or removed"}},
		{"data directory unusable", fmt.Errorf("store: %w", &fs.PathError{Op: "mkdir", Path: "/var/lib/x", Err: syscall.EACCES}), KindIO, []string{"/var/lib/x", "permission denied"}},
		{"passed through", &Error{Kind: KindSafeFail, Msg: "m", Details: "d"}, KindSafeFail, []string{"d"}},
		{"unnamed", errors.New("something"), KindUnknown, []string{"something"}},
	} {
		e := Describe(tc.err, nil)
		if e.Kind != tc.kind {
			t.Errorf("%s: kind %v, want %v (%v)", tc.name, e.Kind, tc.kind, e)
		}
		for _, w := range tc.want {
			if !strings.Contains(e.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.name, e.Error(), w)
			}
		}
	}
	if Describe(nil, nil) != nil {
		t.Error("nil error mapped to an error")
	}
}

// otherDialect is a front end whose input names things differently and
// has no socket or allowChained setting.
type otherDialect struct{}

func (otherDialect) Setting(s Setting) string {
	if s == SettingSocket || s == SettingAllowChained {
		return ""
	}
	return "opt-" + s.String()
}
func (otherDialect) Mapping(i int, f Field) string { return fmt.Sprintf("port_mappings[%d].f%d", i, f) }
func (otherDialect) Mappings() string              { return "port_mappings" }
func (otherDialect) Locate(place string) string    { return "option " + place }

// TestDescribeDialect: the core's errors name settings and mappings in
// the front end's words, and never what its input does not have.
func TestDescribeDialect(t *testing.T) {
	r8080 := wire.NewRule(wire.ProtoTCP, netip.Addr{}, 8080, 8080, 80, wire.FlagDualStack)
	refused := &ctlclient.StatusError{Path: "/s", Result: &ctlclient.Result{Status: ctlclient.StatusSafeFail}}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"second network", &SecondNetworkError{Why: "namespace /ns already has an interface other than lo"}, "connect the container to this network alone"},
		{"a setting", &ConfigError{Setting: SettingDataDir, Err: errors.New("too long")}, "option opt-dataDir: too long"},
		{"a setting, not ready", &StatusError{Err: &ConfigError{Setting: SettingDataDir, Err: errors.New("not set")}}, "option opt-dataDir: not set"},
		{"pasta found late", &forwarderError{Op: "start", Dir: "/d", Err: exec.ErrNotFound}, "option opt-pasta: "},
		{"a mapping", &MappingError{Index: 3, Field: FieldHostPort, Err: translate.ErrPort}, "option port_mappings[3].f1: port out of range"},
		{"a mapping translate refused", &translate.MappingError{Index: 3, Err: translate.ErrFamily}, "option port_mappings[3].f4: address families differ"},
		{"an entry of a list", &ConfigError{Setting: SettingPastaArgs, List: true, Entry: 2, Err: errors.New("bad")}, "option opt-pastaArgs[2]: bad"},
		{"several settings", &ConfigError{Setting: SettingSideInterface, Also: []Setting{SettingSideTable}, Err: errors.New("clash")}, "option opt-sideInterface, opt-sideTable: clash"},
		{"a front end's own key", &ConfigError{Key: "network_options.interface_name", Err: errors.New("is empty")}, "option network_options.interface_name: is empty"},
		{"a conflict", &translate.TableError{Pif: wire.PifHost, Rule: r8080, Err: translate.ErrConflict, Entries: []int{2, 3}}, "rule made from port_mappings entries 2-3"},
		{"a refused update", &annotated{Err: refused, From: []ruleFrom{{Rule: wire.PifRule{Pif: wire.PifHost, Rule: r8080}, Entries: []int{0}}}},
			"HOST TCP [*]:8080  =>  80 from port_mappings entry 0"},
	} {
		e := Describe(tc.err, otherDialect{})
		if s := e.Error(); !strings.Contains(s, tc.want) || strings.Contains(s, "portMappings") || strings.Contains(s, `"socket"`) ||
			strings.Contains(s, "allowChained") || strings.Contains(s, "configuration key") || strings.Contains(s, "hostPort") {
			t.Errorf("%s: %q, want %q in the front end's words only", tc.name, s, tc.want)
		}
		if tc.name == "second network" {
			continue // a managed attachment's: never the outcome of an ADD that waited for another's batch
		}
		// Described by a leader for an ADD that waited (group commit),
		// the waiter's front end names things as it would alone.
		w := &waitedError{*Describe(tc.err, placeholders{})}
		for _, d := range []Dialect{otherDialect{}, nil} {
			if got, want := Describe(w, d), Describe(tc.err, d); got.Error() != want.Error() || got.Kind != want.Kind {
				t.Errorf("%s, described for a waiting ADD: %v %q, want %v %q", tc.name, got.Kind, got, want.Kind, want)
			}
		}
	}
}
