package logs

import (
	"fmt"
	"time"
)

// StartLine is Lambda's START line.
func StartLine(requestID, version string) string {
	return fmt.Sprintf("START RequestId: %s Version: %s\n", requestID, version)
}

// EndLine is Lambda's END line.
func EndLine(requestID string) string {
	return fmt.Sprintf("END RequestId: %s\n", requestID)
}

// Report holds the figures of a REPORT line.
type Report struct {
	RequestID    string
	Duration     time.Duration
	MemorySizeMB int
	MaxMemoryMB  int
	InitDuration time.Duration // 0 on warm invokes
	Status       string        // e.g. "timeout", "error" (AWS adds Status: on failures)
}

// ReportLine is Lambda's REPORT line: tab-separated fields, Billed Duration
// rounded up to the next millisecond, Init Duration only on a cold start.
func ReportLine(r Report) string {
	ms := float64(r.Duration.Microseconds()) / 1000
	billed := (r.Duration + time.Millisecond - 1) / time.Millisecond
	if billed < 1 {
		billed = 1
	}
	s := fmt.Sprintf("REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: %d MB\tMax Memory Used: %d MB\t",
		r.RequestID, ms, billed, r.MemorySizeMB, r.MaxMemoryMB)
	if r.InitDuration > 0 {
		s += fmt.Sprintf("Init Duration: %.2f ms\t", float64(r.InitDuration.Microseconds())/1000)
	}
	if r.Status != "" {
		s += "Status: " + r.Status + "\t"
	}
	return s + "\n"
}
