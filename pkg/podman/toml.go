package podman

import (
	"github.com/BurntSushi/toml"
)

// confFile is what the plugin reads of one containers.conf file. Podman's
// own library (containers/common) decodes the file into its
// configuration with the same TOML library, so a file reads the same
// here: unknown keys are ignored, a value of another type than the
// setting's is an error.
type confFile struct {
	Engine struct {
		EnablePortReservation *bool `toml:"enable_port_reservation"`
	} `toml:"engine"`
}

// reservationIn returns the enable_port_reservation that one
// containers.conf sets ("[engine]" then "enable_port_reservation =
// false", or "engine.enable_port_reservation = false"), and whether it
// sets it. A document that is not TOML, or whose setting is not a
// boolean, is an error naming the line, as Podman would refuse it.
func reservationIn(data []byte) (val, found bool, err error) {
	var c confFile
	if _, err := toml.Decode(string(data), &c); err != nil {
		return false, false, err
	}
	if v := c.Engine.EnablePortReservation; v != nil {
		return *v, true, nil
	}
	return false, false, nil
}
