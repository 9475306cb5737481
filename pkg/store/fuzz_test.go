package store

import (
	"bytes"
	"testing"
)

// FuzzDecode checks that Decode never panics and that whatever it accepts
// encodes to a record it decodes to the same bytes again.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"version":1,"network":"n","containerID":"c","ifname":"e","socket":"/s","rules":[{"pif":"HOST","rule":"TCP [*]:8080  =>  80 ","bytes":"00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001f901f9000500601"}]}`))
	f.Add([]byte(`{"version":1,"network":"n","containerID":"c","ifname":"eth0","netns":"/run/netns/p","socket":"/d/pasta.sock","managed":true,"forwarderDir":"/d","rules":[],"side":{"netnsInode":4026532999,"ifname":"pasta0","table":20563,"priority":500,"addr4":"169.254.100.2/30","gateway4":"169.254.100.1","addr6":"fd41:e00e:44f8::2/64","gateway6":"fe80::1"}}`))
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		e1, err := Encode(r)
		if err != nil {
			t.Fatalf("encode of decoded record: %v", err)
		}
		r2, err := Decode(e1)
		if err != nil {
			t.Fatalf("decode of encoded record: %v\n%s", err, e1)
		}
		e2, err := Encode(r2)
		if err != nil || !bytes.Equal(e1, e2) {
			t.Fatalf("not stable:\n%s\n%s", e1, e2)
		}
	})
}
