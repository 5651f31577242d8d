package invoke

import (
	"fmt"
	"testing"
	"time"
)

func always(poolKey) bool { return true }

func keyFor(fn, rev string) poolKey { return poolKey{"a", fn, "$LATEST", rev} }

// newIdle books an environment of key and makes it idle at t, charged mb.
func newIdle(b *warmBook, key poolKey, mb int, t time.Time) *env {
	e := &env{id: fmt.Sprintf("%s-%d", key.function, len(b.all)), key: key}
	b.add(e, always)
	if b.release(e, mb, t, time.Millisecond) != released {
		panic("not kept")
	}
	return e
}

func ids(es []*env) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.id
	}
	return out
}

func checkBook(t *testing.T, b *warmBook) {
	t.Helper()
	idle, busy := 0, 0
	var mem int64
	for e := range b.all {
		mem += int64(e.memMB)
		if e.busy {
			busy++
		}
	}
	for _, p := range b.pools {
		idle += len(p.idle)
		for i := 1; i < len(p.idle); i++ {
			if p.idle[i].lastUsed.Before(p.idle[i-1].lastUsed) {
				t.Errorf("pool stack out of order")
			}
		}
	}
	n := 0
	for e := b.idle.head; e != nil; e = e.next {
		n++
		if e.next != nil && e.next.lastUsed.Before(e.lastUsed) {
			t.Errorf("idle list out of order at %s", e.id)
		}
	}
	if n != idle || b.idle.n != idle || busy != b.busy || mem != b.memMB || idle+busy != len(b.all) {
		t.Errorf("books disagree: list %d/%d, pools %d idle, busy %d/%d, mem %d/%d, all %d", n, b.idle.n, idle, busy, b.busy, mem, b.memMB, len(b.all))
	}
}

func TestWarmBookTakesMostRecentAndEvictsLeastRecent(t *testing.T) {
	b := newWarmBook(4)
	t0 := time.Now()
	ka, kb := keyFor("f", "1"), keyFor("g", "1")
	a1 := newIdle(b, ka, 10, t0)
	b1 := newIdle(b, kb, 10, t0.Add(time.Second))
	a2 := newIdle(b, ka, 10, t0.Add(2*time.Second))
	checkBook(t, b)
	if got := b.take(ka); got != a2 {
		t.Fatalf("take = %v, want the most recently used %s", got, a2.id)
	}
	checkBook(t, b)
	// a2 busy; a1 (t0) then b1 (t0+1s) are the idle ones, oldest first.
	if got := ids(b.overBudget(15)); fmt.Sprint(got) != fmt.Sprint([]string{a1.id, b1.id}) {
		t.Errorf("over budget evicted %v, want %s then %s", got, a1.id, b1.id)
	}
	checkBook(t, b)
	if b.memMB != 10 || len(b.all) != 1 {
		t.Errorf("left %d MB in %d environments, want the busy one", b.memMB, len(b.all))
	}
	// A busy environment is never evicted, however far over budget.
	if got := b.overBudget(1); len(got) != 0 {
		t.Errorf("evicted busy environments %v", ids(got))
	}
	// Its memory is recharged when it goes idle.
	b.release(a2, 40, t0.Add(3*time.Second), 0)
	if b.memMB != 40 {
		t.Errorf("charged %d MB, want 40", b.memMB)
	}
	if got := ids(b.overBudget(39)); len(got) != 1 || got[0] != a2.id {
		t.Errorf("over budget evicted %v, want %s", got, a2.id)
	}
	checkBook(t, b)
}

func TestWarmBookReapAndRetire(t *testing.T) {
	b := newWarmBook(4)
	t0 := time.Now()
	old, cur := keyFor("f", "1"), keyFor("f", "2")
	o1 := newIdle(b, old, 1, t0)
	o2 := newIdle(b, old, 1, t0.Add(time.Second))
	busyOld := &env{id: "busy-old", key: old}
	b.add(busyOld, always)
	c1 := newIdle(b, cur, 1, t0.Add(2*time.Second))
	if got := ids(b.reap(t0.Add(500 * time.Millisecond))); fmt.Sprint(got) != fmt.Sprint([]string{o1.id}) {
		t.Errorf("reap = %v, want %s", got, o1.id)
	}
	got := b.retire(func(k poolKey) bool { return k == old })
	if fmt.Sprint(ids(got)) != fmt.Sprint([]string{o2.id}) {
		t.Errorf("retire = %v, want the old key's idle %s", ids(got), o2.id)
	}
	checkBook(t, b)
	// The busy one of the retired key is not kept when its invoke ends.
	if b.release(busyOld, 1, t0.Add(3*time.Second), 0) != dropped {
		t.Error("an environment of a retired key was kept")
	}
	checkBook(t, b)
	if len(b.all) != 1 || b.take(cur) != c1 {
		t.Errorf("the current key's environment is not the one left")
	}
	// A cold start of a key that no longer resolves serves its invoke and
	// is not kept.
	stale := &env{id: "stale", key: old}
	b.add(stale, func(poolKey) bool { return false })
	if b.release(stale, 1, t0.Add(4*time.Second), 0) != dropped {
		t.Error("a stale cold start was kept")
	}
	if _, ok := b.pools[old]; ok {
		t.Error("a pool was made for a stale key")
	}
	checkBook(t, b)
}

func TestWarmBookTrimKeepsPeakHeadroomAndLastOfAFunction(t *testing.T) {
	b := newWarmBook(4)
	t0 := time.Now()
	// f: 4 busy at once, then 6 idle; g: one idle environment, long ago.
	g := newIdle(b, keyFor("g", "1"), 1, t0.Add(-time.Hour))
	var f []*env
	for i := range 6 {
		f = append(f, newIdle(b, keyFor("f", "1"), 1, t0.Add(time.Duration(i)*time.Second)))
	}
	var busy []*env
	for range 4 {
		busy = append(busy, b.take(keyFor("f", "1")))
	}
	b.samplePeak()
	for _, e := range busy {
		b.release(e, 1, t0.Add(10*time.Second), 0)
	}
	if p := b.peak(); p != 4 {
		t.Fatalf("peak = %d, want 4", p)
	}
	// 7 live; target 5: the two least recently used of f go (g is its
	// function's last and stays), and nothing idle since after the cutoff.
	got := b.trim(5, t0.Add(100*time.Second))
	if fmt.Sprint(ids(got)) != fmt.Sprint([]string{f[0].id, f[1].id}) {
		t.Errorf("trim = %v, want %s %s", ids(got), f[0].id, f[1].id)
	}
	if _, ok := b.all[g]; !ok {
		t.Error("trim took a function's last environment")
	}
	if got := b.trim(0, t0.Add(5*time.Second)); len(got) != 0 {
		t.Errorf("trim took environments idle for less than the minimum: %v", ids(got))
	}
	checkBook(t, b)
	// The peak is forgotten once the intervals that saw it (the first
	// sample's and the next, in which they were released) left the window.
	for range 5 {
		b.samplePeak()
	}
	if p := b.peak(); p != 0 {
		t.Errorf("peak = %d after the window, want 0", p)
	}
}

// TestWarmBookPeakCountsWaitingInvocations: invocations waiting for an
// environment (cold-starting) count towards the peak, so the
// environments they start are not surplus the moment they are idle.
func TestWarmBookPeakCountsWaitingInvocations(t *testing.T) {
	b := newWarmBook(4)
	t0 := time.Now()
	var es []*env
	for range 3 {
		es = append(es, newIdle(b, keyFor("f", "1"), 1, t0))
	}
	// Ten invocations in flight: three hold environments, seven wait.
	for range 10 {
		b.enter()
	}
	for range 3 {
		b.take(keyFor("f", "1"))
	}
	b.samplePeak()
	if p := b.peak(); p != 10 {
		t.Fatalf("peak = %d with 10 invocations in flight and 3 environments busy, want 10", p)
	}
	for _, e := range es {
		b.release(e, 1, t0, 0)
	}
	for range 10 {
		b.leave()
	}
	if got := b.trim(int(float64(b.peak())*1.2), t0.Add(time.Hour)); len(got) != 0 {
		t.Errorf("trim took %v below the peak demand", ids(got))
	}
	checkBook(t, b)
}
