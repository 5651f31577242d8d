package server

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/auth"
)

// The admin token authorises tenant management (`lambdaplane accounts`).
// Whoever can read the data directory (mode 0700) is the operator.
const adminTokenFile = "admin-token"

func writeAdminToken(dataDir string) error {
	p := filepath.Join(dataDir, adminTokenFile)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(hex.EncodeToString(b[:])+"\n"), 0o600)
}

// ReadAdminToken reads the operator token of a data directory.
func ReadAdminToken(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, adminTokenFile))
	return strings.TrimSpace(string(b)), err
}

type adminHandler struct {
	accounts *auth.Accounts
	dataDir  string
}

// AccountView is what the admin API returns for an account.
type AccountView struct {
	ID              string `json:"AccountId"`
	Name            string `json:"Name"`
	AccessKeyID     string `json:"AccessKeyId,omitempty"`
	SecretAccessKey string `json:"SecretAccessKey,omitempty"`
}

func (h *adminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok, err := ReadAdminToken(h.dataDir)
	given := r.Header.Get("X-Lambdaplane-Admin-Token")
	if err != nil || given == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(given)) != 1 {
		http.Error(w, `{"Message":"admin token missing or wrong: run lambdaplane accounts on the server host (it reads <data>/admin-token)"}`, http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.Method {
	case http.MethodGet:
		list, err := h.accounts.List(r.Context())
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		out := []AccountView{}
		for _, a := range list {
			v := AccountView{ID: a.ID, Name: a.Name}
			if len(a.Keys) > 0 {
				v.AccessKeyID = a.Keys[0].ID
			}
			out = append(out, v)
		}
		_ = json.NewEncoder(w).Encode(out)
	case http.MethodPost:
		var in struct{ Name string }
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil || in.Name == "" {
			http.Error(w, `{"Message":"body must be {\"Name\":\"...\"}"}`, http.StatusBadRequest)
			return
		}
		a, err := h.accounts.Create(r.Context(), in.Name)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(AccountView{ID: a.ID, Name: a.Name, AccessKeyID: a.Keys[0].ID, SecretAccessKey: a.Keys[0].Secret})
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}
