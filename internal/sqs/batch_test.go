package sqs

import (
	"context"
	"fmt"
	"testing"
)

func TestSendBatchAtomic(t *testing.T) {
	q := open(t)
	ctx := context.Background()
	rec, err := q.Create(ctx, CreateInput{Account: "1", Name: "b"})
	if err != nil {
		t.Fatal(err)
	}
	var ins []SendInput
	for i := 0; i < 10; i++ {
		ins = append(ins, SendInput{Body: fmt.Sprint("m", i)})
	}
	d := 1
	ins[3].DelaySeconds = &d
	ins[5].Body = ""
	res, errs, err := q.SendBatch(ctx, rec, ins)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ins {
		if (errs[i] != nil) != (i == 5) {
			t.Fatalf("entry %d: %v", i, errs[i])
		}
		if i != 5 && res[i].MessageID == "" {
			t.Fatalf("entry %d has no id", i)
		}
	}
	got := map[string]bool{}
	for len(got) < 9 {
		ms, err := q.ReceiveFrom(ctx, rec, ReceiveOptions{Max: 10, Visibility: -1, Wait: 3e9})
		if err != nil || len(ms) == 0 {
			t.Fatalf("receive: %v, have %d", err, len(got))
		}
		for _, m := range ms {
			got[m.Body] = true
		}
	}
}
