package sandbox

import (
	"errors"
	"fmt"

	"github.com/lambdaplane/lambdaplane/internal/sandbox/initproc"
)

var (
	// ErrInvalidSpec wraps every validation error returned by Start.
	ErrInvalidSpec = errors.New("invalid sandbox spec")
	// ErrExists: an environment with this ID is live (or starting).
	ErrExists = errors.New("sandbox environment already exists")
	// ErrClosed: the manager has been closed.
	ErrClosed = errors.New("sandbox manager closed")
	// ErrInvalidEntrypoint: the command could not be executed inside the
	// environment (not found, not executable, bad format). Matches an
	// *InitError with Code == initproc.ExitExec.
	ErrInvalidEntrypoint = errors.New("function entrypoint cannot be executed")
)

// InitError reports that the environment's init process failed before the
// function's command was running. The same message was written to the
// environment's stderr (Spec.Stdout).
type InitError struct {
	ID   string
	Code int    // initproc.ExitSetup or initproc.ExitExec; 0 if the process died silently
	Msg  string // e.g. "exec /var/task/bootstrap: no such file or directory"
}

func (e *InitError) Error() string {
	return fmt.Sprintf("sandbox %s: init failed (exit %d): %s", e.ID, e.Code, e.Msg)
}

// Is makes errors.Is(err, ErrInvalidEntrypoint) true for exec failures.
func (e *InitError) Is(target error) bool {
	return target == ErrInvalidEntrypoint && e.Code == initproc.ExitExec
}
