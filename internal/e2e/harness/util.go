package harness

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// FreePort returns a loopback address with a port free at the time.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ReadCreds reads the access key a server wrote into its credentials file.
func ReadCreds(t testing.TB, path string) aws.CredentialsProvider {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var id, secret string
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	return credentials.NewStaticCredentialsProvider(id, secret, "")
}

// ScrapeMetrics reads and parses endpoint/metrics.
func ScrapeMetrics(t testing.TB, endpoint string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mf
}

// MetricValue sums the counters, gauges or histogram counts of name whose
// labels include want.
func MetricValue(mf map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := mf[name]
	if f == nil {
		return 0
	}
	var total float64
	for _, m := range f.Metric {
		ok := true
		for k, v := range want {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total
}

// InvokeProbe invokes a probe function synchronously with an event and
// decodes its JSON payload (nil if it is not an object).
func InvokeProbe(t testing.TB, lc *lambda.Client, name string, ev map[string]any) (map[string]any, *lambda.InvokeOutput, error) {
	b, _ := json.Marshal(ev)
	out, err := lc.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(name), Payload: b})
	if err != nil {
		return nil, nil, err
	}
	var m map[string]any
	json.Unmarshal(out.Payload, &m)
	return m, out, nil
}

// RSSKB is this process's resident set (the in-process server's included) in KiB.
func RSSKB() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}
