package backup

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

// ManifestFile names a backup's manifest; it is written last.
const ManifestFile = "manifest.json"

// FormatVersion is the manifest format this package writes and reads.
const FormatVersion = 1

// dataFiles are the data-directory files a backup carries besides the
// streams: the AWS CLI profiles serve and accounts --write-profile wrote.
var dataFiles = []string{"credentials", "config"}

// Manifest describes a backup directory.
type Manifest struct {
	Format   int          `json:"format"`
	Created  time.Time    `json:"created"`
	Endpoint string       `json:"endpoint"`
	Streams  []StreamFile `json:"streams"`
	Files    []DataFile   `json:"files,omitempty"`
}

// StreamFile is one stream's snapshot in a backup.
type StreamFile struct {
	store.SnapshotMeta
	File   string `json:"file"` // relative to the backup directory
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// DataFile is a copied data-directory file.
type DataFile struct {
	Name   string `json:"name"` // in the data directory
	File   string `json:"file"` // relative to the backup directory
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Options configures Backup.
type Options struct {
	Endpoint string // the server, http://host:port
	Token    string // the operator's admin token
	DataDir  string // the server's data directory ("" = copy no files from it)
	Dir      string // the backup directory: created; must be missing or empty
	// Progress receives a line per stream and, during a long one, one
	// every few seconds; nil = none.
	Progress io.Writer
	Client   *http.Client // nil = a client without timeouts
}

// progressEvery is how often a long stream reports bytes so far.
const progressEvery = 2 * time.Second

// Backup takes a snapshot of every stream of the server at o.Endpoint into
// o.Dir and returns the manifest it wrote.
func Backup(ctx context.Context, o Options) (*Manifest, error) {
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	out := o.Progress
	if out == nil {
		out = io.Discard
	}
	if err := requireEmpty(o.Dir, "backup directory", "choose a new directory: a backup never overwrites another"); err != nil {
		return nil, err
	}
	var list []store.StreamSummary
	if err := o.getJSON(ctx, "", &list); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "streams"), 0o700); err != nil {
		return nil, err
	}
	m := &Manifest{Format: FormatVersion, Created: time.Now().UTC(), Endpoint: o.Endpoint}
	var total int64
	fmt.Fprintf(out, "backing up %d streams from %s into %s\n", len(list), o.Endpoint, o.Dir)
	for _, st := range list {
		sf, err := o.stream(ctx, st.Name, out)
		if err != nil {
			return nil, fmt.Errorf("%w (the backup in %s is incomplete: remove it and try again)", err, o.Dir)
		}
		total += sf.Size
		m.Streams = append(m.Streams, *sf)
	}
	if o.DataDir != "" {
		if err := os.MkdirAll(filepath.Join(o.Dir, "files"), 0o700); err != nil {
			return nil, err
		}
		for _, name := range dataFiles {
			df, err := copyFile(filepath.Join(o.DataDir, name), filepath.Join(o.Dir, "files", name))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			df.Name, df.File = name, filepath.Join("files", name)
			m.Files = append(m.Files, *df)
		}
	}
	if err := writeManifest(o.Dir, m); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "backup complete: %d streams, %s in %s\n", len(m.Streams), store.HumanBytes(total), o.Dir)
	return m, nil
}

func (o Options) request(ctx context.Context, stream string) (*http.Response, error) {
	u := strings.TrimRight(o.Endpoint, "/") + Path
	if stream != "" {
		u += "?stream=" + url.QueryEscape(stream)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Lambdaplane-Admin-Token", o.Token)
	resp, err := o.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach the server at %s: %w (is it running? pass --endpoint-url or --data)", o.Endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("%s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

func (o Options) getJSON(ctx context.Context, stream string, v any) error {
	resp, err := o.request(ctx, stream)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// stream writes one stream's snapshot to streams/NAME.snap.
func (o Options) stream(ctx context.Context, name string, out io.Writer) (*StreamFile, error) {
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, fmt.Errorf("the server listed a stream named %q", name)
	}
	resp, err := o.request(ctx, name)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", name, err)
	}
	sf := &StreamFile{File: filepath.Join("streams", name+".snap")}
	if err := json.Unmarshal(line, &sf.SnapshotMeta); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", name, err)
	}
	f, err := os.OpenFile(filepath.Join(o.Dir, sf.File), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	pw := newProgress(out, name, fmt.Sprintf("%d messages, %s", sf.Messages, store.HumanBytes(int64(sf.Bytes))))
	n, err := io.Copy(io.MultiWriter(f, h, pw), br)
	pw.stop()
	if err != nil {
		return nil, fmt.Errorf("snapshot %s after %s: %w", name, store.HumanBytes(n), err)
	}
	if msg := resp.Trailer.Get(TrailerError); msg != "" {
		return nil, fmt.Errorf("snapshot %s: the server: %s", name, msg)
	}
	if sent := resp.Trailer.Get(TrailerBytes); sent != strconv.FormatInt(n, 10) {
		return nil, fmt.Errorf("snapshot %s: received %d bytes, the server sent %q", name, n, sent)
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	sf.Size, sf.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	fmt.Fprintf(out, "  %-28s %s -> %s\n", name, pw.what, store.HumanBytes(n))
	return sf, nil
}

// progress counts bytes and prints them every progressEvery.
type progress struct {
	mu   sync.Mutex
	n    int64
	out  io.Writer
	name string
	what string
	quit chan struct{}
	done chan struct{}
}

func newProgress(out io.Writer, name, what string) *progress {
	p := &progress{out: out, name: name, what: what, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
				p.mu.Lock()
				n := p.n
				p.mu.Unlock()
				fmt.Fprintf(p.out, "  %-28s %s ... %s so far\n", p.name, p.what, store.HumanBytes(n))
			}
		}
	}()
	return p
}

func (p *progress) Write(b []byte) (int, error) {
	p.add(int64(len(b)))
	return len(b), nil
}

func (p *progress) add(n int64) {
	p.mu.Lock()
	p.n += n
	p.mu.Unlock()
}

func (p *progress) set(n int64) {
	p.mu.Lock()
	p.n = n
	p.mu.Unlock()
}

func (p *progress) stop() {
	close(p.quit)
	<-p.done
}

// requireEmpty accepts a missing or empty directory.
func requireEmpty(dir, what, fix string) error {
	if dir == "" {
		return fmt.Errorf("no %s given", what)
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("%s %s is not empty (it holds %s): %s", what, dir, ents[0].Name(), fix)
	}
	return nil
}

// copyFile copies src to dst (mode 0600, synced) and hashes it.
func copyFile(src, dst string) (*DataFile, error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if err != nil {
		return nil, err
	}
	if err := out.Sync(); err != nil {
		return nil, err
	}
	return &DataFile{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func writeManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ManifestFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestFile)); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// ReadManifest reads a backup directory's manifest.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s has no %s: not a backup, or an incomplete one", dir, ManifestFile)
	}
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s/%s: %w", dir, ManifestFile, err)
	}
	if m.Format != FormatVersion {
		return nil, fmt.Errorf("%s: backup format %d, this lambdaplane reads format %d", dir, m.Format, FormatVersion)
	}
	return &m, nil
}
