package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/lambdaplane/lambdaplane/internal/backup"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

func backupCmd(args []string) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: lambdaplane backup DIR [--data DIR] [--endpoint-url URL]\n\n"+
			"Takes a consistent snapshot of every stream of the running server (records, code, queued Event invokes, logs)\n"+
			"and the data directory's credentials and config into DIR, a new or empty directory. Runs on the server host:\n"+
			"it uses the operator token in the data directory. Restore with lambdaplane restore DIR.")
		fs.PrintDefaults()
	}
	dataDir := fs.String("data", ".lambdaplane", "server data directory")
	endpoint := fs.String("endpoint-url", "", "server endpoint (default: from the data directory)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("backup needs exactly one directory")
	}
	tok, err := server.ReadAdminToken(*dataDir)
	if err != nil {
		return fmt.Errorf("read operator token: %w (run on the server host, or pass --data)", err)
	}
	ep := *endpoint
	if ep == "" {
		b, err := os.ReadFile(filepath.Join(*dataDir, "endpoint"))
		if err != nil {
			return fmt.Errorf("no endpoint: pass --endpoint-url or --data: %w", err)
		}
		ep = strings.TrimSpace(string(b))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	_, err = backup.Backup(ctx, backup.Options{Endpoint: ep, Token: tok, DataDir: *dataDir, Dir: pos[0], Progress: os.Stderr})
	return err
}

func restoreCmd(args []string) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: lambdaplane restore DIR --data NEWDIR [--nats-url URL]\n\n"+
			"Rebuilds a data directory from the backup in DIR (written by lambdaplane backup). The data directory must be\n"+
			"missing or empty, and no server may run on it; start one afterwards with lambdaplane serve --data NEWDIR.")
		fs.PrintDefaults()
	}
	dataDir := fs.String("data", ".lambdaplane", "data directory to rebuild (missing or empty)")
	natsURL := fs.String("nats-url", "", "restore into this external NATS server (the one serve --nats-url will use) instead of the embedded store")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("restore needs exactly one backup directory")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return backup.Restore(ctx, backup.RestoreOptions{Dir: pos[0], DataDir: *dataDir, NATSURL: *natsURL, Progress: os.Stderr, Logger: log})
}
