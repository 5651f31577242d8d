package store

// Group commit: acknowledged still means on disk, but one sync covers
// every write acknowledged while the previous sync ran.
//
// JetStream's sync_always is a server-wide setting (nats-server v2.15.2
// stream.go:1108 copies opts.SyncAlways into every stream's file store);
// a stream cannot opt out of it alone except with PersistMode "async",
// which buffers writes in the process (filestore.go:482 fs.fip =
// !AsyncFlush; 7949-7960 flushes in place only when fip, else kicks the
// flush loop, 6877-6913, that writes up to 8 ms later) and so would ack
// records no sync of ours could cover. So a single (non-clustered)
// embedded server runs without sync_always, and the store's in-process
// connection releases what the server sends only after a sync of the
// store's filesystem that started after it arrived:
//
//   - Without sync_always and with one replica, a stream's file store
//     flushes in place (stream.go:1111 AsyncFlush = !SyncAlways &&
//     Replicas > 1, so false; filestore.go:482 fip = true):
//     writeMsgRecordLocked (7949) calls flushPendingMsgsLocked, which
//     write(2)s the record to the block file (8896-8925 writeAt) and only
//     skips the fsync (8926-8938: needSync instead). The pub-ack is sent
//     after StoreMsg returns (processJetStreamMsg), i.e. after that
//     write. The same holds for KV puts and deletes (publishes), message
//     removals (removeMsgFromBlock, 6384-6398: a tombstone through
//     writeMsgRecord with flush), and so for a work-queue consumer's ack:
//     with no consumer Raft node the ack removes the message in place
//     before the reply (consumer.go:3850-3862 ackInPlace, mset.ackMsg,
//     stream.go:9420-9427 store.RemoveMsg; processAck answers after,
//     consumer.go:2855). Stream and consumer metadata are written
//     (without O_SYNC) before the API answers.
//   - So every acknowledgement the client reads was preceded by the
//     write(2) of what it acknowledges; syncfs(2) on the store's
//     filesystem, started after the acknowledgement was read, puts it on
//     disk. syncedConn reads the server's bytes as they come, and hands
//     them to the client only after such a sync; all the bytes that came
//     while one sync ran share the next. A failed sync fails the
//     connection (nats.go reconnects), so nothing unsynced is answered.
//   - When the process has written nothing since the last sync started
//     (writeMark: the wchar that vfs_write raises after each write(2),
//     and the client's requests that could remove files without one),
//     that sync already covers everything acknowledged, and reads pass
//     without one.
//   - A consumer's delivery state (o.dat) is written by its flush loop
//     up to 100 ms after an update (filestore.go:13745-13790), with or
//     without sync_always: it was never part of an acknowledgement; a
//     work-queue ack is durable through the stream's tombstone.
//
// A clustered store keeps sync_always: each write is a Raft entry whose
// WAL append is synced on the replicas before it commits (the WAL is a
// file store with SyncAlways from the options and no async flush,
// jetstream_cluster.go:4068; raft.go:5377 storeToWAL; Raft batches the
// proposals that arrive together into one append, so the sync is shared
// there already), while the replicated stream's own file store flushes
// on snapshots (stream.go:1124 SyncOnFlush) and recovers from the WAL.
// Without sync_always a replicated stream would flush asynchronously
// (stream.go:1111) and its pub-ack, from the stream leader, perhaps
// another host, could precede any write(2) on this host's disk, which a
// local syncfs could not cover; so a cluster keeps sync_always and
// relies on a quorum of synced WALs. An external server (Options.URL)
// keeps its own setting.

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/sys/unix"
)

// maxUnsynced bounds what one connection holds from the server while a
// sync runs; beyond it the connection stops reading (the server buffers).
const maxUnsynced = 16 << 20

// groupSyncer runs syncfs(2) on dir's filesystem for waiters: one sync
// serves every waiter that arrived before it started.
type groupSyncer struct {
	dir  string
	log  *slog.Logger
	mu   sync.Mutex
	cond *sync.Cond
	// started is the generation of the last sync started, done of the
	// last one finished; running tells whether started > done.
	started, done uint64
	running       bool
	err           error
	// startMark is the writeMark read just before sync markGen started.
	startMark writeMark
	markGen   uint64
	// removals counts the client's requests that may remove files
	// without a write (a JetStream DELETE or PURGE), counted before the
	// server sees them.
	removals atomic.Uint64
	// syncs counts the syncs run (tests).
	syncs atomic.Uint64
}

// writeMark is what the process had written: the bytes of its write
// system calls (wchar of /proc/self/io, which vfs_write adds to after the
// write, so before the server can acknowledge it) and the removals asked
// for. Equal marks mean nothing was written in between: a sync that
// started after the first covers whatever was acknowledged before the
// second, and reads (the bulk of a store's traffic) wait for no sync
// while nothing is written.
type writeMark struct{ wchar, removals uint64 }

func (g *groupSyncer) mark() (writeMark, bool) {
	w, err := processWchar()
	if err != nil {
		return writeMark{}, false
	}
	return writeMark{w, g.removals.Load()}, true
}

// processWchar reads this process's wchar (all its threads).
func processWchar() (uint64, error) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, err
	}
	_, rest, ok := bytes.Cut(b, []byte("wchar: "))
	if !ok {
		return 0, errors.New("no wchar in /proc/self/io")
	}
	v, _, _ := bytes.Cut(rest, []byte("\n"))
	return strconv.ParseUint(string(v), 10, 64)
}

func newGroupSyncer(dir string, log *slog.Logger) *groupSyncer {
	g := &groupSyncer{dir: dir, log: log}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// sync returns once a sync has finished that started after every write
// the caller's data (read before the call) may acknowledge: one that
// started after the call, or an earlier one when nothing was written
// since it started.
func (g *groupSyncer) sync() error {
	m, ok := g.mark()
	g.mu.Lock()
	defer g.mu.Unlock()
	want := g.started + 1
	if ok && g.markGen > 0 && m == g.startMark {
		want = g.markGen
	}
	for g.done < want {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		gen := g.started
		g.mu.Unlock()
		if sm, ok := g.mark(); ok {
			g.mu.Lock()
			g.startMark, g.markGen = sm, gen
			g.mu.Unlock()
		}
		err := syncfs(g.dir)
		g.syncs.Add(1)
		g.mu.Lock()
		g.running = false
		g.done, g.err = gen, err
		g.cond.Broadcast()
	}
	if g.err != nil {
		g.log.Error("store: syncing the store's filesystem failed; acknowledgements withheld", "dir", g.dir, "err", g.err)
	}
	return g.err
}

func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// Write passes the client's bytes to the server, counting first the
// requests that may remove files without writing any (writeMark).
func (c *syncedConn) Write(p []byte) (int, error) {
	const keep = len("DELETE") - 1 // a word split between two writes
	c.wmu.Lock()
	seam := append(c.wtail, p[:min(len(p), keep)]...)
	if removal(p) || removal(seam) {
		c.g.removals.Add(1)
	}
	c.wtail = append(c.wtail[:0], p[max(0, len(p)-keep):]...)
	c.wmu.Unlock()
	return c.Conn.Write(p)
}

// removal reports a JetStream request that may remove files
// ($JS.API.STREAM.DELETE, CONSUMER.DELETE, STREAM.PURGE, MSG.DELETE, or
// these words anywhere: more syncs, never fewer).
func removal(b []byte) bool {
	return bytes.Contains(b, []byte("DELETE")) || bytes.Contains(b, []byte("PURGE"))
}

// groupCommitted provides in-process connections to srv whose inbound
// bytes are released after a group sync.
type groupCommitted struct {
	srv *server.Server
	g   *groupSyncer
}

func (p groupCommitted) InProcessConn() (net.Conn, error) {
	c, err := p.srv.InProcessConn()
	if err != nil {
		return nil, err
	}
	return newSyncedConn(c, p.g), nil
}

// syncedConn is the client's end of an in-process connection: a pump
// reads what the server sends into pending; a syncer moves all of
// pending to ready through one group sync, again and again; Read returns
// ready. So a sync runs while the client reads what the last one
// covered and the server sends what the next one will.
type syncedConn struct {
	net.Conn
	g        *groupSyncer
	mu       sync.Mutex
	cond     *sync.Cond
	pending  []byte
	ready    []byte
	syncing  bool  // the syncer holds a batch taken from pending, not yet in ready
	rerr     error // the server side's read error, after pending
	serr     error // a failed sync: nothing more is handed over
	deadline time.Time
	timer    *time.Timer
	// wtail: the end of the last write, for a word split between writes.
	wmu   sync.Mutex
	wtail []byte
}

func newSyncedConn(c net.Conn, g *groupSyncer) *syncedConn {
	sc := &syncedConn{Conn: c, g: g}
	sc.cond = sync.NewCond(&sc.mu)
	go sc.pump()
	go sc.syncer()
	return sc
}

// syncer hands pending over to ready after a sync that started after it
// arrived.
func (c *syncedConn) syncer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for len(c.pending) == 0 && c.rerr == nil {
			c.cond.Wait()
		}
		if len(c.pending) == 0 {
			return // the pipe is done and everything handed over
		}
		batch := c.pending
		c.pending = nil
		c.syncing = true
		c.cond.Broadcast() // the pump may read on
		c.mu.Unlock()
		err := c.g.sync()
		c.mu.Lock()
		c.syncing = false
		if err != nil {
			c.serr = err
			c.cond.Broadcast()
			_ = c.Conn.Close()
			return
		}
		c.ready = append(c.ready, batch...)
		c.cond.Broadcast()
	}
}

func (c *syncedConn) pump() {
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Conn.Read(buf)
		c.mu.Lock()
		c.pending = append(c.pending, buf[:n]...)
		if err != nil {
			c.rerr = err
		}
		c.cond.Broadcast()
		for c.rerr == nil && len(c.pending)+len(c.ready) > maxUnsynced {
			c.cond.Wait()
		}
		stop := c.rerr != nil
		c.mu.Unlock()
		if stop {
			return
		}
	}
}

// Read returns synced bytes.
func (c *syncedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if c.serr != nil {
			return 0, c.serr
		}
		if len(c.ready) > 0 {
			n := copy(p, c.ready)
			c.ready = c.ready[n:]
			if len(c.ready) == 0 {
				c.ready = nil
				c.cond.Broadcast() // a pump held back by maxUnsynced
			}
			return n, nil
		}
		if c.rerr != nil && len(c.pending) == 0 && !c.syncing {
			return 0, c.rerr // everything the server sent was handed over
		}
		if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		c.cond.Wait()
	}
}

// SetDeadline sets the read deadline here and the write deadline on the
// pipe (the pump never times out).
func (c *syncedConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// SetReadDeadline makes a waiting Read return os.ErrDeadlineExceeded at t.
func (c *syncedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if !t.IsZero() {
		c.timer = time.AfterFunc(time.Until(t), func() {
			c.mu.Lock()
			c.cond.Broadcast()
			c.mu.Unlock()
		})
	}
	return nil
}

// Close closes the pipe; the pump ends with its error.
func (c *syncedConn) Close() error {
	err := c.Conn.Close()
	c.mu.Lock()
	if c.rerr == nil {
		c.rerr = net.ErrClosed
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
