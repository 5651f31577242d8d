package logs

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// levelRank orders log levels (TRACE lowest); unknown levels rank as INFO.
func levelRank(l string) int {
	switch strings.ToUpper(l) {
	case "TRACE":
		return 0
	case "DEBUG":
		return 1
	case "INFO", "":
		return 2
	case "WARN", "WARNING":
		return 3
	case "ERROR":
		return 4
	case "FATAL", "CRITICAL":
		return 5
	}
	return 2
}

// FormatJSON rewrites an invocation's record for a function whose
// LoggingConfig.LogFormat is JSON, as Lambda writes it: the START, END and
// REPORT lines become the platform.start, platform.runtimeDone and
// platform.report JSON records (level INFO, dropped when systemLevel is
// WARN); the function's own JSON lines with a "level" below appLevel are
// dropped; other output stays as written.
func FormatJSON(text []byte, t time.Time, appLevel, systemLevel string) []byte {
	ts := t.UTC().Format("2006-01-02T15:04:05.000Z")
	sysOK := levelRank(systemLevel) <= levelRank("INFO")
	appMin := levelRank(appLevel)
	var b strings.Builder
	for _, line := range strings.SplitAfter(string(text), "\n") {
		if line == "" {
			continue
		}
		body := strings.TrimRight(line, "\n")
		rec := platformRecord(body)
		switch {
		case rec != nil:
			if !sysOK {
				continue
			}
			out, _ := json.Marshal(map[string]any{"time": ts, "type": rec.typ, "record": rec.record})
			b.Write(out)
			b.WriteByte('\n')
		case appRecord(body) != nil:
			m := appRecord(body)
			if levelRank(m["level"]) < appMin {
				continue
			}
			out, _ := json.Marshal(m)
			b.Write(out)
			b.WriteByte('\n')
		case strings.HasPrefix(body, "{"):
			var m map[string]any
			if json.Unmarshal([]byte(body), &m) == nil {
				if lv, ok := m["level"].(string); ok && levelRank(lv) < appMin {
					continue
				}
			}
			b.WriteString(line)
		default:
			b.WriteString(line)
		}
	}
	return []byte(b.String())
}

// appRecord parses a line the runtimes write in text format — Node's
// console ("<time>\t<requestId>\t<LEVEL>\t<message>") or Python's logging
// ("[LEVEL]\t<time>\t<requestId>\t<message>") — into Lambda's JSON
// application record (nil for other lines).
func appRecord(line string) map[string]string {
	f := strings.SplitN(line, "\t", 4)
	if len(f) != 4 {
		return nil
	}
	isTime := func(s string) bool { _, err := time.Parse(time.RFC3339Nano, s); return err == nil }
	isLevel := func(s string) bool {
		switch s {
		case "TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL":
			return true
		}
		return false
	}
	switch {
	case isTime(f[0]) && isLevel(f[2]):
		return map[string]string{"timestamp": f[0], "level": f[2], "message": f[3], "requestId": f[1]}
	case strings.HasPrefix(f[0], "[") && strings.HasSuffix(f[0], "]") && isLevel(strings.Trim(f[0], "[]")) && isTime(f[1]):
		return map[string]string{"timestamp": f[1], "level": strings.Trim(f[0], "[]"), "message": f[3], "requestId": f[2]}
	}
	return nil
}

type platform struct {
	typ    string
	record map[string]any
}

// platformRecord parses a START / END / REPORT line (nil otherwise).
func platformRecord(line string) *platform {
	switch {
	case strings.HasPrefix(line, "START RequestId: "):
		rest := strings.TrimPrefix(line, "START RequestId: ")
		id, ver, _ := strings.Cut(rest, " Version: ")
		return &platform{"platform.start", map[string]any{"requestId": strings.TrimSpace(id), "version": strings.TrimSpace(ver)}}
	case strings.HasPrefix(line, "END RequestId: "):
		return &platform{"platform.runtimeDone", map[string]any{"requestId": strings.TrimSpace(strings.TrimPrefix(line, "END RequestId: ")), "status": "success"}}
	case strings.HasPrefix(line, "REPORT RequestId: "):
		rec := map[string]any{}
		metrics := map[string]any{}
		status := "success"
		for _, f := range strings.Split(line, "\t") {
			k, v, ok := strings.Cut(strings.TrimSpace(f), ": ")
			if !ok {
				continue
			}
			num := func(unit string) float64 {
				n, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(v, unit)), 64)
				return n
			}
			switch k {
			case "REPORT RequestId":
				rec["requestId"] = v
			case "Duration":
				metrics["durationMs"] = num(" ms")
			case "Billed Duration":
				metrics["billedDurationMs"] = num(" ms")
			case "Memory Size":
				metrics["memorySizeMB"] = num(" MB")
			case "Max Memory Used":
				metrics["maxMemoryUsedMB"] = num(" MB")
			case "Init Duration":
				metrics["initDurationMs"] = num(" ms")
			case "Status":
				status = v
			}
		}
		rec["metrics"] = metrics
		rec["status"] = status
		return &platform{"platform.report", rec}
	}
	return nil
}
