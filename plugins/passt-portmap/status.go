package main

import (
	"fmt"

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
	if err := canRecord(cfg); err != nil {
		return &statusError{Err: fmt.Errorf("data directory (dataDir) %s cannot take a record: %w", cfg.DataDir, err)}
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

// probeSize is what STATUS writes to the data directory to see that a
// record fits: about the size of the record of an attachment with a full
// table (255 rules, owned and pending, at some 200 bytes each).
const probeSize = 128 << 10

// canRecord checks that the data directory is safe (see store.CheckDir)
// and that a record can be written into it now: a full file system, or
// one mounted read-only, cannot take one.
func canRecord(cfg *Config) error {
	if err := ensureDataDir(cfg); err != nil {
		return err
	}
	return recordStore(cfg).Probe(probeSize)
}
