// Package modeltest is a randomized, model-based fault test of the CNI
// plugin, in the spirit of simulation testing: a seed makes a sequence of
// operations (ADD, DEL, CHECK and GC over a dozen attachments, with TCP
// and UDP, strict and weak mappings, on two networks that share one
// forwarder, some of them at the same time), interleaved with faults: the
// plugin stopped at one of its steps (StopAt), as if killed there; a
// record file, its backup copy or both truncated or removed; rules of
// another client added and removed as pesto does; a port taken by another
// process; the forwarder restarted empty.
// After every operation the test checks what the plugin promises:
//
//   - no rule of another client is ever removed or changed, nor claimed
//     by a record of the forwarder that holds it (adopted);
//   - every rule in the forwarder is owned by exactly one record of that
//     forwarder, or is another client's (or was left by a record the test
//     itself removed);
//   - CHECK of each attachment the operation touched (every one of a
//     GC's network, every one of calls made at the same time) succeeds
//     exactly when its record owns the rules of its mappings, they are
//     present and listening, and the forwarder is the one they were
//     added to (not restarted since);
//   - an ADD that succeeded leaves them so;
//   - a DEL (or GC) that succeeded leaves no rule of that attachment;
//   - and it works: an ADD, DEL or GC with no fault in its way (not
//     stopped, its record readable, no port taken, no other client's
//     rule on its port) succeeds. A plugin that refuses everything fails
//     the test.
//
// A failure prints the seed and the shortest sequence of operations found
// (delta debugging over the sequence) that still breaks a promise.
//
// The operations are drawn from the seed alone, before any runs, so that a
// sequence can be shrunk and replayed: an operation that makes no sense at
// its point (removing a rule that is not there) does nothing. One thing is
// not done: another client adding a byte-equal copy of an attachment's
// rule after the plugin was stopped between sending and recording. A rule
// has no identity but its bytes, so no client can tell that copy from the
// rule the stopped plugin may have sent.
//
// Environment: PPMODEL_SEEDS=N runs N more seeds drawn from the clock
// (each printed on failure); PPMODEL_SEED=S runs seed S only;
// PPMODEL_STEPS=N sets the number of operations per seed; PPMODEL_EXCLUDE
// drops kinds of operations (see kindNames), to look past a known failure.
//
// The parts, one job each: generate.go draws the sequence from the seed;
// run.go and together.go run its steps against the plugin (in-process,
// as skel calls it) and the forwarder, together.go the calls made at the
// same time; model.go is what the test knows of the world; check.go
// checks the promises; shrink.go shrinks a failing sequence and prints
// it with its seed; the adapters, ctltest.go and pasta.go, are the
// forwarder (the stand-in ctltest, or the real pasta and pesto) behind
// the interface in forwarder.go. The tests that run it are TestModelFaults
// and TestModelRealPasta in the plugin's package: go test
// ./plugins/passt-portmap/internal/cni -run TestModel.
package modeltest
