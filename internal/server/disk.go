package server

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/diskspace"
	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// The disk guard brings the embedded store back after its disk was full:
// a stream that met ENOSPC refuses writes until it is loaded again, and
// JetStream may have shut itself down (store.Stalled). Every guardEvery it
// checks; once the data directory has restartFloor free again it restarts
// JetStream (no server restart) and sweeps code nothing uses (deletes made
// while the code store was stalled could not remove their objects).
// Restarts back off from restartMin to restartMax while the store keeps
// stalling.
const (
	guardEvery   = 2 * time.Second
	restartFloor = 1 << 20
	restartMin   = 5 * time.Second
	restartMax   = 2 * time.Minute
)

type diskGuard struct {
	dir  string
	mark diskspace.Watermark
	st   *store.Store
	ctl  *control.Service
	log  *slog.Logger

	restarts prometheus.Counter
	stop     chan struct{}
	wg       sync.WaitGroup

	// loop state
	last    time.Time     // last restart
	wait    time.Duration // before the next one
	healthy time.Time     // since when the store has not stalled
	warned  time.Time
}

func newDiskGuard(dir string, mark diskspace.Watermark, st *store.Store, log *slog.Logger) *diskGuard {
	return &diskGuard{
		dir: dir, mark: mark, st: st, log: log, wait: restartMin, stop: make(chan struct{}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lambdaplane_store_restarts_total",
			Help: "Restarts of the embedded store's JetStream after a full disk stalled it, once space returned.",
		}),
	}
}

func (g *diskGuard) start(ctl *control.Service) {
	g.ctl = ctl
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		t := time.NewTicker(guardEvery)
		defer t.Stop()
		for {
			select {
			case <-g.stop:
				return
			case <-t.C:
				g.check(time.Now())
			}
		}
	}()
}

func (g *diskGuard) close() {
	if g == nil {
		return
	}
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	g.wg.Wait()
}

func (g *diskGuard) check(now time.Time) {
	why := g.st.Stalled()
	if why == "" {
		if g.healthy.IsZero() {
			g.healthy = now
		}
		if now.Sub(g.healthy) > time.Minute {
			g.wait = restartMin
		}
		return
	}
	g.healthy = time.Time{}
	u, err := diskspace.Of(g.dir)
	if err != nil || u.Free < restartFloor || now.Sub(g.last) < g.wait {
		if now.Sub(g.warned) > time.Minute {
			g.warned = now
			g.log.Warn("the store stopped writing (full disk?); it is restarted once the data directory has space again: delete functions, versions or layer versions, or free space on that disk",
				"dir", g.dir, "free", u.Free, "stalled", why)
		}
		return
	}
	g.log.Warn("restarting the store's JetStream after a full disk", "stalled", why, "free", u.Free)
	g.last = now
	if err := g.st.RestartJetStream(); err != nil {
		g.log.Error("restarting the store's JetStream failed", "err", err)
	}
	g.restarts.Inc()
	g.wait = min(2*g.wait, restartMax)
	if g.ctl != nil {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			g.ctl.Sweep(ctx)
		}()
	}
}

var (
	diskFreeDesc = prometheus.NewDesc("lambdaplane_data_disk_free_bytes", "Free space of the data directory's filesystem.", nil, nil)
	diskSizeDesc = prometheus.NewDesc("lambdaplane_data_disk_size_bytes", "Size of the data directory's filesystem.", nil, nil)
	diskKeepDesc = prometheus.NewDesc("lambdaplane_data_disk_min_free_bytes", "Free space below which uploads are refused (--min-free-disk).", nil, nil)
)

func (g *diskGuard) Describe(ch chan<- *prometheus.Desc) {
	ch <- diskFreeDesc
	ch <- diskSizeDesc
	ch <- diskKeepDesc
	g.restarts.Describe(ch)
}

func (g *diskGuard) Collect(ch chan<- prometheus.Metric) {
	if u, err := diskspace.Of(g.dir); err == nil {
		ch <- prometheus.MustNewConstMetric(diskFreeDesc, prometheus.GaugeValue, float64(u.Free))
		ch <- prometheus.MustNewConstMetric(diskSizeDesc, prometheus.GaugeValue, float64(u.Total))
		ch <- prometheus.MustNewConstMetric(diskKeepDesc, prometheus.GaugeValue, float64(g.mark.For(u.Total)))
	}
	g.restarts.Collect(ch)
}

// writeFileIfChanged writes data to path unless it holds data already, so
// that a start on a full disk does not fail on files it need not change.
func writeFileIfChanged(path string, data []byte, perm os.FileMode) error {
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
		return os.Chmod(path, perm)
	}
	return os.WriteFile(path, data, perm)
}
