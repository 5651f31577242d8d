#include "textflag.h"

// func vforkSteps(flags, stack uintptr, steps *step, n uintptr) (pid int64)
//
// clone(flags, stack); the parent returns the child's pid (or -errno) once
// the child exec'd or exited (CLONE_VFORK). The child, on its own stack but
// never touching it, runs steps[0..n) as system calls: nr and six
// arguments, args[0] replaced by steps[from].ret when from >= 0; each
// result is stored in ret (shared memory: CLONE_VM). At the first failure,
// or after the last call returned (an execve that failed), it exits with
// 127. Everything the child needs is loaded into registers before the
// clone: the child cannot address the parent's frame.
TEXT ·vforkSteps(SB),NOSPLIT|NOFRAME,$0-40
	MOVQ	flags+0(FP), DI
	MOVQ	stack+8(FP), SI
	MOVQ	steps+16(FP), R12
	MOVQ	n+24(FP), R13
	XORQ	DX, DX
	XORQ	R10, R10
	XORQ	R8, R8
	XORQ	R9, R9
	MOVQ	$56, AX // SYS_clone
	SYSCALL
	CMPQ	AX, $0
	JEQ	child
	MOVQ	AX, pid+32(FP)
	RET

child:
	XORQ	BX, BX // i
loop:
	CMPQ	BX, R13
	JGE	exit
	MOVQ	BX, AX
	IMULQ	$72, AX // sizeof(step)
	LEAQ	(R12)(AX*1), R14
	MOVQ	8(R14), DI // args[0]
	MOVQ	56(R14), AX // from
	CMPQ	AX, $0
	JLT	args
	IMULQ	$72, AX
	MOVQ	64(R12)(AX*1), DI // steps[from].ret
args:
	MOVQ	16(R14), SI
	MOVQ	24(R14), DX
	MOVQ	32(R14), R10
	MOVQ	40(R14), R8
	MOVQ	48(R14), R9
	MOVQ	0(R14), AX // nr
	SYSCALL
	MOVQ	AX, 64(R14) // ret
	CMPQ	AX, $0xfffffffffffff001
	JHI	exit
	INCQ	BX
	JMP	loop
exit:
	MOVQ	$127, DI
	MOVQ	$231, AX // SYS_exit_group
	SYSCALL
	JMP	exit
