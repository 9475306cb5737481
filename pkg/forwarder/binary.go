package forwarder

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"time"
)

// CheckBinary reports an error when pasta cannot run a managed forwarder:
// the binary is missing (not found in PATH, or the path does not exist),
// does not run, or is too old for a control socket (its --help does not
// offer --conf-path, added to passt in 2026). For the plugin's STATUS. An
// empty pasta means DefaultPasta. Bounded by ctx and DefaultTimeout.
func CheckBinary(ctx context.Context, pasta string) error {
	if pasta == "" {
		pasta = DefaultPasta
	}
	path, err := exec.LookPath(pasta)
	if err != nil {
		return fmt.Errorf("forwarder: pasta binary: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--help")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("forwarder: run %s --help: %w (output: %q)", path, err, tailString(out.Bytes(), 200))
	}
	if !helpOffersConfPath(out.Bytes()) {
		return fmt.Errorf("forwarder: %s is too old for a managed forwarder: its --help offers no --conf-path (control socket); install a passt release of 2026 or newer", path)
	}
	return nil
}

// helpOffersConfPath reports whether pasta's --help output lists the
// control socket option.
func helpOffersConfPath(help []byte) bool {
	return bytes.Contains(help, []byte("--conf-path"))
}

func tailString(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}
