package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// portMapping is one CNI port mapping (runtimeConfig.portMappings).
type portMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// maps returns n TCP mappings on 127.0.0.1 from port first, every step
// ports, each to the same container port.
func maps(first, n, step int) []portMapping {
	out := make([]portMapping, n)
	for i := range out {
		p := first + i*step
		out[i] = portMapping{HostPort: p, ContainerPort: p, Protocol: "tcp", HostIP: "127.0.0.1"}
	}
	return out
}

// Container is one attachment: its ID and its port mappings.
type Container struct {
	ID   string
	Maps []portMapping
}

// Sample is one timed run of a command.
type Sample struct {
	Wall   time.Duration
	MaxRSS int64 // KiB, wait4 ru_maxrss (the largest process of the tree)
	// Oublock is wait4's ru_oublock: file system output operations, in
	// 512-byte blocks.
	Oublock int64
}

// Tool is a way to add and remove a container's port forwarding.
type Tool interface {
	Name() string
	Add(ctx context.Context, c Container) (Sample, error)
	Del(ctx context.Context, c Container) (Sample, error)
}

// runTimed runs argv with env and stdin and times it from just before the
// fork to the reaping of the process.
func runTimed(ctx context.Context, argv []string, env []string, stdin []byte) (Sample, []byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	var sm Sample
	sm.Wall = wall
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			sm.MaxRSS = ru.Maxrss
			sm.Oublock = ru.Oublock
		}
	}
	if err != nil {
		msg := strings.TrimSpace(out.String() + " " + errb.String())
		if len(msg) > 400 {
			msg = msg[:400] + "..."
		}
		return sm, out.Bytes(), fmt.Errorf("%s: %w: %s", argv[0], err, msg)
	}
	return sm, out.Bytes(), nil
}

// runMem is runTimed, but with memFile set the command runs under GNU
// time, whose %M (the peak RSS of the command and its children) replaces
// wait4's figure. Go starts children with vfork semantics, so the kernel
// counts the driver's own RSS in the child's ru_maxrss: only a small
// parent such as time gives the command's own peak.
func runMem(ctx context.Context, argv, env []string, stdin []byte, memFile string) (Sample, error) {
	if memFile == "" {
		sm, _, err := runTimed(ctx, argv, env, stdin)
		return sm, err
	}
	_ = os.Remove(memFile)
	sm, _, err := runTimed(ctx, append([]string{"/usr/bin/time", "-f", "%M", "-o", memFile}, argv...), env, stdin)
	if err != nil {
		return sm, err
	}
	b, err := os.ReadFile(memFile)
	if err != nil {
		return sm, fmt.Errorf("peak RSS of %s: %w", argv[0], err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return sm, fmt.Errorf("peak RSS of %s: empty output of time in %s", argv[0], memFile)
	}
	kib, err := strconv.ParseInt(f[len(f)-1], 10, 64)
	if err != nil {
		return sm, fmt.Errorf("peak RSS of %s: %w", argv[0], err)
	}
	sm.MaxRSS = kib
	return sm, nil
}

// baseEnv is the environment every command gets: PATH only, as a runtime
// would pass, plus what the caller adds.
func baseEnv(extra ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH")}, extra...)
}

// cniTool runs a CNI plugin binary the way a runtime does: CNI_* in the
// environment and the network configuration on stdin.
type cniTool struct {
	name    string
	binary  string
	cniPath string
	netns   string         // CNI_NETNS
	ifname  string         // CNI_IFNAME
	extra   map[string]any // plugin-specific keys
	prev    map[string]any // prevResult, nil for none

	memFile string // when set, run under GNU time and take the peak RSS from it

	mu   sync.Mutex
	conf map[string][]byte // container ID -> marshalled config (built before timing)
}

func (t *cniTool) Name() string { return t.name }

func (t *cniTool) config(c Container) ([]byte, error) {
	key := c.ID + "/" + strconv.Itoa(len(c.Maps))
	t.mu.Lock()
	defer t.mu.Unlock()
	if b, ok := t.conf[key]; ok {
		return b, nil
	}
	typ := t.binary[strings.LastIndex(t.binary, "/")+1:]
	m := map[string]any{
		"cniVersion":    "1.0.0",
		"name":          "h6bench",
		"type":          typ,
		"runtimeConfig": map[string]any{"portMappings": c.Maps},
	}
	for k, v := range t.extra {
		m[k] = v
	}
	if t.prev != nil {
		m["prevResult"] = t.prev
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("config of %s for %s: %w", t.name, c.ID, err)
	}
	if t.conf == nil {
		t.conf = map[string][]byte{}
	}
	t.conf[key] = b
	return b, nil
}

// Prepare builds the configuration of c ahead of timing.
func (t *cniTool) Prepare(c Container) error { _, err := t.config(c); return err }

func (t *cniTool) run(ctx context.Context, cmd string, c Container) (Sample, error) {
	conf, err := t.config(c)
	if err != nil {
		return Sample{}, err
	}
	env := baseEnv("CNI_COMMAND="+cmd, "CNI_CONTAINERID="+c.ID, "CNI_NETNS="+t.netns,
		"CNI_IFNAME="+t.ifname, "CNI_PATH="+t.cniPath)
	sm, err := runMem(ctx, []string{t.binary}, env, conf, t.memFile)
	if err != nil {
		return sm, fmt.Errorf("%s %s %s: %w", t.name, cmd, c.ID, err)
	}
	return sm, nil
}

func (t *cniTool) Add(ctx context.Context, c Container) (Sample, error) { return t.run(ctx, "ADD", c) }
func (t *cniTool) Del(ctx context.Context, c Container) (Sample, error) { return t.run(ctx, "DEL", c) }

// pestoTool runs the reference C client of the forwarder.
type pestoTool struct {
	name    string
	argv    []string // the command that runs pesto (loader and its options included)
	sock    string
	perPort bool   // one pesto per mapping, as Podman and rootlesskit do
	memFile string // as for cniTool
}

func (t *pestoTool) Name() string { return t.name }

// pestoSpec writes mappings in pesto's -t notation, joining runs of
// consecutive ports (with consecutive targets) into ranges. All mappings
// must share the host address.
func pestoSpec(ms []portMapping) string {
	var parts []string
	for i := 0; i < len(ms); {
		j := i
		for j+1 < len(ms) && ms[j+1].HostPort == ms[j].HostPort+1 && ms[j+1].ContainerPort == ms[j].ContainerPort+1 {
			j++
		}
		a, b := ms[i], ms[j]
		s := strconv.Itoa(a.HostPort)
		if j > i {
			s += "-" + strconv.Itoa(b.HostPort)
		}
		if a.ContainerPort != a.HostPort {
			s += ":" + strconv.Itoa(a.ContainerPort)
			if j > i {
				s += "-" + strconv.Itoa(b.ContainerPort)
			}
		}
		parts = append(parts, s)
		i = j + 1
	}
	prefix := ""
	if len(ms) > 0 && ms[0].HostIP != "" {
		prefix = ms[0].HostIP + "/"
	}
	return prefix + strings.Join(parts, ",")
}

func (t *pestoTool) run(ctx context.Context, flag string, c Container) (Sample, error) {
	groups := [][]portMapping{c.Maps}
	if t.perPort {
		groups = groups[:0]
		for i := range c.Maps {
			groups = append(groups, c.Maps[i:i+1])
		}
	}
	argvs := make([][]string, len(groups))
	for i, g := range groups {
		argvs[i] = append(append([]string(nil), t.argv...), flag, "-t", pestoSpec(g), t.sock)
	}
	var total Sample
	env := baseEnv()
	for _, argv := range argvs {
		sm, err := runMem(ctx, argv, env, nil, t.memFile)
		total.Wall += sm.Wall
		total.MaxRSS = max(total.MaxRSS, sm.MaxRSS)
		if err != nil {
			return total, fmt.Errorf("%s %s %s: %w", t.name, flag, c.ID, err)
		}
	}
	return total, nil
}

func (t *pestoTool) Add(ctx context.Context, c Container) (Sample, error) {
	return t.run(ctx, "--add", c)
}
func (t *pestoTool) Del(ctx context.Context, c Container) (Sample, error) {
	return t.run(ctx, "--delete", c)
}

// resolveWrapper turns the shell wrapper written by scripts/fetch-pasta.sh
// (`exec "LOADER" --library-path "DIR" "BIN" "$@"`) into the command it
// runs, so that a shell's start-up is not counted against pesto. Anything
// else is run as it is.
func resolveWrapper(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil || !bytes.HasPrefix(b, []byte("#!")) {
		return []string{path}
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "exec ") || !strings.HasSuffix(line, `"$@"`) {
			continue
		}
		var argv []string
		for _, f := range strings.Fields(strings.TrimSuffix(strings.TrimPrefix(line, "exec "), `"$@"`)) {
			argv = append(argv, strings.Trim(f, `"`))
		}
		if len(argv) > 0 {
			return argv
		}
	}
	return []string{path}
}
