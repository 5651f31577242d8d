package debounce

import (
	"testing"
	"time"
)

func TestWait(t *testing.T) {
	kick := make(chan struct{}, 1)
	done := make(chan struct{})

	// Quiet from the start: returns after about the quiet period.
	start := time.Now()
	if !Wait(kick, done, 20*time.Millisecond, time.Second, nil) {
		t.Fatal("Wait returned false without done")
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("returned after %v, before the quiet period", d)
	}

	// Kicks keep it waiting, but not beyond max.
	stop := make(chan struct{})
	go func() {
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		}
	}()
	start = time.Now()
	if !Wait(kick, done, 50*time.Millisecond, 150*time.Millisecond, nil) {
		t.Fatal("Wait returned false without done")
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("returned after %v while kicks kept coming, before max", d)
	}
	close(stop)

	// urgent ends it at the first signal that finds it true.
	var n int
	urgent := func() bool { n++; return n > 2 }
	go func() {
		for range 3 {
			kick <- struct{}{}
		}
	}()
	if !Wait(kick, make(chan struct{}), time.Hour, time.Hour, urgent) {
		t.Fatal("Wait returned false without done")
	}
	if n != 3 {
		t.Fatalf("urgent called %d times, want 3 (start, then two signals)", n)
	}

	// done ends it.
	close(done)
	if Wait(kick, done, time.Hour, time.Hour, nil) {
		t.Fatal("Wait returned true after done closed")
	}
	// No quiet period: at once.
	if !Wait(kick, make(chan struct{}), 0, time.Hour, nil) {
		t.Fatal("Wait with quiet 0 returned false")
	}
}
