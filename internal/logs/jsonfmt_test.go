package logs

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestFormatJSON(t *testing.T) {
	text := "START RequestId: r1 Version: $LATEST\nplain print\n" +
		`{"timestamp":"x","level":"DEBUG","message":"dbg","requestId":"r1"}` + "\n" +
		`{"timestamp":"x","level":"ERROR","message":"bad","requestId":"r1"}` + "\n" +
		"END RequestId: r1\nREPORT RequestId: r1\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 9 MB\tInit Duration: 100.25 ms\t\n"
	out := string(FormatJSON([]byte(text), time.Unix(0, 0), "INFO", "INFO"))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || strings.Contains(out, "dbg") || !strings.Contains(out, "bad") || lines[1] != "plain print" {
		t.Fatalf("lines %q", lines)
	}
	var start, report struct {
		Time, Type string
		Record     map[string]any
	}
	_ = json.Unmarshal([]byte(lines[0]), &start)
	_ = json.Unmarshal([]byte(lines[4]), &report)
	if start.Type != "platform.start" || start.Record["requestId"] != "r1" || start.Record["version"] != "$LATEST" || start.Time != "1970-01-01T00:00:00.000Z" {
		t.Fatalf("start %+v", start)
	}
	m := report.Record["metrics"].(map[string]any)
	if report.Type != "platform.report" || m["durationMs"] != 1.5 || m["billedDurationMs"] != 2.0 || m["initDurationMs"] != 100.25 || m["maxMemoryUsedMB"] != 9.0 {
		t.Fatalf("report %+v", report)
	}
	node := "2024-01-02T03:04:05.678Z\tr1\tINFO\thello\n2024-01-02T03:04:05.679Z\tr1\tERROR\toops\n[WARNING]\t2024-01-02T03:04:05.680Z\tr1\tpy warn\n"
	out = string(FormatJSON([]byte(node), time.Unix(0, 0), "WARN", "INFO"))
	if strings.Contains(out, "hello") || !strings.Contains(out, `{"level":"ERROR","message":"oops","requestId":"r1","timestamp":"2024-01-02T03:04:05.679Z"}`) || !strings.Contains(out, `"message":"py warn"`) {
		t.Fatalf("text-format app lines: %q", out)
	}
	// SystemLogLevel WARN drops the platform records; ERROR app level drops INFO-and-below JSON lines.
	out = string(FormatJSON([]byte(text), time.Unix(0, 0), "FATAL", "WARN"))
	if strings.Contains(out, "platform.") || strings.Contains(out, "bad") || !strings.Contains(out, "plain print") {
		t.Fatalf("WARN/FATAL: %q", out)
	}
}
