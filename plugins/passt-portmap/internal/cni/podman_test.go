package cni

import "testing"

// TestRefusePodmanReservationNotUnderPodman: the test binary's parents
// are not Podman: nothing is refused.
func TestRefusePodmanReservationNotUnderPodman(t *testing.T) {
	p := &Plugin{}
	cfg, err := ParseConfig([]byte(`{"cniVersion": "1.0.0", "name": "n", "type": "passt-portmap",
		"runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}}`), Env{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.refusePodmanReservation(cfg); err != nil {
		t.Fatalf("refused outside Podman: %v", err)
	}
}
