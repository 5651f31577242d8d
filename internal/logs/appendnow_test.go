package logs

import (
	"context"
	"testing"
	"time"
)

// TestAppendNowReturnsOnceStored: AppendNow returns only after the stream
// acknowledged the record (it is readable at once, before any flush), and
// returns an error when the stream cannot store it, so the caller (an
// Event invoke) does not acknowledge its event for a log that is not there.
func TestAppendNowReturnsOnceStored(t *testing.T) {
	st, ls := openStore(t, t.TempDir(), time.Hour)
	defer st.Close()
	defer ls.Close(context.Background())
	const acct = "111111111111"
	ctx := context.Background()
	for i := range 20 {
		if err := ls.AppendNow(acct, "f", Record{RequestID: "r", Text: []byte("START\n")}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		m, err := ls.st.GetLastMsgForSubject(ctx, subject(acct, "f"))
		if err != nil {
			t.Fatalf("append %d returned before the record was stored: %v", i, err)
		}
		if m.Sequence != uint64(i+1) {
			t.Fatalf("append %d returned with the stream at sequence %d", i, m.Sequence)
		}
	}
	// Without the stream the record cannot be stored: AppendNow says so.
	if err := st.JetStream().DeleteStream(ctx, streamName); err != nil {
		t.Fatal(err)
	}
	if err := ls.AppendNow(acct, "f", Record{RequestID: "r2", Text: []byte("END\n")}); err == nil {
		t.Fatal("AppendNow returned no error for a record the stream never stored")
	}
}
