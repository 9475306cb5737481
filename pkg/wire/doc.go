// Package wire holds the typed structures of the passt/pasta control
// protocol, version 2, and their exact encodings.
//
// Everything here is pure: no sockets, no clocks. Decoding is strict and
// streaming (nothing is allocated for a claimed count before its bytes have
// arrived); encoding reproduces received bytes exactly, including unknown
// pifs, unknown flag bits and the padding of names, so a rule that a client
// does not touch goes back to the forwarder byte for byte.
//
// The layout, all integers big-endian:
//
//	hello   magic[8] "basil:s\x00" | version u32 | pif name size u32 | ifname size u32
//	server  { pif id u8 (!= 0) | name[128] | caps u32 | count u32 | rule[56] x count }* | 0
//	client  { pif id u8 (!= 0) | count u32 | rule[56] x count }* | 0
//	rule    listen[16] | target[16] | ifname[16] | first u16 | last u16 | to u16 | proto u8 | flags u8
package wire
