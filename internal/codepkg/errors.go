package codepkg

import (
	"errors"
	"strconv"
)

// Reasons a package is rejected (Error.Reason). The size reasons carry the
// limit, e.g. "unzipped size exceeds 262144000 bytes".
const (
	ReasonNotZip          = "not a zip file"
	ReasonTraversal       = "path traversal"
	ReasonAbsolute        = "absolute path"
	ReasonInvalidPath     = "invalid path"
	ReasonSymlinkEscape   = "symlink escapes package"
	ReasonSymlinkLoop     = "symlink loop"
	ReasonTooManyFiles    = "too many files"
	ReasonDuplicate       = "duplicate entry"
	ReasonPathConflict    = "path conflict"
	ReasonUnsupportedType = "unsupported file type"
	ReasonCompression     = "unsupported compression method"
	ReasonEncrypted       = "encrypted entry"
	ReasonCorrupt         = "corrupt entry"
)

// Classes of Error, for errors.Is: the API layer maps ErrTooLarge to a size
// error (RequestTooLargeException / "Unzipped size must be smaller than …")
// and ErrInvalid to InvalidParameterValueException.
var (
	ErrTooLarge = errors.New("code package too large")
	ErrInvalid  = errors.New("invalid code package")
)

// Error rejects a package. Entry names the offending zip entry ("" when the
// problem is the archive as a whole), Fix says what to change.
type Error struct {
	Reason string
	Entry  string
	Fix    string

	class error // ErrTooLarge or ErrInvalid
	cause error // underlying error, if any
}

func (e *Error) Error() string {
	msg := "code package rejected: " + e.Reason
	if e.Entry != "" {
		msg += " in entry " + strconv.Quote(e.Entry)
	}
	if e.cause != nil {
		msg += " (" + e.cause.Error() + ")"
	}
	if e.Fix != "" {
		msg += ": " + e.Fix
	}
	return msg
}

// Unwrap returns the class (ErrTooLarge or ErrInvalid) and the cause.
func (e *Error) Unwrap() []error {
	errs := []error{e.class}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}

const fixRezip = "build the zip from inside the package directory (cd pkg && zip -r ../function.zip .) so every path is relative to the package root"

func invalid(reason, entry, fix string, cause error) *Error {
	return &Error{Reason: reason, Entry: entry, Fix: fix, class: ErrInvalid, cause: cause}
}

func tooLarge(reason, entry, fix string) *Error {
	return &Error{Reason: reason, Entry: entry, Fix: fix, class: ErrTooLarge}
}

func errZippedTooLarge(limit int64) *Error {
	return tooLarge("zipped size exceeds "+strconv.FormatInt(limit, 10)+" bytes", "",
		"make the zip smaller (drop tests, docs and dev dependencies), or move dependencies into a layer")
}

func errUnzippedTooLarge(limit int64, entry string) *Error {
	return tooLarge("unzipped size exceeds "+strconv.FormatInt(limit, 10)+" bytes", entry,
		"reduce the unpacked size of the package and its layers (drop unused dependencies, strip binaries), or use a container image")
}

func errTooManyFiles(limit int) *Error {
	return tooLarge(ReasonTooManyFiles, "",
		"the archive has more than "+strconv.Itoa(limit)+" entries; bundle or prune dependencies to reduce the file count")
}
