package logs

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Capture reads an environment's stdout/stderr pipe. Output is appended to
// the current sink; Drain moves everything already written to the pipe into
// the sink before returning, so output printed before a response is never
// attributed to the next invocation. Output beyond the environment's rate
// limit is read and dropped (the process never blocks on its pipe); a
// marker line (DroppedLine) takes its place, one per dropped stretch, and a
// stretch still open when output is taken ends there, so each invocation's
// log says what it lost.
type Capture struct {
	r, w *os.File
	rc   syscall.RawConn

	mu   sync.Mutex
	sink []byte
	max  int
	rate *bucket // nil: no rate limit
	done chan struct{}
}

// NewCapture creates the pipe. Pass Writer() to the process as stdout and
// stderr, then call CloseWriter once the process has started. At most
// maxBuffered bytes are kept between takes (the newest); limit bounds the
// output rate (zero fields: the defaults).
func NewCapture(maxBuffered int, limit RateLimit) (*Capture, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	// The write end is blocking for the process.
	if err := unix.SetNonblock(p[1], false); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, err
	}
	c := &Capture{r: os.NewFile(uintptr(p[0]), "capture-r"), w: os.NewFile(uintptr(p[1]), "capture-w"), max: maxBuffered, rate: newBucket(limit, time.Now()), done: make(chan struct{})}
	rc, err := c.r.SyscallConn()
	if err != nil {
		c.r.Close()
		c.w.Close()
		return nil, err
	}
	c.rc = rc
	go c.loop()
	return c, nil
}

// Writer is the pipe's write end.
func (c *Capture) Writer() *os.File { return c.w }

// CloseWriter closes this process's copy of the write end.
func (c *Capture) CloseWriter() { c.w.Close() }

func (c *Capture) loop() {
	defer close(c.done)
	for {
		eof := false
		err := c.rc.Read(func(fd uintptr) bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			eof = c.readLocked(int(fd))
			return eof
		})
		if eof || err != nil {
			return
		}
	}
}

// readLocked reads until EAGAIN; it reports EOF.
func (c *Capture) readLocked(fd int) bool {
	var buf [32 << 10]byte
	for {
		n, err := unix.Read(fd, buf[:])
		if n > 0 {
			if c.rate != nil {
				c.sink = c.rate.write(c.sink, buf[:n], time.Now())
			} else {
				c.sink = append(c.sink, buf[:n]...)
			}
			if c.max > 0 && len(c.sink) > c.max {
				c.sink = append(c.sink[:0], c.sink[len(c.sink)-c.max:]...)
			}
			continue
		}
		if err == nil && n == 0 {
			return true
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return !errors.Is(err, unix.EAGAIN)
	}
}

// Take drains what is already in the pipe and returns (and clears) the
// buffered output.
func (c *Capture) Take() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.rc.Control(func(fd uintptr) { c.readLocked(int(fd)) })
	return c.takeLocked()
}

// TakeBuffered returns (and clears) what the reader already collected,
// without draining the pipe: for output between invokes, which the reader
// has long picked up, it spares a read.
func (c *Capture) TakeBuffered() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.takeLocked()
}

func (c *Capture) takeLocked() []byte {
	if c.rate != nil {
		c.sink = c.rate.flush(c.sink)
	}
	out := c.sink
	c.sink = nil
	return out
}

// Wait blocks until the write side reached EOF (all writers gone).
func (c *Capture) Wait() <-chan struct{} { return c.done }

// Close releases the read end.
func (c *Capture) Close() {
	c.w.Close()
	c.r.Close()
}
