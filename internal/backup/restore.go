package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

// RestoreOptions configures Restore.
type RestoreOptions struct {
	Dir     string // the backup directory
	DataDir string // the data directory to rebuild: missing or empty
	// NATSURL restores into an external NATS server instead of the data
	// directory's embedded store; none of the backup's streams may exist
	// there.
	NATSURL  string
	Progress io.Writer    // nil = none
	Logger   *slog.Logger // the store's; nil = slog.Default()
}

// Restore rebuilds o.DataDir from the backup in o.Dir. Every file is
// checked against the manifest before anything is written.
func Restore(ctx context.Context, o RestoreOptions) error {
	out := o.Progress
	if out == nil {
		out = io.Discard
	}
	m, err := ReadManifest(o.Dir)
	if err != nil {
		return err
	}
	if err := requireEmpty(o.DataDir, "data directory", "restore only into an empty data directory (a new one, or move the old one aside)"); err != nil {
		return err
	}
	fmt.Fprintf(out, "checking the backup in %s (taken %s from %s)\n", o.Dir, m.Created.Format("2006-01-02 15:04:05 MST"), m.Endpoint)
	for _, sf := range m.Streams {
		if err := checkFile(o.Dir, sf.File, sf.Size, sf.SHA256); err != nil {
			return err
		}
	}
	for _, df := range m.Files {
		if strings.ContainsAny(df.Name, `/\`) {
			return fmt.Errorf("%s names a data file %q", ManifestFile, df.Name)
		}
		if err := checkFile(o.Dir, df.File, df.Size, df.SHA256); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return err
	}
	for _, df := range m.Files {
		if _, err := copyFile(filepath.Join(o.Dir, df.File), filepath.Join(o.DataDir, df.Name)); err != nil {
			return err
		}
	}
	st, err := store.Open(ctx, store.Options{DataDir: o.DataDir, URL: o.NATSURL, Logger: o.Logger})
	if err != nil {
		return err
	}
	defer st.Close()
	if o.NATSURL != "" {
		have, err := st.Streams(ctx)
		if err != nil {
			return err
		}
		for _, h := range have {
			for _, sf := range m.Streams {
				if h.Name == sf.Stream {
					return fmt.Errorf("stream %s already exists at %s: restore only into a NATS server without lambdaplane's streams", h.Name, o.NATSURL)
				}
			}
		}
	}
	fmt.Fprintf(out, "restoring %d streams into %s\n", len(m.Streams), o.DataDir)
	var total int64
	for _, sf := range m.Streams {
		if err := restoreStream(ctx, st, o.Dir, sf, out); err != nil {
			return fmt.Errorf("%w (the data directory %s is incomplete: empty it and restore again)", err, o.DataDir)
		}
		total += sf.Size
	}
	st.Close()
	fmt.Fprintf(out, "restore complete: %d streams, %s; start the server with: lambdaplane serve --data %s\n", len(m.Streams), store.HumanBytes(total), o.DataDir)
	return nil
}

func restoreStream(ctx context.Context, st *store.Store, dir string, sf StreamFile, out io.Writer) error {
	f, err := os.Open(filepath.Join(dir, sf.File))
	if err != nil {
		return err
	}
	defer f.Close()
	what := fmt.Sprintf("%d messages, %s", sf.Messages, store.HumanBytes(int64(sf.Bytes)))
	p := newProgress(out, sf.Stream, what)
	got, err := st.Restore(ctx, sf.SnapshotMeta, f, p.set)
	p.stop()
	if err != nil {
		return err
	}
	if got.Messages != sf.Messages || got.LastSeq != sf.LastSeq {
		return fmt.Errorf("restore %s: %d messages up to sequence %d restored, the backup holds %d up to %d",
			sf.Stream, got.Messages, got.LastSeq, sf.Messages, sf.LastSeq)
	}
	fmt.Fprintf(out, "  %-28s %s <- %s\n", sf.Stream, what, store.HumanBytes(sf.Size))
	return nil
}

// checkFile compares a backup file with its manifest entry.
func checkFile(dir, rel string, size int64, sum string) error {
	if filepath.IsAbs(rel) || strings.Contains(rel, "..") {
		return fmt.Errorf("%s names a file outside the backup: %q", ManifestFile, rel)
	}
	f, err := os.Open(filepath.Join(dir, rel))
	if err != nil {
		return fmt.Errorf("the backup is missing %s: %w", rel, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("read %s: %w", rel, err)
	}
	if n != size || hex.EncodeToString(h.Sum(nil)) != sum {
		return fmt.Errorf("the backup file %s is damaged (%d bytes, SHA-256 %s; the manifest says %d bytes, %s)",
			rel, n, hex.EncodeToString(h.Sum(nil))[:16], size, sum[:min(16, len(sum))])
	}
	return nil
}
