package control

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/layers"
	"github.com/nats-io/nats.go/jetstream"
)

// Code packages and layer contents are kept twice: the zip in an object
// store ("code", "layercontent", named by the hex SHA-256 of the zip) and
// unpacked under DataDir (code/<key>, layers/content/<key>, and the merged
// /opt trees layers/merged/<name>). Both are shared by every configuration
// with the same bytes, and freed once nothing uses them:
//
//   - no function's $LATEST or published version names them (aliases
//     point at versions, so a version an alias holds keeps its code), and
//     for layer content no layer version either;
//   - no upload is storing them (a pin, held until the record naming them
//     is written);
//   - no live execution environment runs them (a lease, Lease): a tree in
//     use is removed when its last environment goes.
//
// DeleteFunction, UpdateFunctionCode, UpdateFunctionConfiguration (Layers),
// DeleteLayerVersion and a failed upload free what they dropped at once. A
// full sweep when the service starts, and every sweepEvery, also removes
// what a crash or a failed store write left behind, and interrupted
// extractions.
//
// Records written by other servers of a cluster arrive through the cache's
// watches and are references like local ones; an upload in progress on
// another server is not (its pin is local), so a sweep there could remove
// an object that server is about to name. Until lambdaplane runs as a
// cluster that cannot happen.

// sweepEvery is how often the full sweep runs.
const sweepEvery = 5 * time.Minute

type blobKind int

const (
	blobCode   blobKind = iota // object store "code", DataDir/code/<key>
	blobLayer                  // object store "layercontent", DataDir/layers/content/<key>
	blobMerged                 // DataDir/layers/merged/<name>; no object
)

// blob is one shared piece of code on this host.
type blob struct {
	kind blobKind
	key  string
}

type codeGC struct {
	mu     sync.Mutex // serialises sweeps with pins and leases
	pins   map[blob]int
	doomed map[blob]bool // unreferenced, removed when their last pin goes
	stop   chan struct{}
	wg     sync.WaitGroup
}

func newCodeGC() *codeGC {
	return &codeGC{pins: map[blob]int{}, doomed: map[blob]bool{}, stop: make(chan struct{})}
}

// blobsOf lists the shared code a configuration runs.
func blobsOf(c *Config) []blob {
	var out []blob
	if c.CodeKey != "" {
		out = append(out, blob{blobCode, c.CodeKey})
	}
	for _, l := range c.Layers {
		out = append(out, blob{blobLayer, l.Key})
	}
	if len(c.Layers) > 1 {
		keys := make([]string, len(c.Layers))
		for i, l := range c.Layers {
			keys[i] = l.Key
		}
		out = append(out, blob{blobMerged, layers.MergedName(keys)})
	}
	return out
}

// pin holds bs against sweeps until the returned function is called. An
// upload's pin (sweep) checks on release whether what it stored is named
// by a record; if not (the create failed) it is freed. A lease only frees
// what a sweep found unreferenced while it was held.
func (s *Service) pin(sweep bool, bs ...blob) func() {
	g := s.gc
	g.mu.Lock()
	for _, b := range bs {
		g.pins[b]++
	}
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			var free []blob
			g.mu.Lock()
			for _, b := range bs {
				if g.pins[b]--; g.pins[b] <= 0 {
					delete(g.pins, b)
					if sweep || g.doomed[b] {
						free = append(free, b)
					}
				}
			}
			g.mu.Unlock()
			if len(free) > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				s.sweep(ctx, free)
				cancel()
			}
		})
	}
}

// Lease holds the code cfg runs (its package, its layers and their merged
// tree) for a live execution environment; release when the environment is
// gone. Code deleted meanwhile is removed then.
func (s *Service) Lease(cfg *Config) (release func()) {
	return s.pin(false, blobsOf(cfg)...)
}

// references collects every blob a record names: functions' $LATEST and
// versions (cache), and with layers, every layer version.
func (s *Service) references(ctx context.Context, withLayers bool) (map[blob]bool, error) {
	refs := map[blob]bool{}
	s.cache.mu.RLock()
	for _, c := range s.cache.fns {
		if c.v != nil {
			for _, b := range blobsOf(&c.v.Latest) {
				refs[b] = true
			}
		}
	}
	for _, c := range s.cache.versions {
		if c.v != nil {
			for _, b := range blobsOf(c.v) {
				refs[b] = true
			}
		}
	}
	s.cache.mu.RUnlock()
	if withLayers {
		all, err := s.layerVersions.List(ctx, ">")
		if err != nil {
			return nil, err
		}
		for _, e := range all {
			refs[blob{blobLayer, e.Value.Key}] = true
		}
	}
	return refs, nil
}

// sweep frees those of cands that nothing references; those a pin or lease
// still holds are freed when it is released.
func (s *Service) sweep(ctx context.Context, cands []blob) {
	if len(cands) == 0 {
		return
	}
	withLayers := false
	for _, b := range cands {
		withLayers = withLayers || b.kind == blobLayer
	}
	g := s.gc
	g.mu.Lock()
	defer g.mu.Unlock()
	refs, err := s.references(ctx, withLayers)
	if err != nil { // unsure what is used: keep everything (the next sweep retries)
		s.log.Warn("freeing unused code: listing references failed", "err", err)
		return
	}
	for _, b := range cands {
		switch {
		case refs[b]:
			delete(g.doomed, b)
		case g.pins[b] > 0:
			g.doomed[b] = true
		default:
			delete(g.doomed, b)
			if err := s.free(ctx, b); err != nil {
				s.log.Warn("freeing unused code failed (retried by the next sweep)", "kind", b.kind, "key", b.key, "err", err)
			}
		}
	}
}

// blobDir is where b is unpacked on this host.
func (s *Service) blobDir(b blob) string {
	switch b.kind {
	case blobCode:
		return filepath.Join(s.o.DataDir, "code", b.key)
	case blobLayer:
		return filepath.Join(s.o.DataDir, "layers", "content", b.key)
	default:
		return filepath.Join(s.o.DataDir, "layers", "merged", b.key)
	}
}

func (s *Service) blobStore(b blob) (jetstream.ObjectStore, string) {
	switch b.kind {
	case blobCode:
		return s.code, "code"
	case blobLayer:
		return s.layerObjs, "layercontent"
	}
	return nil, ""
}

// free removes b's unpacked tree and its object (with the object's
// deletion marker, so that nothing of it stays in the store). Caller holds
// gc.mu.
func (s *Service) free(ctx context.Context, b blob) error {
	var errs []error
	if dir := s.blobDir(b); b.key != "" && !strings.ContainsAny(b.key, "/\x00") && b.key != "." && b.key != ".." {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if obs, bucket := s.blobStore(b); obs != nil {
		err := obs.Delete(ctx, b.key)
		switch {
		case errors.Is(err, jetstream.ErrObjectNotFound):
		case err != nil:
			errs = append(errs, err)
		default:
			if st, err := s.o.Store.JetStream().Stream(ctx, "OBJ_"+bucket); err == nil {
				subj := "$O." + bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(b.key))
				if err := st.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if err == nil {
			s.log.Info("freed unused code", "store", bucket, "key", b.key)
		}
	}
	return errors.Join(errs...)
}

// Sweep frees every unpacked tree and stored object no record names (and,
// with leftovers, interrupted extractions: only before anything extracts,
// i.e. when the service starts).
func (s *Service) Sweep(ctx context.Context) {
	s.sweepAll(ctx, false)
}

func (s *Service) sweepAll(ctx context.Context, leftovers bool) {
	var cands []blob
	seen := map[blob]bool{}
	add := func(b blob) {
		if !seen[b] {
			seen[b] = true
			cands = append(cands, b)
		}
	}
	for _, d := range []struct {
		kind blobKind
		dir  string
	}{
		{blobCode, filepath.Join(s.o.DataDir, "code")},
		{blobLayer, filepath.Join(s.o.DataDir, "layers", "content")},
		{blobMerged, filepath.Join(s.o.DataDir, "layers", "merged")},
	} {
		ents, err := os.ReadDir(d.dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			name := e.Name()
			if strings.Contains(name, ".tmp-") {
				if leftovers {
					_ = os.RemoveAll(filepath.Join(d.dir, name))
				}
				continue
			}
			add(blob{d.kind, name})
		}
	}
	for _, st := range []struct {
		kind blobKind
		obs  jetstream.ObjectStore
	}{{blobCode, s.code}, {blobLayer, s.layerObjs}} {
		infos, err := st.obs.List(ctx)
		if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
			s.log.Warn("freeing unused code: listing stored objects failed", "err", err)
			continue
		}
		for _, in := range infos {
			add(blob{st.kind, in.Name})
		}
	}
	s.sweep(ctx, cands)
}

// sweepLoop runs the full sweep every sweepEvery.
func (s *Service) sweepLoop() {
	defer s.gc.wg.Done()
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.gc.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			s.Sweep(ctx)
			s.purgeDeleteMarkers(ctx, deleteMarkersKept)
			cancel()
		}
	}
}

// deleteMarkersKept is how long the record buckets keep a deleted record's
// marker: far longer than any watch takes to deliver it (a watch reset by a
// store restart resumes within seconds); after it the marker goes, so that
// every function ever deleted does not cost the store a record for good.
const deleteMarkersKept = 30 * time.Minute

// purgeDeleteMarkers removes the record buckets' delete markers older than
// age (< 0: all).
func (s *Service) purgeDeleteMarkers(ctx context.Context, age time.Duration) {
	for _, kv := range []jetstream.KeyValue{s.fns.KV(), s.versions.KV(), s.aliases.KV(), s.layerVersions.KV()} {
		if err := kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(age)); err != nil {
			s.log.Warn("purging old delete markers", "bucket", kv.Bucket(), "err", err)
		}
	}
}
