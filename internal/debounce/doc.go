// Package debounce waits for a burst of signals to end: [Wait] returns once
// no signal arrived for a quiet period, bounded by a maximum wait. The
// network-namespace and init-process pools use it so that refilling them
// does not compete for the CPU with the cold starts that emptied them.
package debounce
