package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// crashChildEnv makes the test binary the writer of TestAcknowledgedWritesSurviveSIGKILL.
const crashChildEnv = "LAMBDAPLANE_STORE_CRASH_CHILD"

type crashRec struct {
	N   int    `json:"n"`
	Pad string `json:"pad"`
}

// TestMain lets the test binary act as the crash test's writer process.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		os.Exit(crashWriter(dir))
	}
	os.Exit(m.Run())
}

// crashWriter updates, deletes and re-creates a few keys as fast as it can
// and prints each write before it ("put KEY N" or "del KEY") and "ok" once
// it is acknowledged, until it is killed (or a minute passed).
func crashWriter(dir string) int {
	ctx := context.Background()
	s, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	t, err := NewTable[crashRec](ctx, s, "crash")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	out := os.Stdout
	fmt.Fprintln(out, "ready")
	pad := strings.Repeat("p", 1500)
	deadline := time.Now().Add(time.Minute)
	for i := 0; time.Now().Before(deadline); i++ {
		key := "k" + strconv.Itoa(rand.IntN(8))
		if rand.IntN(10) == 0 {
			fmt.Fprintf(out, "del %s\n", key)
			if err := t.Delete(ctx, key); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			fmt.Fprintln(out, "ok")
			continue
		}
		n := int(time.Now().UnixNano())
		fmt.Fprintf(out, "put %s %d\n", key, n)
		var err error
		if rand.IntN(2) == 0 {
			_, err = t.Put(ctx, key, &crashRec{N: n, Pad: pad})
		} else {
			// A revision-checked update, as the control plane writes.
			_, _, err = t.Update(ctx, key, func(r *crashRec) error { r.N, r.Pad = n, pad; return nil })
			if errors.Is(err, ErrNotFound) {
				_, err = t.Create(ctx, key, &crashRec{N: n, Pad: pad})
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Fprintln(out, "ok")
	}
	return 0
}

// TestAcknowledgedWritesSurviveSIGKILL: a process writing records as fast
// as it can is killed at a random moment, many times over on one data
// directory; every write it was acknowledged is there afterwards (or a
// newer one of the same key).
func TestAcknowledgedWritesSurviveSIGKILL(t *testing.T) {
	dir := t.TempDir()
	rounds := 20
	if n, _ := strconv.Atoi(os.Getenv("LAMBDAPLANE_STORE_CRASH_ROUNDS")); n > 0 {
		rounds = n
	}
	want := map[string]int{} // key → newest acknowledged N (-1: deleted)
	for round := 0; round < rounds; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		if l, ok := <-lines; !ok || l != "ready" {
			cmd.Wait()
			cancel()
			t.Fatalf("round %d: writer did not start: %q %s", round, l, stderr.String())
		}
		kill := time.After(time.Duration(rand.IntN(300)) * time.Millisecond)
		acked := 0
		var inFlight []string // the write begun but not acknowledged
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				f := strings.Fields(l)
				switch {
				case len(f) == 3 && f[0] == "put", len(f) == 2 && f[0] == "del":
					inFlight = f
				case l == "ok" && inFlight != nil:
					if inFlight[0] == "put" {
						want[inFlight[1]], _ = strconv.Atoi(inFlight[2])
					} else {
						want[inFlight[1]] = -1
					}
					inFlight = nil
					acked++
				default:
					t.Fatalf("round %d: writer printed %q", round, l)
				}
			case <-kill:
				kill = nil
				_ = cmd.Process.Kill()
			}
		}
		err = cmd.Wait()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != -1 {
			t.Fatalf("round %d: writer ended with %v, want killed: %s", round, err, stderr.String())
		}

		s, err := Open(context.Background(), Options{DataDir: dir})
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		tb, err := NewTable[crashRec](context.Background(), s, "crash")
		if err != nil {
			s.Close()
			t.Fatalf("round %d: %v", round, err)
		}
		for k, n := range want {
			v, _, err := tb.Get(context.Background(), k)
			if inFlight != nil && inFlight[1] == k {
				// The write begun before the kill may have been stored.
				if inFlight[0] == "del" && errors.Is(err, ErrNotFound) {
					want[k] = -1
					continue
				}
				if m, _ := strconv.Atoi(inFlight[len(inFlight)-1]); inFlight[0] == "put" && err == nil && v.N == m {
					want[k] = m
					continue
				}
			}
			switch {
			case n == -1 && errors.Is(err, ErrNotFound):
			case n == -1 && err == nil:
				t.Errorf("round %d: %s was deleted (acknowledged) but holds %d", round, k, v.N)
			case err != nil:
				t.Errorf("round %d: %s: %v, want %d", round, k, err, n)
			case v.N < n:
				t.Errorf("round %d: %s holds %d, older than the acknowledged %d", round, k, v.N, n)
			}
		}
		s.Close()
		t.Logf("round %d: %d acknowledged writes", round, acked)
		if t.Failed() {
			return
		}
	}
}
