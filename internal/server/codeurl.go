package server

import (
	"context"
	"errors"
	"io"

	"github.com/lambdaplane/lambdaplane/internal/codeurl"
	"github.com/lambdaplane/lambdaplane/internal/control"
)

// openCode opens the zip a code URL names (codeurl.Opener).
func (s *Server) openCode(ctx context.Context, kind, key string) (int64, io.ReadCloser, error) {
	size, r, err := s.ctl.OpenCodeZip(ctx, kind == codeurl.KindLayer, key)
	if errors.Is(err, control.ErrNoCode) {
		return 0, nil, codeurl.ErrNoSuchKey
	}
	return size, r, err
}
