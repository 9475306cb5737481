package attach

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// SystemDataDir is the data directory of a plugin run by the system's
// root, when none is configured.
const SystemDataDir = "/var/lib/cni/passt-portmap"

// runtimeSubdir is the data directory under XDG_RUNTIME_DIR of a plugin
// that runs rootless, when none is configured.
const runtimeSubdir = "passt-portmap"

// Identity is what decides the default data directory: who the process
// is, and whether it owns the directory the system's default is in.
type Identity struct {
	EUID int
	// OwnsVarLib is true when /var/lib belongs to the process's uid 0:
	// it is the system's root, or root of a user namespace that maps the
	// system's root (a container's).
	OwnsVarLib bool
	// RuntimeDir is $XDG_RUNTIME_DIR.
	RuntimeDir string
}

// ProcessIdentity is the calling process's Identity.
func ProcessIdentity() Identity {
	id := Identity{EUID: os.Geteuid(), RuntimeDir: os.Getenv("XDG_RUNTIME_DIR")}
	var st syscall.Stat_t
	if syscall.Stat("/var/lib", &st) == nil {
		id.OwnsVarLib = st.Uid == 0
	}
	return id
}

// Rootless reports whether the process runs without the system's root:
// as a user, or as uid 0 of a user namespace that does not own /var/lib
// (its owner is not mapped into the namespace). Rootless Podman runs its
// network plugins so, as the user's mapped root in its rootless network
// namespace: uid 0, with /var/lib owned by "nobody".
func (id Identity) Rootless() bool { return id.EUID != 0 || !id.OwnsVarLib }

// DefaultDataDir is the data directory when none is configured:
// SystemDataDir for the system's root, and for a rootless process
// $XDG_RUNTIME_DIR/passt-portmap, the user's own, where rootless Podman
// keeps its own network state too (and which it keeps visible in its
// rootless network namespace). Rootless without XDG_RUNTIME_DIR, it is a
// *ConfigError naming the setting.
func DefaultDataDir(id Identity) (string, error) {
	if !id.Rootless() {
		return SystemDataDir, nil
	}
	who := fmt.Sprintf("the plugin runs as uid %d", id.EUID)
	if id.EUID == 0 {
		who = "the plugin runs rootless (uid 0 of a user namespace that does not own /var/lib, as under rootless Podman)"
	}
	switch {
	case id.RuntimeDir == "":
		return "", &ConfigError{Setting: SettingDataDir, Err: fmt.Errorf(
			"not set, and %s without XDG_RUNTIME_DIR: the default %s is root's; set it to a directory the user owns", who, SystemDataDir)}
	case !filepath.IsAbs(id.RuntimeDir):
		return "", &ConfigError{Setting: SettingDataDir, Err: fmt.Errorf(
			"not set, and %s with XDG_RUNTIME_DIR %q, which is not an absolute path: set it to a directory the user owns", who, id.RuntimeDir)}
	}
	return filepath.Join(filepath.Clean(id.RuntimeDir), runtimeSubdir), nil
}
