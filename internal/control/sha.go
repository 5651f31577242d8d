package control

import (
	"crypto/sha256"
	"encoding/hex"
)

func hexSha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
