package control

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/lambdaplane/lambdaplane/internal/codepkg"
	"github.com/lambdaplane/lambdaplane/internal/diskspace"
)

// checkSpace refuses an upload that would leave less than the watermark
// free on the data directory's filesystem: zipped bytes for the object
// store (unless b is stored already) and unzipped ones for the unpacked
// tree (unless it is unpacked already).
func (s *Service) checkSpace(ctx context.Context, b blob, zipped, unzipped uint64, what string) error {
	u, err := diskspace.Of(s.o.DataDir)
	if err != nil {
		return nil // cannot tell: the write itself decides
	}
	need := uint64(0)
	if obs, _ := s.blobStore(b); obs != nil {
		if _, err := obs.GetInfo(ctx, b.key); err != nil {
			need += zipped
		}
	}
	if _, err := os.Stat(s.blobDir(b)); err != nil {
		need += unzipped
	}
	keep := s.o.MinFreeDisk.For(u.Total)
	if u.Free >= need && u.Free-need >= keep {
		return nil
	}
	return s.noSpace(u, need, keep, what)
}

func (s *Service) noSpace(u diskspace.Usage, need, keep uint64, what string) *Error {
	return errf("CodeStorageExceededException", 400,
		"Not enough free disk space to store this %s: the filesystem of lambdaplane's data directory %s has %s free of %s; the %s needs %s (zipped and unzipped) and --min-free-disk (%s) keeps %s free. Delete functions, versions or layer versions you no longer use (their code is freed), free space on that disk, or lower --min-free-disk.",
		what, s.o.DataDir, diskspace.Human(u.Free), diskspace.Human(u.Total), what, diskspace.Human(need), s.o.MinFreeDisk, diskspace.Human(keep))
}

// storageError is the API error of a failed write of uploaded code: a full
// disk (ENOSPC, or the data directory below its watermark now: the store
// reports a full disk as a timeout) is CodeStorageExceededException, an
// invalid package InvalidParameterValueException (as returned), anything
// else a ServiceException (500).
func (s *Service) storageError(err error, what string) error {
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	if u, uerr := diskspace.Of(s.o.DataDir); diskspace.IsNoSpace(err) || (uerr == nil && u.Free < s.o.MinFreeDisk.For(u.Total)) {
		if uerr != nil {
			u = diskspace.Usage{}
		}
		e := s.noSpace(u, 0, s.o.MinFreeDisk.For(u.Total), "upload")
		e.Message = fmt.Sprintf("Could not %s: the disk is full (%v). ", what, err) + e.Message
		return e
	}
	return errf("ServiceException", 500, "Could not %s: %v", what, err)
}

// unpackError maps an extraction failure: a package codepkg rejects is the
// caller's (InvalidParameterValueException); anything else (a full disk, an
// I/O error) is the server's, returned as is.
func unpackError(err error, what string) error {
	var pe *codepkg.Error
	if errors.As(err, &pe) {
		return invalidParam("Could not unzip uploaded file: %v", err)
	}
	return fmt.Errorf("unpack %s: %w", what, err)
}

// forgetUse drops what the network machinery keeps of a deleted function.
func (s *Service) forgetUse(acct, name string) {
	k := fnKey(acct, name)
	s.net.mu.Lock()
	delete(s.net.lastUsed, k)
	s.net.mu.Unlock()
}
