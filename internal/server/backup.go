package server

import (
	"crypto/subtle"
	"net/http"

	"github.com/lambdaplane/lambdaplane/internal/backup"
)

// backupHandler serves `lambdaplane backup` (backup.Path) to the operator.
func (s *Server) backupHandler() http.Handler {
	return backup.Handler(s.st, func(r *http.Request) bool { return adminAuthorized(s.Cfg.DataDir, r) })
}

// adminAuthorized reports whether r carries the data directory's admin token.
func adminAuthorized(dataDir string, r *http.Request) bool {
	tok, err := ReadAdminToken(dataDir)
	given := r.Header.Get("X-Lambdaplane-Admin-Token")
	return err == nil && tok != "" && given != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(given)) == 1
}
