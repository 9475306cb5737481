package sidenet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Verdicts of a direct-action classifier (linux/pkt_cls.h).
const (
	actOK   = 0 // TC_ACT_OK: the frame goes on to pasta
	actShot = 2 // TC_ACT_SHOT: dropped
)

// filterPriority is the egress filter's priority on the tap (the tap is
// pasta's and the plugin's alone: no other filter is expected there).
const filterPriority = 1

// Offsets in an Ethernet frame (the tap's): a classifier sees the frame
// from its link-layer header on.
const (
	offEtherType = 12
	offIP        = 14
	offIP4Proto  = offIP + 9
	offIP4Frag   = offIP + 6
	offIP6Next   = offIP + 6
	offIP6L4     = offIP + 40
	offTCPFlags  = 13 // within the TCP header
)

// The frames a pod process may send into pasta: replies. Everything that
// could make pasta open a connection or send a request on the pod's
// behalf is dropped: a TCP segment with SYN and without ACK (a new
// connection; pasta answers anything else that belongs to no connection
// with a reset), IPv4 fragments after the first (they carry no TCP header
// to judge; pasta drops fragments anyway), every ICMP message, ICMPv6
// other than router and neighbour solicitations and advertisements (link
// resolution), IPv6 with extension headers, and other protocols. UDP goes
// on: pasta opens no flow for a datagram that is not a reply, since its
// outbound address cannot be bound on the node.
var egressProgram = mustAssemble([]step{
	{ins: bpf.LoadAbsolute{Off: offEtherType, Size: 2}},
	{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_ARP}, yes: "ok"},
	{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IP}, yes: "ip4"},
	{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IPV6}, yes: "ip6"},
	{ins: bpf.RetConstant{Val: actShot}},

	{label: "ip4", ins: bpf.LoadAbsolute{Off: offIP4Proto, Size: 1}},
	{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_UDP}, yes: "ok"},
	{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_TCP}, yes: "tcp4"},
	{ins: bpf.RetConstant{Val: actShot}},
	{label: "tcp4", ins: bpf.LoadAbsolute{Off: offIP4Frag, Size: 2}},
	{ins: bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff}, yes: "shot"},
	{ins: bpf.LoadMemShift{Off: offIP}},
	{ins: bpf.LoadIndirect{Off: offIP + offTCPFlags, Size: 1}},
	{ins: bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x12}},
	{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x02}, yes: "shot"}, // SYN, no ACK
	{ins: bpf.RetConstant{Val: actOK}},

	{label: "ip6", ins: bpf.LoadAbsolute{Off: offIP6Next, Size: 1}},
	{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_UDP}, yes: "ok"},
	{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_TCP}, yes: "tcp6"},
	{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_ICMPV6}, yes: "icmp6"},
	{ins: bpf.RetConstant{Val: actShot}},
	{label: "tcp6", ins: bpf.LoadAbsolute{Off: offIP6L4 + offTCPFlags, Size: 1}},
	{ins: bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x12}},
	{ins: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x02}, yes: "shot"},
	{ins: bpf.RetConstant{Val: actOK}},
	{label: "icmp6", ins: bpf.LoadAbsolute{Off: offIP6L4, Size: 1}},
	{ins: bpf.JumpIf{Cond: bpf.JumpLessThan, Val: 133}, yes: "shot"},    // below router solicitation
	{ins: bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: 136}, yes: "shot"}, // above neighbour advertisement
	{ins: bpf.RetConstant{Val: actOK}},

	{label: "shot", ins: bpf.RetConstant{Val: actShot}},
	{label: "ok", ins: bpf.RetConstant{Val: actOK}},
})

// step is one instruction of a program with symbolic jumps: a JumpIf goes
// to the step labelled yes when its condition holds, else to the next.
type step struct {
	label string
	ins   bpf.Instruction
	yes   string
}

// mustAssemble resolves the labels of steps and assembles them.
func mustAssemble(steps []step) []bpf.RawInstruction {
	at := map[string]int{}
	for i, s := range steps {
		if s.label != "" {
			at[s.label] = i
		}
	}
	prog := make([]bpf.Instruction, len(steps))
	for i, s := range steps {
		prog[i] = s.ins
		if s.yes == "" {
			continue
		}
		j, ok := s.ins.(bpf.JumpIf)
		to, found := at[s.yes]
		if !ok || !found || to <= i || to-i-1 > 255 {
			panic(fmt.Sprintf("sidenet: bad jump at step %d to %q", i, s.yes))
		}
		j.SkipTrue = uint8(to - i - 1)
		prog[i] = j
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		panic(fmt.Sprintf("sidenet: %v", err))
	}
	return raw
}

// EgressProgram returns the classic BPF program of the tap's egress
// filter (a copy).
func EgressProgram() []bpf.RawInstruction {
	return append([]bpf.RawInstruction(nil), egressProgram...)
}

// opsBytes is a program as struct sock_filter[] in host order.
func opsBytes(prog []bpf.RawInstruction) []byte {
	b := make([]byte, 0, 8*len(prog))
	for _, ri := range prog {
		b = binary.NativeEndian.AppendUint16(b, ri.Op)
		b = append(b, ri.Jt, ri.Jf)
		b = binary.NativeEndian.AppendUint32(b, ri.K)
	}
	return b
}

// egressParent is the clsact qdisc's egress hook.
const egressParent = netlink.HANDLE_MIN_EGRESS

// installFilter adds a clsact qdisc to link and the egress program on it,
// unless the program is already there.
func installFilter(link netlink.Link) error {
	idx := link.Attrs().Index
	have, err := filterInstalled(idx)
	if err != nil || have {
		return err
	}
	q := &netlink.GenericQdisc{QdiscType: "clsact", QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}
	if err := netlink.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add a clsact qdisc to %s (the kernel needs sch_ingress): %w", link.Attrs().Name, err)
	}
	req := nl.NewNetlinkRequest(unix.RTM_NEWTFILTER, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(&nl.TcMsg{Family: nl.FAMILY_ALL, Ifindex: int32(idx), Handle: 1, Parent: egressParent,
		Info: netlink.MakeHandle(filterPriority, nl.Swap16(unix.ETH_P_ALL))})
	req.AddData(nl.NewRtAttr(nl.TCA_KIND, nl.ZeroTerminated("bpf")))
	opts := nl.NewRtAttr(nl.TCA_OPTIONS, nil)
	opts.AddRtAttr(nl.TCA_BPF_OPS_LEN, nl.Uint16Attr(uint16(len(egressProgram))))
	opts.AddRtAttr(nl.TCA_BPF_OPS, opsBytes(egressProgram))
	opts.AddRtAttr(nl.TCA_BPF_FLAGS, nl.Uint32Attr(nl.TCA_BPF_FLAG_ACT_DIRECT))
	req.AddData(opts)
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("add the egress filter to %s (the kernel needs cls_bpf): %w", link.Attrs().Name, err)
	}
	return nil
}

// filterInstalled reports whether the egress hook of the link with index
// idx holds the program, in direct-action mode.
func filterInstalled(idx int) (bool, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETTFILTER, unix.NLM_F_DUMP)
	req.AddData(&nl.TcMsg{Family: nl.FAMILY_ALL, Ifindex: int32(idx), Parent: egressParent})
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWTFILTER)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return false, nil // no clsact qdisc yet
	}
	if err != nil {
		return false, fmt.Errorf("list the egress filters: %w", err)
	}
	want := opsBytes(egressProgram)
	for _, m := range msgs {
		attrs, err := nl.ParseRouteAttr(m[nl.SizeofTcMsg:])
		if err != nil {
			return false, fmt.Errorf("parse an egress filter: %w", err)
		}
		var kind string
		var opts []byte
		for _, a := range attrs {
			switch a.Attr.Type {
			case nl.TCA_KIND:
				kind = string(bytes.TrimRight(a.Value, "\x00"))
			case nl.TCA_OPTIONS:
				opts = a.Value
			}
		}
		if kind != "bpf" || opts == nil {
			continue
		}
		inner, err := nl.ParseRouteAttr(opts)
		if err != nil {
			return false, fmt.Errorf("parse an egress filter's options: %w", err)
		}
		var ops []byte
		var direct bool
		for _, a := range inner {
			switch a.Attr.Type {
			case nl.TCA_BPF_OPS:
				ops = a.Value
			case nl.TCA_BPF_FLAGS:
				direct = len(a.Value) >= 4 && binary.NativeEndian.Uint32(a.Value)&nl.TCA_BPF_FLAG_ACT_DIRECT != 0
			}
		}
		if direct && bytes.Equal(ops, want) {
			return true, nil
		}
	}
	return false, nil
}
