// Command probe is the "function" used by the sandbox tests. It is built
// statically by TestMain and placed in the test's code directory.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe report|alloc MB [hold]|fill MB|sleep")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "report":
		report()
	case "alloc":
		mb, _ := strconv.Atoi(os.Args[2])
		var keep [][]byte
		for i := 0; i < mb; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				if j%4096 == 0 {
					b[j] = 1
				}
			}
			keep = append(keep, b)
		}
		fmt.Printf("allocated %d MB\n", len(keep))
		if len(os.Args) > 3 {
			time.Sleep(time.Hour)
		}
	case "fill":
		mb, _ := strconv.Atoi(os.Args[2])
		f, err := os.Create("/tmp/fill")
		if err == nil {
			buf := make([]byte, 1<<20)
			for i := 0; i < mb && err == nil; i++ {
				_, err = f.Write(buf)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		fmt.Printf("fill: %v\n", err)
	case "sleep":
		time.Sleep(time.Hour)
	}
}

type Report struct {
	Pid      int
	Pids     []string
	Uid, Gid int
	Groups   []int
	Status   map[string]string
	NetnsIno uint64
	Hostname string
	Cwd      string
	Writes   map[string]string // path -> error ("" = write succeeded)
	Devices  map[string]string // /dev/null etc. -> error of write
	Listing  map[string][]string
	Mounts   []string // mount points from /proc/self/mountinfo
}

func report() {
	r := Report{Pid: os.Getpid(), Uid: os.Getuid(), Gid: os.Getgid(), Status: map[string]string{},
		Writes: map[string]string{}, Devices: map[string]string{}, Listing: map[string][]string{}}
	r.Groups, _ = os.Getgroups()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			r.Pids = append(r.Pids, e.Name())
		}
	}
	if f, err := os.Open("/proc/self/status"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			r.Status[k] = strings.TrimSpace(v)
		}
		f.Close()
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err == nil {
		r.NetnsIno = st.Ino
	}
	r.Hostname, _ = os.Hostname()
	r.Cwd, _ = os.Getwd()
	for _, d := range []string{"/", "/var/task", "/etc", "/usr", "/usr/bin", "/opt", "/var/runtime", "/tmp", "/dev", "/dev/shm", "/proc"} {
		p := strings.TrimSuffix(d, "/") + "/probe-write"
		err := os.WriteFile(p, []byte("x"), 0o644)
		r.Writes[d] = errString(err)
		os.Remove(p)
	}
	for _, d := range []string{"null", "zero", "full", "urandom"} {
		f, err := os.OpenFile("/dev/"+d, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.Write([]byte("x"))
			f.Close()
		}
		r.Devices[d] = errString(err)
	}
	for _, d := range []string{"/", "/var/task", "/opt", "/var/runtime", "/dev"} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			r.Listing[d] = append(r.Listing[d], e.Name())
		}
	}
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) > 4 {
				r.Mounts = append(r.Mounts, f[4])
			}
		}
		f.Close()
	}
	json.NewEncoder(os.Stdout).Encode(r)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
