package sidenet

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
)

// frame builds an Ethernet frame of ethertype et around payload.
func frame(et uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	binary.BigEndian.PutUint16(b[12:], et)
	return append(b, payload...)
}

// ip4 is an IPv4 header of ihl 32-bit words (5 or more) for proto,
// fragment field frag, followed by l4.
func ip4(ihl int, proto byte, frag uint16, l4 []byte) []byte {
	h := make([]byte, 4*ihl)
	h[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(h[6:], frag)
	h[9] = proto
	return append(h, l4...)
}

func ip6(next byte, l4 []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	h[6] = next
	return append(h, l4...)
}

func tcpFlags(flags byte) []byte {
	h := make([]byte, 20)
	h[13] = flags
	return h
}

const (
	syn = 0x02
	ack = 0x10
	fin = 0x01
	rst = 0x04
	psh = 0x08
)

func TestEgressProgram(t *testing.T) {
	vm, err := bpf.NewVM(rawToInstructions(egressProgram))
	if err != nil {
		t.Fatalf("the program does not load: %v", err)
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		want  int
	}{
		{"ARP", frame(0x0806, make([]byte, 28)), actOK},
		{"IPv4 TCP SYN", frame(0x0800, ip4(5, 6, 0, tcpFlags(syn))), actShot},
		{"IPv4 TCP SYN with options", frame(0x0800, ip4(7, 6, 0, tcpFlags(syn))), actShot},
		{"IPv4 TCP SYN+FIN", frame(0x0800, ip4(5, 6, 0, tcpFlags(syn|fin))), actShot},
		{"IPv4 TCP SYN+ACK", frame(0x0800, ip4(5, 6, 0, tcpFlags(syn|ack))), actOK},
		{"IPv4 TCP ACK", frame(0x0800, ip4(5, 6, 0, tcpFlags(ack|psh))), actOK},
		{"IPv4 TCP RST", frame(0x0800, ip4(5, 6, 0, tcpFlags(rst))), actOK},
		{"IPv4 TCP with DF", frame(0x0800, ip4(5, 6, 0x4000, tcpFlags(ack))), actOK},
		{"IPv4 TCP fragment", frame(0x0800, ip4(5, 6, 0x0010, tcpFlags(ack))), actShot},
		{"IPv4 UDP", frame(0x0800, ip4(5, 17, 0, make([]byte, 8))), actOK},
		{"ICMP echo request", frame(0x0800, ip4(5, 1, 0, []byte{8, 0, 0, 0})), actShot},
		{"ICMP port unreachable", frame(0x0800, ip4(5, 1, 0, []byte{3, 3, 0, 0})), actShot},
		{"IPv4 GRE", frame(0x0800, ip4(5, 47, 0, make([]byte, 8))), actShot},
		{"IPv6 TCP SYN", frame(0x86dd, ip6(6, tcpFlags(syn))), actShot},
		{"IPv6 TCP SYN+ACK", frame(0x86dd, ip6(6, tcpFlags(syn|ack))), actOK},
		{"IPv6 TCP ACK", frame(0x86dd, ip6(6, tcpFlags(ack))), actOK},
		{"IPv6 UDP", frame(0x86dd, ip6(17, make([]byte, 8))), actOK},
		{"IPv6 hop-by-hop header", frame(0x86dd, ip6(0, make([]byte, 28))), actShot},
		{"IPv6 fragment header", frame(0x86dd, ip6(44, make([]byte, 28))), actShot},
		{"ICMPv6 echo request", frame(0x86dd, ip6(58, []byte{128, 0, 0, 0})), actShot},
		{"ICMPv6 router solicitation", frame(0x86dd, ip6(58, []byte{133, 0, 0, 0})), actOK},
		{"ICMPv6 neighbour solicitation", frame(0x86dd, ip6(58, []byte{135, 0, 0, 0})), actOK},
		{"ICMPv6 neighbour advertisement", frame(0x86dd, ip6(58, []byte{136, 0, 0, 0})), actOK},
		{"ICMPv6 redirect", frame(0x86dd, ip6(58, []byte{137, 0, 0, 0})), actShot},
		{"ICMPv6 packet too big", frame(0x86dd, ip6(58, []byte{2, 0, 0, 0})), actShot},
		{"VLAN", frame(0x8100, make([]byte, 40)), actShot},
		{"unknown ethertype", frame(0x88cc, make([]byte, 40)), actShot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := vm.Run(tc.frame)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if got != tc.want {
				t.Errorf("verdict %d, want %d", got, tc.want)
			}
		})
	}
}

func rawToInstructions(raw []bpf.RawInstruction) []bpf.Instruction {
	out := make([]bpf.Instruction, len(raw))
	for i, r := range raw {
		out[i] = r.Disassemble()
	}
	return out
}

func TestOpsBytes(t *testing.T) {
	b := opsBytes(egressProgram)
	if len(b) != 8*len(egressProgram) {
		t.Fatalf("%d bytes for %d instructions", len(b), len(egressProgram))
	}
	first := egressProgram[0]
	if binary.NativeEndian.Uint16(b) != first.Op || b[2] != first.Jt || b[3] != first.Jf || binary.NativeEndian.Uint32(b[4:]) != first.K {
		t.Errorf("first instruction encoded as % x, want %+v", b[:8], first)
	}
}
