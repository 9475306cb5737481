package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkLockWrite measures one locked, atomic, fsynced record update,
// which every ADD that changes something pays once.
func BenchmarkLockWrite(b *testing.B) {
	s := New(b.TempDir())
	k := Key{"net", "c1", "eth0"}
	rules := sampleRules(b)
	for b.Loop() {
		l, err := s.Lock(context.Background(), k)
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Write(&Record{Network: k.Network, ContainerID: k.ContainerID, IfName: k.IfName, Socket: "/s", Rules: rules}); err != nil {
			b.Fatal(err)
		}
		l.Unlock()
	}
}

// BenchmarkGet measures reading a record without a lock (CHECK).
func BenchmarkGet(b *testing.B) {
	s := New(b.TempDir())
	k := Key{"net", "c1", "eth0"}
	l, _ := s.Lock(context.Background(), k)
	if err := l.Write(&Record{Network: k.Network, ContainerID: k.ContainerID, IfName: k.IfName, Socket: "/s", Rules: sampleRules(b)}); err != nil {
		b.Fatal(err)
	}
	l.Unlock()
	for b.Loop() {
		if _, err := s.Get(k); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkList1000 measures listing a network of 1000 attachments (GC).
func BenchmarkList1000(b *testing.B) {
	s := New(b.TempDir())
	for i := 0; i < 1000; i++ {
		k := Key{"net", fmt.Sprintf("c%04d", i), "eth0"}
		l, err := s.Lock(context.Background(), k)
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Write(&Record{Network: k.Network, ContainerID: k.ContainerID, IfName: k.IfName, Socket: "/s", Rules: sampleRules(b), Updated: time.Unix(1, 0)}); err != nil {
			b.Fatal(err)
		}
		l.Unlock()
	}
	for b.Loop() {
		es, err := s.List("net")
		if err != nil || len(es) != 1000 {
			b.Fatal(len(es), err)
		}
	}
}
