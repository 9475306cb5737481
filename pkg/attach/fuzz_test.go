package attach_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
)

// FuzzInputOptions: whatever a front end decoded, reading it does not
// panic; a refusal is a *ConfigError naming one of the core's settings;
// options it accepts pass the core's check again unchanged (what every
// entry point runs) and are usable: a positive timeout, a clean absolute
// data directory or none. pastaArgs are the words of args split at NUL.
// Seeds: testdata/fuzz/FuzzInputOptions.
func FuzzInputOptions(f *testing.F) {
	f.Add("/var/lib/pp", "5s", "pasta", "--mtu\x001400", "169.254.1.2,fd99::2", "10.0.2.15", "eth0", "pasta0", 20563, "169.254.100.0/30,fd41:e00e:44f8::/64")
	f.Add("", "", "", "", "", "", "", "", 0, "")
	f.Add("rel", "0s", "bin/pasta", "-c\x00/x", "127.0.0.1", "224.0.0.1", "a/b", "", 254, "10.0.0.0/30")
	f.Fuzz(func(t *testing.T, dataDir, timeout, pasta, args, loop, target, bind, sideIf string, table int, sideNet string) {
		in := attach.Input{DataDir: dataDir, Timeout: timeout, Pasta: pasta, MapHostLoopback: loop, TargetAddress: target,
			BindInterface: bind, SideInterface: sideIf, SideNetwork: sideNet}
		if args != "" {
			in.PastaArgs = strings.Split(args, "\x00")
		}
		if table != 0 {
			in.SideTable = &table
		}
		o, err := in.Options()
		if err != nil {
			var ce *attach.ConfigError
			if !errors.As(err, &ce) || ce.Setting < attach.SettingDataDir || ce.Setting > attach.SettingSideNetwork {
				t.Fatalf("refusal %T %v names no setting", err, err)
			}
			if ce.List && (ce.Entry < 0 || ce.Entry >= len(in.PastaArgs)) {
				t.Fatalf("refusal names entry %d of %d", ce.Entry, len(in.PastaArgs))
			}
			return
		}
		again := o
		if err := again.Check(); err != nil || again.DataDir != o.DataDir {
			t.Fatalf("accepted %+v, then the check says %v", o, err)
		}
		if o.Timeout <= 0 || o.DataDir != "" && (!filepath.IsAbs(o.DataDir) || filepath.Clean(o.DataDir) != o.DataDir) {
			t.Fatalf("accepted %+v", o)
		}
		if timeout == "" && o.Timeout != attach.DefaultTimeout || !o.Verify {
			t.Fatalf("defaults lost: %+v", o)
		}
	})
}

// FuzzCheckMappings: any mapping is checked without panicking; a refusal
// names the mapping and one of its fields.
func FuzzCheckMappings(f *testing.F) {
	f.Add("127.0.0.1", 8080, 80, 3, "tcp,udp")
	f.Add("", 0, 70000, -1, "sctp,")
	f.Fuzz(func(t *testing.T, hostIP string, host, ctr, rng int, protos string) {
		m := attach.Mapping{HostIP: hostIP, HostPort: host, ContainerPort: ctr, Range: rng}
		if protos != "" {
			m.Protocols = strings.Split(protos, ",")
		}
		err := attach.CheckMappings([]attach.Mapping{{HostPort: 1, ContainerPort: 1}, m})
		if err == nil {
			n := max(rng, 1)
			if host < 1 || ctr < 1 || host+n-1 > 65535 || ctr+n-1 > 65535 {
				t.Fatalf("%+v passed", m)
			}
			return
		}
		var me *attach.MappingError
		if !errors.As(err, &me) || me.Index != 1 || me.Field < attach.FieldHostPort || me.Field > attach.FieldRange {
			t.Fatalf("refusal %v (%+v) names no field of mapping 1", err, me)
		}
	})
}
