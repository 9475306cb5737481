package main

import (
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
)

// Status is CNI STATUS: can the plugin serve an ADD now? The data
// directory must be writable; a fixed socket must answer with a protocol
// version this plugin speaks; a managed forwarder's pasta must be present
// and new enough. A socket that depends on the container cannot be
// checked before there is one.
func (p *Plugin) Status(args *skel.CmdArgs) error { return cniErr(p.status(args)) }

func (p *Plugin) status(args *skel.CmdArgs) error {
	cfg, err := ParseConfig(args.StdinData, envOf(args))
	if err != nil {
		return err
	}
	if err := dirWritable(cfg.DataDir); err != nil {
		return &statusError{Err: fmt.Errorf("data directory (dataDir) %s is not writable: %w", cfg.DataDir, err)}
	}
	if cfg.Managed {
		ctx, cancel := cfg.context()
		defer cancel()
		if err := forwarder.CheckBinary(ctx, cfg.Pasta); err != nil {
			return &statusError{Err: fmt.Errorf("managed forwarder: %w", err)}
		}
		return nil
	}
	if HasPlaceholders(cfg.Socket) {
		return nil
	}
	socket, pidFile, err := resolveSocket(cfg, envOf(args))
	if err != nil {
		return err
	}
	ctx, cancel := cfg.context()
	defer cancel()
	if _, err := p.client(socket, pidFile).Read(ctx); err != nil {
		return &statusError{Err: fmt.Errorf("forwarder at %s: %w", socket, err)}
	}
	return nil
}

// dirWritable creates dir if needed and a file in it, then removes it.
func dirWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".status-*")
	if err != nil {
		return err
	}
	name := f.Name()
	err = f.Close()
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	return err
}
