package debounce

import "time"

// Wait returns true once kick has received nothing for quiet, once max has
// passed since the call, or as soon as urgent (when not nil) reports true —
// checked at the start and after every signal; it returns false if done
// closes first. Signals arriving on kick while it waits are consumed.
// quiet <= 0 returns true at once.
func Wait(kick <-chan struct{}, done <-chan struct{}, quiet, max time.Duration, urgent func() bool) bool {
	if quiet <= 0 || (urgent != nil && urgent()) {
		return true
	}
	limit := time.NewTimer(max)
	defer limit.Stop()
	t := time.NewTimer(quiet)
	defer t.Stop()
	for {
		select {
		case <-done:
			return false
		case <-limit.C:
			return true
		case <-t.C:
			return true
		case <-kick:
			if urgent != nil && urgent() {
				return true
			}
			t.Reset(quiet)
		}
	}
}
