package runtimes

import (
	"testing"
	"time"
)

var benchCode = map[string]struct {
	handler string
	code    files
}{
	"python3.11": {"app.handler", files{"app.py": "def handler(event, context):\n    return event\n"}},
	"nodejs20.x": {"index.handler", files{"index.js": "exports.handler = async (event) => event;\n"}},
}

// BenchmarkColdInit measures interpreter start until the runtime interface
// client's first GET /next (the handler module is imported by then).
func BenchmarkColdInit(b *testing.B) {
	for _, id := range []string{"python3.11", "nodejs20.x"} {
		b.Run(id, func(b *testing.B) {
			c := benchCode[id]
			env := newFuncEnv(b, id, c.handler, c.code, nil)
			var total time.Duration
			for i := 0; i < b.N; i++ {
				p := env.start()
				select {
				case at := <-env.api.nexts:
					total += at.Sub(p.started)
				case <-p.exited:
					b.Fatalf("exited: %v\n%s", p.waitErr, p.log())
				case <-time.After(30 * time.Second):
					b.Fatalf("no /next within 30s\n%s", p.log())
				}
				p.stop()
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/init")
		})
	}
}

// BenchmarkWarmInvoke measures one invocation round trip (GET /next answered,
// handler run, result posted) on a warm process.
func BenchmarkWarmInvoke(b *testing.B) {
	for _, id := range []string{"python3.11", "nodejs20.x"} {
		b.Run(id, func(b *testing.B) {
			c := benchCode[id]
			p := newFuncEnv(b, id, c.handler, c.code, nil).start()
			if o := p.invoke(`{"warm": true}`); o.Kind != "response" {
				b.Fatalf("%s %s", o.Kind, o.Body)
			}
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if o := p.invoke(`{"n": 1}`); o.Kind != "response" {
					b.Fatalf("%s %s", o.Kind, o.Body)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/invoke")
		})
	}
}
