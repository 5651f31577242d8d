package invoke

import "github.com/lambdaplane/lambdaplane/internal/control"

// Errors reuse control.Error so the API edge has one table to map.
func tooLarge(limit int) *control.Error {
	return &control.Error{Code: "RequestTooLargeException", Status: 413,
		Message: "Request must be smaller than " + itoa(limit) + " bytes for the Invoke operation"}
}

func badInvocationType(t string) *control.Error {
	return control.InvalidParam("Invalid InvocationType %q: use RequestResponse, Event or DryRun", t)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
