// Package netavark is passt-portmap's front end for netavark's plugin API
// 1.0, which Podman 5 and 6 use: netavark runs a network's driver as
// "PLUGIN setup NETNS" and "PLUGIN teardown NETNS" with the container's
// network options as JSON on stdin, and Podman runs "PLUGIN create" when a
// network is created with the driver and "PLUGIN info".
//
// The package holds only what is netavark's: the wire types as netavark
// 1.17.2 sends and reads them, their decoding (explicit nulls, several
// protocols and ranges per port mapping, options that are all strings)
// with errors that name the field, the validation of the network's
// options, the StatusBlock that tells netavark what the namespace got,
// and the error format Podman decodes ({"error":"..."} on stdout, a
// non-zero exit). What happens to an attachment is the Backend's.
package netavark
