package initproc

import (
	"testing"
	"unsafe"
)

// The assembly addresses step's fields by offset.
func TestStepLayout(t *testing.T) {
	var s step
	if unsafe.Sizeof(s) != 72 || unsafe.Offsetof(s.args) != 8 || unsafe.Offsetof(s.from) != 56 || unsafe.Offsetof(s.ret) != 64 {
		t.Fatalf("step layout: size %d, args at %d, from at %d, ret at %d; vfork_linux_amd64.s expects 72, 8, 56, 64",
			unsafe.Sizeof(s), unsafe.Offsetof(s.args), unsafe.Offsetof(s.from), unsafe.Offsetof(s.ret))
	}
}
