package control

import (
	"context"
	"errors"
	"io"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrNoCode is OpenCodeZip's error for a package the store no longer has.
var ErrNoCode = errors.New("code package not stored")

// OpenCodeZip opens a stored zip: a function's code package (layer false)
// or a layer version's content, by its key (hex SHA-256). It returns the
// zip's size and a reader the caller closes.
func (s *Service) OpenCodeZip(ctx context.Context, layer bool, key string) (int64, io.ReadCloser, error) {
	if len(key) != 64 {
		return 0, nil, ErrNoCode
	}
	obj := s.code
	if layer {
		obj = s.layerObjs
	}
	r, err := obj.Get(ctx, key)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return 0, nil, ErrNoCode
	}
	if err != nil {
		return 0, nil, err
	}
	info, err := r.Info()
	if err != nil {
		_ = r.Close()
		return 0, nil, err
	}
	return int64(info.Size), r, nil
}
