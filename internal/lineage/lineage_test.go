package lineage

import (
	"context"
	"testing"
)

func TestStep(t *testing.T) {
	a, b := Tag("111111111111", "f"), Tag("111111111111", "g")
	if a == b || len(a) != 8 {
		t.Fatalf("tags %q %q", a, b)
	}
	h, n := Step("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0", a)
	if n != 0 || h != "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0;Lineage="+a+":1" {
		t.Fatalf("first step: %q %d", h, n)
	}
	h, n = Step(h, b)
	if n != 0 || Count(h, a) != 1 || Count(h, b) != 1 {
		t.Fatalf("second function: %q", h)
	}
	for i := 1; i < 20; i++ {
		var prev int
		h, prev = Step(h, a)
		if prev != i {
			t.Fatalf("step %d saw %d (%q)", i, prev, h)
		}
	}
	if Count(h, a) != 20 || Count(h, b) != 1 {
		t.Fatalf("after 20: %q", h)
	}
	// Versioned entries and junk.
	if Count("Root=x;Lineage=2:"+a+":7", a) != 7 {
		t.Fatal("versioned entry")
	}
	if h, n := Step("Lineage=zz|:3|"+a+":x", a); n != 0 || h != "Lineage="+a+":1" {
		t.Fatalf("junk: %q %d", h, n)
	}
	if h, n := Step("", a); n != 0 || h != "Lineage="+a+":1" {
		t.Fatalf("empty: %q %d", h, n)
	}
}

func TestContext(t *testing.T) {
	ctx := context.Background()
	if Header(ctx) != "" || WithHeader(ctx, "") != ctx {
		t.Fatal("empty context")
	}
	if Header(WithHeader(ctx, "Root=1")) != "Root=1" {
		t.Fatal("round trip")
	}
}
