// Package attach is the runtime-neutral core of passt-portmap: the
// lifecycle of one attachment of a container to a forwarder (pasta's
// control socket), whatever runtime asks for it. Front ends (the CNI
// plugin, the netavark plugin) only decode their runtime's input: into a
// Key, an Input and Mappings. The core reads and checks every setting
// once, with its defaults (Input.Options, then Options.Check at every
// entry point; the data directory's default depends on who runs the
// plugin, DefaultDataDir), and every mapping (CheckMappings). The front
// ends render what the core returns: a Result, whose Network is in no
// runtime's format, or an error that Describe puts into words, with the
// number of its Kind from the one table (Kind.Code). The core knows
// nothing of CNI or netavark: its errors name settings and mappings
// neutrally (Setting, Field), and each front end's Dialect says how its
// input writes them.
//
// The API:
//
//	opts, err := in.Options()                        // in: an attach.Input the front end decoded
//	c := &attach.Core{Warn: ..., Client: nil}        // zero value works
//	res, err := c.Add(ctx, key, opts, mappings)      // *Result: socket, owned rules, managed network
//	err = c.Del(ctx, key, opts, mappings)            // mappings only matter without a record
//	err = c.Check(ctx, key, opts, mappings)
//	err = c.GC(ctx, network, opts, validKeys)
//	err = c.Status(ctx, opts)
//	err = attach.CheckMappings(ms)                   // also part of Add and Check
//	d := attach.Describe(err, dialect)               // Kind (the status), Msg, Details: the words, once,
//	                                                 // settings and mappings named as the front end's input names them
//	code := d.Kind.Code(unnamed)                     // the one table; unnamed: the runtime's number for KindUnknown
//
// What the core does for an ADD, in order: decide the mode (chained.go:
// attached, managed, or chained after the pod network an earlier plugin
// made); translate the mappings (bad ones fail before anything is
// touched); for an external forwarder, meet the other processes' ADDs on
// it in a queue under the data directory (queue.go: one of them runs the
// transaction of all, group commit); lock the attachment's record
// (pkg/store); start or reuse the managed forwarder (pkg/forwarder) —
// chained, on a side interface that it sets up in the pod's namespace
// (pkg/sidenet) — or resolve the external one; release what the
// attachment owned at a forwarder it no longer uses; run one transaction
// (pkg/ctlclient, batch.go) whose planner judges each attachment's claims
// by the identity of the forwarder reached (identity.go), applies the
// ownership policy (policy.go: a desired rule already in the table is
// adopted only when this attachment claims it, otherwise the update is
// refused) and, before anything is sent, writes the rules it is about to
// add into the held lock file (the intent: pending rules); record the
// rules owned afterwards, beside the send where it can.
//
// Ownership: an attachment owns the rules its record names, and claims
// those plus the pending ones a run that died may have left. DEL and GC
// remove claimed rules where present, except those another attachment of
// the same network records at the same socket, and only from the
// forwarder they went to (identity.go: a restarted forwarder, or one that
// cannot be told, gets nothing removed); a managed forwarder serves one
// attachment and is stopped instead (a chained one after its side is
// removed from the pod's namespace). Every record is read through one
// check (record.go), whoever reads it.
//
// Every blocking step (record lock, forwarder start, transaction) is
// bounded by Options.Timeout and by the caller's context.
package attach
