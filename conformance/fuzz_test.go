package conformance

import "testing"

// FuzzPluginOutput feeds arbitrary plugin output to the decoders that
// judge it: none may panic, and a result they accept must be JSON.
func FuzzPluginOutput(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"address":"10.0.0.2/24","interface":0}]}`), "1.1.0")
	f.Add([]byte(`{"code":7,"msg":"bad","details":"x"}`), "0.4.0")
	f.Add([]byte(`{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.0.0.2/24","interface":3}],"routes":[{"dst":"x"}]}`), "0.3.1")
	f.Add([]byte(`not json`), "1.0.0")
	f.Fuzz(func(t *testing.T, out []byte, v string) {
		if _, probs := resultProblems(out, v); len(probs) == 0 && !jsonObject(out) {
			t.Fatalf("accepted a result that is not a JSON object: %q", out)
		}
		if _, probs := errorProblems(Call{Stdout: out}); len(probs) == 0 && !jsonObject(out) {
			t.Fatalf("accepted an error that is not a JSON object: %q", out)
		}
		prev := []byte(`{"cniVersion":"1.1.0","interfaces":[{"name":"eth0"}]}`)
		if got, bad := passThrough(prev, out); bad == "" && got == "" {
			t.Fatalf("passThrough said neither pass nor fail for %q", out)
		}
	})
}
