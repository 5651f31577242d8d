package instance

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/lambdaplane/lambdaplane/internal/netdev"
)

var binDir, skipWhy string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "instance: privileged tests cannot run: CI must run as root")
			return 1
		}
		skipWhy = "needs root"
		return m.Run()
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	tmp, err := os.MkdirTemp("", "lpinst")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	binDir = tmp
	for _, b := range [][]string{
		{"build", "-o", filepath.Join(tmp, "lambdaplane"), "./cmd/lambdaplane"},
		{"build", "-o", filepath.Join(tmp, "lambdaplane-init"), "./cmd/lambdaplane-init"},
	} {
		cmd := exec.Command("go", b...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go %v: %v\n%s", b, err, out)
			return 1
		}
	}
	return m.Run()
}

func requireRoot(t *testing.T) {
	t.Helper()
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
}

// cleanEnv is the environment without AWS_* settings of the caller.
func cleanEnv() []string {
	var out []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "AWS_") {
			out = append(out, e)
		}
	}
	return out
}

type serverProc struct {
	t      *testing.T
	data   string
	listen string
	prefix string
	inet   string
	cmd    *exec.Cmd
	log    *bytes.Buffer
}

func (s *serverProc) start() {
	s.t.Helper()
	_ = os.Remove(filepath.Join(s.data, "endpoint"))
	s.log = &bytes.Buffer{}
	s.cmd = exec.Command(filepath.Join(binDir, "lambdaplane"), "serve", "--listen", s.listen, "--data", s.data,
		"--prefix", s.prefix, "--uplink", "netns:"+s.inet, "--service-cidr", "auto", "--pool-size", "1", "--log-level", "warn", "--metrics-listen", "off", "--url-listen", "off")
	s.cmd.Env = cleanEnv()
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(s.data, "endpoint")); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("server did not start:\n%s", s.log)
}

func (s *serverProc) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
}

func (s *serverProc) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		s.kill()
		return fmt.Errorf("server did not stop in time")
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer is a goroutine-safe buffer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

var ipRE = regexp.MustCompile(`interface (eni-[0-9a-f]+), ip ([0-9.]+) `)

// TestRedisInstance runs a real redis-server and redis-cli as instances
// through the built binary and the EC2 API: the client whose group is
// allowed gets PONG, another does not; the server survives a SIGKILL and
// restart of serve; interrupting the instance deletes its interface; a
// graceful stop leaves nothing with the prefix.
func TestRedisInstance(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/usr/bin/redis-server"); err != nil {
		t.Fatal("redis-server is not installed (Debian package redis-server)")
	}
	inet, delInet, err := netdev.NewScratchNetns("lptinet")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = delInet() })

	srv := &serverProc{t: t, data: t.TempDir(), listen: freePort(t), prefix: "t" + randHex(4), inet: "/run/netns/" + inet}
	srv.start()
	t.Cleanup(func() {
		if srv.cmd.ProcessState == nil {
			srv.kill()
		}
		_ = netdev.Cleanup(srv.prefix)
	})

	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"),
		config.WithSharedCredentialsFiles([]string{filepath.Join(srv.data, "credentials")}), config.WithSharedConfigProfile("lambdaplane"))
	if err != nil {
		t.Fatal(err)
	}
	api := ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = aws.String("http://" + srv.listen) })
	v, err := api.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := api.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: v.Vpc.VpcId, CidrBlock: aws.String("10.0.1.0/24"), AvailabilityZone: aws.String("us-east-1a")})
	if err != nil {
		t.Fatal(err)
	}
	mkSG := func(name string) string {
		g, err := api.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{VpcId: v.Vpc.VpcId, GroupName: aws.String(name), Description: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		return *g.GroupId
	}
	redisSG, appSG := mkSG("redis"), mkSG("app")
	if _, err := api.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(redisSG),
		IpPermissions: []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(6379), ToPort: aws.Int32(6379),
			UserIdGroupPairs: []types.UserIdGroupPair{{GroupId: aws.String(appSG)}}}}}); err != nil {
		t.Fatal(err)
	}
	subnet := *sub.Subnet.SubnetId

	instance := func(out io.Writer, groups string, args ...string) *exec.Cmd {
		a := []string{"instance", "run", "--data", srv.data, "--subnet-id", subnet}
		if groups != "" {
			a = append(a, "--security-group-ids", groups)
		}
		cmd := exec.Command(filepath.Join(binDir, "lambdaplane"), append(append(a, "--"), args...)...)
		cmd.Env = cleanEnv()
		cmd.Stdout, cmd.Stderr = out, out
		return cmd
	}
	redisOut := &syncBuffer{}
	redis := instance(redisOut, redisSG, "/usr/bin/redis-server", "--port", "6379", "--bind", "0.0.0.0",
		"--protected-mode", "no", "--save", "", "--appendonly", "no")
	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if redis.ProcessState == nil {
			_ = redis.Process.Signal(syscall.SIGKILL)
			_ = redis.Wait()
		}
	})
	var eni, ip string
	deadline := time.Now().Add(30 * time.Second)
	for ip == "" && time.Now().Before(deadline) {
		if m := ipRE.FindStringSubmatch(redisOut.String()); m != nil {
			eni, ip = m[1], m[2]
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ip == "" {
		t.Fatalf("redis instance did not report its address:\n%s\nserver:\n%s", redisOut, srv.log)
	}

	// redis-cli from an allowed instance: PONG (bounded retries while redis starts).
	pingFrom := func(groups string) (string, error) {
		var out bytes.Buffer
		cmd := instance(&out, groups, "timeout", "3", "redis-cli", "-h", ip, "PING")
		err := cmd.Run()
		return out.String(), err
	}
	var got string
	for i := 0; i < 20; i++ {
		got, err = pingFrom(appSG)
		if strings.Contains(got, "PONG") {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !strings.Contains(got, "PONG") {
		t.Fatalf("redis-cli from the app group: %q, %v\nredis:\n%s", got, err, redisOut)
	}
	if got, _ := pingFrom(""); strings.Contains(got, "PONG") {
		t.Errorf("redis-cli from the default group got an answer: %q", got)
	}
	desc, err := api.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{eni}})
	if err != nil || len(desc.NetworkInterfaces) != 1 || desc.NetworkInterfaces[0].Status != types.NetworkInterfaceStatusInUse {
		t.Fatalf("redis interface while running: %+v, %v", desc, err)
	}

	// SIGKILL and restart the server: redis keeps its interface and answers.
	srv.kill()
	srv.start()
	got, err = pingFrom(appSG)
	if !strings.Contains(got, "PONG") {
		t.Fatalf("redis-cli after a server restart: %q, %v\nserver:\n%s", got, err, srv.log)
	}
	if strings.Contains(got, "ip "+ip+" ") {
		t.Errorf("a new instance got redis's address %s after restart:\n%s", ip, got)
	}

	// Interrupt the redis instance: SIGINT reaches redis, the interface goes.
	_ = redis.Process.Signal(syscall.SIGINT)
	werr := make(chan error, 1)
	go func() { werr <- redis.Wait() }()
	select {
	case <-werr:
	case <-time.After(30 * time.Second):
		t.Fatalf("instance run did not exit after SIGINT:\n%s", redisOut)
	}
	if !strings.Contains(redisOut.String(), "Received SIGINT") {
		t.Errorf("redis did not see SIGINT:\n%s", redisOut)
	}
	if _, err := api.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{eni}}); err == nil ||
		!strings.Contains(err.Error(), "InvalidNetworkInterfaceID.NotFound") {
		t.Errorf("redis interface after exit: %v", err)
	}

	// Graceful stop removes everything with the prefix.
	if err := srv.stop(); err != nil {
		t.Errorf("server stop: %v\n%s", err, srv.log)
	}
	if left, err := netdev.Leftovers(srv.prefix); err != nil || len(left) > 0 {
		t.Errorf("leftovers after stop: %v %v", left, err)
	}
	sc := bufio.NewScanner(strings.NewReader(srv.log.String()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "level=ERROR") {
			t.Logf("server: %s", sc.Text())
		}
	}
}
