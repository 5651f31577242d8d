package hyperplane

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

func envAddr(i int) netip.Addr { // 100.64.128.0 upwards: never an environment of the fixture
	return netip.AddrFrom4([4]byte{100, 64, byte(128 + i/250), byte(i%250 + 1)})
}

// BenchmarkAttach: one attach (the service router's rule and the VPC
// router's env2eni element) with 1, 50 and 500 environments already
// attached to the same key; the subnet addresses the key uses stay 1.
func BenchmarkAttach(b *testing.B) {
	for _, n := range []int{1, 50, 500} {
		b.Run(fmt.Sprintf("attached=%d", n), func(b *testing.B) {
			f := newFixture(b, Config{})
			nw := f.network(acctA, "10.0.0.0/16", "10.0.1.0/24")
			free := f.available(acctA, nw.subnet)
			e := f.ensure(acctA, fnARN(acctA, 1), []string{nw.subnet}, nw.sgApp)
			var held []*Attachment
			for i := range n {
				a, err := f.hp.Attach(f.ctx, envAddr(i), e)
				if err != nil {
					b.Fatal(err)
				}
				held = append(held, a)
			}
			b.Cleanup(func() {
				for _, a := range held {
					_ = a.Detach()
				}
			})
			probe := envAddr(n + 1)
			var att, det []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t := time.Now()
				a, err := f.hp.Attach(f.ctx, probe, e)
				if err != nil {
					b.Fatal(err)
				}
				att = append(att, time.Since(t))
				t = time.Now()
				if err := a.Detach(); err != nil {
					b.Fatal(err)
				}
				det = append(det, time.Since(t))
			}
			b.StopTimer()
			b.ReportMetric(float64(percentile(att, 0.5).Nanoseconds())/1e6, "attach-p50-ms")
			b.ReportMetric(float64(percentile(att, 0.99).Nanoseconds())/1e6, "attach-p99-ms")
			b.ReportMetric(float64(percentile(det, 0.5).Nanoseconds())/1e6, "detach-p50-ms")
			b.ReportMetric(float64(free-f.available(acctA, nw.subnet)), "addrs/key")
		})
	}
}

// BenchmarkAttachPerEnv: the legacy cold-start cost: an ENI created
// (record, address, datapath build) and attached per environment, and
// deleted at detach; every environment holds a subnet address meanwhile.
func BenchmarkAttachPerEnv(b *testing.B) {
	f := newFixture(b, Config{Mode: ModePerEnvENI})
	nw := f.network(acctA, "10.0.0.0/16", "10.0.0.0/20")
	var att []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		a, err := f.hp.AttachPerEnv(f.ctx, envAddr(i%4000), acctA, fnARN(acctA, 1), nw.subnet, []string{nw.sgApp})
		if err != nil {
			b.Fatal(err)
		}
		att = append(att, time.Since(t))
		b.StopTimer()
		if err := a.Detach(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(att, 0.5).Nanoseconds())/1e6, "attach-p50-ms")
	b.ReportMetric(float64(percentile(att, 0.99).Nanoseconds())/1e6, "attach-p99-ms")
}
