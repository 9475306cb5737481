package attach

import (
	"context"
	"fmt"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// BenchmarkReapOrphans: what the orphan reaper costs one managed ADD on
// a network with n managed attachments whose namespaces exist (the
// common case: nothing to reap). It looks at a bounded number of records
// per ADD, so the cost does not grow with n.
func BenchmarkReapOrphans(b *testing.B) {
	for _, n := range []int{0, 10, 110, 1000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			o := &Options{DataDir: b.TempDir(), Managed: true}
			st := recordStore(o)
			for i := range n {
				k := store.Key{Network: "bench", ContainerID: fmt.Sprintf("pod-%04d", i), IfName: "eth0"}
				dir := forwarderDir(o.DataDir, k)
				p := forwarder.Paths(dir)
				l, err := st.Lock(context.Background(), k)
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Write(&store.Record{Network: k.Network, ContainerID: k.ContainerID, IfName: k.IfName,
					Netns: "/proc/self/ns/net", Socket: p.Socket, PIDFile: p.PIDFile, Managed: true, Dir: dir}); err != nil {
					b.Fatal(err)
				}
				l.Unlock()
			}
			c := &Core{}
			self := store.Key{Network: "bench", ContainerID: "new", IfName: "eth0"}
			for b.Loop() {
				c.reapOrphans(context.Background(), o, self)
			}
		})
	}
}
