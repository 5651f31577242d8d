package logs

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestPurgeAfterFlush: a function's batch published just before its
// function is deleted (Purge) is purged too: neither its message nor its
// ledger entry stays. Purge waits for the keeper to settle every earlier
// message first; before, the keeper could account the message after the
// entry was removed, and it was kept for good.
func TestPurgeAfterFlush(t *testing.T) {
	st, ls := openStore(t, t.TempDir(), time.Hour) // nothing flushes by itself
	defer st.Close()
	defer ls.Close(context.Background())
	const acct = "111111111111"
	ctx := context.Background()
	for i := range 50 {
		fn := fmt.Sprint("f", i)
		_ = ls.Append(acct, fn, Record{Text: []byte("hello\n")})
		ls.flush() // published; its acknowledgement is on its way
		if err := ls.Purge(ctx, acct, fn); err != nil {
			t.Fatal(err)
		}
	}
	// What the keeper has left to settle is settled once a later message is.
	if err := ls.AppendNow(acct, "kept", Record{Text: []byte("x\n")}); err != nil {
		t.Fatal(err)
	}
	ls.mu.Lock()
	entries := len(ls.ledger.subjects)
	ls.mu.Unlock()
	if entries != 1 {
		t.Errorf("ledger holds %d functions, want 1 (only the one not deleted)", entries)
	}
	info, err := ls.st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages, want 1", info.State.Msgs)
	}
}
