package podman

// DropIn is the file the error messages suggest for Podman's setting.
const DropIn = "/etc/containers/containers.conf.d/50-passt-portmap.conf"

// ReservationFix says where to turn Podman's port reservation off: in
// only, when CONTAINERS_CONF names the only file Podman reads, otherwise
// in a drop-in.
func ReservationFix(only string) string {
	where := "in a drop-in such as " + DropIn
	if only != "" {
		where = "in " + only + " (CONTAINERS_CONF: the only file Podman reads now)"
	}
	return "put \"[engine]\" and \"enable_port_reservation = false\" " + where +
		"; it holds for every container of that Podman, bridge networks included (their ports are then not reserved either)"
}
