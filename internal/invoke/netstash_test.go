package invoke

import (
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
)

func TestNetStashKeepsNamespacesWithinTheirAccount(t *testing.T) {
	st := newNetStash(3)
	t0 := time.Now()
	a1, a2, b1, b2 := &netdev.EnvNet{Name: "a1"}, &netdev.EnvNet{Name: "a2"}, &netdev.EnvNet{Name: "b1"}, &netdev.EnvNet{Name: "b2"}
	for _, p := range []struct {
		acct string
		n    *netdev.EnvNet
		at   time.Time
	}{{"A", a1, t0}, {"B", b1, t0.Add(time.Second)}, {"A", a2, t0.Add(2 * time.Second)}} {
		if !st.put(p.acct, p.n, p.at) {
			t.Fatalf("put %s refused", p.n.Name)
		}
	}
	if st.put("B", b2, t0) {
		t.Error("a full stash took another namespace")
	}
	if got := st.take("C"); got != nil {
		t.Errorf("account C got %s, stashed by another account", got.Name)
	}
	if got := st.take("A"); got != a2 {
		t.Errorf("take A = %v, want the most recent, a2", got)
	}
	if got := st.expire(t0.Add(1500 * time.Millisecond)); len(got) != 2 || got[0] == got[1] {
		t.Errorf("expire = %v, want a1 and b1", got)
	}
	if st.len() != 0 || st.take("A") != nil || st.take("B") != nil {
		t.Errorf("namespaces left after they expired: %d", st.len())
	}
	st.put("A", a1, t0)
	if got := st.close(); len(got) != 1 || got[0] != a1 {
		t.Errorf("close = %v, want a1", got)
	}
	if st.put("A", a2, t0) {
		t.Error("a closed stash took a namespace")
	}
}
