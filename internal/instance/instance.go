// Package instance is the client side of "lambdaplane instance run": it
// creates a network interface through the EC2 API, attaches it (the server
// answers once the interface's network namespace is built, with its path),
// runs a command in the foreground inside that namespace, and detaches and
// deletes the interface when the command exits or is interrupted.
package instance

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/lambdaplane/lambdaplane/internal/client"
	"github.com/lambdaplane/lambdaplane/internal/netdev"
)

// EnvInstanceIP is the variable the command finds its address in.
const EnvInstanceIP = "LAMBDAPLANE_INSTANCE_IP"

// Options are the inputs of Run.
type Options struct {
	Client           client.Options
	SubnetID         string
	SecurityGroupIDs []string
	PrivateIP        string
	Command          []string
	Stdin            io.Reader
	Stdout, Stderr   io.Writer
}

// Run runs the command as an instance and returns its exit status (128+N
// when it was killed by signal N). Errors are about the instance, not the
// command.
func Run(ctx context.Context, o Options) (int, error) {
	if o.SubnetID == "" {
		return 0, errors.New("--subnet-id is required (the subnet the instance joins)")
	}
	if len(o.Command) == 0 {
		return 0, errors.New("no command: give it after --, e.g. lambdaplane instance run --subnet-id subnet-... -- redis-server")
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stdin == nil {
		o.Stdin = os.Stdin
	}
	// Signals are caught from the start: an interrupt while the interface
	// is being created still deletes it.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()

	c, err := client.Resolve(ctx, o.Client)
	if err != nil {
		return 0, err
	}
	e := &ec2Client{c: c}
	eni, err := e.createInterface(ctx, o)
	if err != nil {
		return 0, err
	}
	cleanup := func(attachment string) error {
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		var errs []error
		if attachment != "" {
			if err := e.detach(cctx, attachment); err != nil {
				errs = append(errs, err)
			}
		}
		if err := e.deleteInterface(cctx, eni.ID); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	instanceID := "i-" + randHex(17)
	att, err := e.attach(ctx, eni.ID, instanceID)
	if err != nil {
		return 0, errors.Join(err, cleanup(""))
	}
	fmt.Fprintf(o.Stderr, "lambdaplane: instance %s: interface %s, ip %s (netns %s)\n", instanceID, eni.ID, eni.IP, att.NetnsPath)

	cmd := exec.Command(o.Command[0], o.Command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	cmd.Env = append(os.Environ(), EnvInstanceIP+"="+eni.IP)
	if ctx.Err() != nil {
		return 0, errors.Join(errors.New("interrupted before the command started"), cleanup(att.AttachmentID))
	}
	if err := netdev.StartIn(att.NetnsPath, cmd.Start); err != nil {
		return 0, errors.Join(fmt.Errorf("start %s: %w", o.Command[0], err), cleanup(att.AttachmentID))
	}
	// From here on, signals go to the command; we wait for it.
	signal.Stop(sigs)
	fwd := make(chan os.Signal, 4)
	signal.Notify(fwd, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(fwd)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	for done := false; !done; {
		select {
		case s := <-fwd:
			_ = cmd.Process.Signal(s)
		case werr = <-waited:
			done = true
		}
	}
	code := 0
	if werr != nil {
		var ee *exec.ExitError
		if !errors.As(werr, &ee) {
			return 1, errors.Join(werr, cleanup(att.AttachmentID))
		}
		code = ee.ExitCode()
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			code = 128 + int(st.Signal())
		}
	}
	return code, cleanup(att.AttachmentID)
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// ec2Client is a minimal EC2 Query API client (SigV4, XML).
type ec2Client struct{ c *client.Client }

type ec2Error struct {
	Code    string `xml:"Errors>Error>Code"`
	Message string `xml:"Errors>Error>Message"`
}

// APIError is an error answered by the EC2 API.
type APIError struct {
	Code, Message string
	Status        int
}

func (e *APIError) Error() string { return e.Code + ": " + e.Message }

func (e *ec2Client) call(ctx context.Context, action string, params url.Values, out any) error {
	params.Set("Action", action)
	params.Set("Version", "2016-11-15")
	body := []byte(params.Encode())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.c.Endpoint+"/", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Content-Sha256", hash)
	if err := v4.NewSigner().SignHTTP(ctx, e.c.Creds, req, hash, "ec2", e.c.Region, time.Now()); err != nil {
		return err
	}
	resp, err := e.c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	if resp.StatusCode != http.StatusOK {
		var er ec2Error
		if xml.Unmarshal(b, &er) == nil && er.Code != "" {
			return &APIError{Code: er.Code, Message: er.Message, Status: resp.StatusCode}
		}
		return fmt.Errorf("%s: server answered %s: %s", action, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := xml.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s: decode response: %w", action, err)
		}
	}
	return nil
}

// Interface is a created network interface.
type Interface struct {
	ID string `xml:"networkInterface>networkInterfaceId"`
	IP string `xml:"networkInterface>privateIpAddress"`
}

func (e *ec2Client) createInterface(ctx context.Context, o Options) (*Interface, error) {
	p := url.Values{}
	p.Set("SubnetId", o.SubnetID)
	for i, g := range o.SecurityGroupIDs {
		p.Set("SecurityGroupId."+strconv.Itoa(i+1), g)
	}
	if o.PrivateIP != "" {
		p.Set("PrivateIpAddress", o.PrivateIP)
	}
	desc := "lambdaplane instance run: " + strings.Join(o.Command, " ")
	if len(desc) > 255 {
		desc = desc[:255]
	}
	p.Set("Description", desc)
	var out Interface
	if err := e.call(ctx, "CreateNetworkInterface", p, &out); err != nil {
		return nil, fmt.Errorf("create network interface in %s: %w", o.SubnetID, err)
	}
	if out.ID == "" || out.IP == "" {
		return nil, errors.New("create network interface: the response has no interface id or address")
	}
	return &out, nil
}

// Attachment is an attached interface.
type Attachment struct {
	AttachmentID string `xml:"attachmentId"`
	NetnsPath    string `xml:"netnsPath"`
}

func (e *ec2Client) attach(ctx context.Context, eni, instanceID string) (*Attachment, error) {
	p := url.Values{}
	p.Set("NetworkInterfaceId", eni)
	p.Set("InstanceId", instanceID)
	p.Set("DeviceIndex", "0")
	var out Attachment
	if err := e.call(ctx, "AttachNetworkInterface", p, &out); err != nil {
		return nil, fmt.Errorf("attach %s: %w", eni, err)
	}
	if out.NetnsPath == "" {
		return nil, fmt.Errorf("attach %s: the server did not say where the interface's namespace is (is it a lambdaplane server with the VPC datapath?)", eni)
	}
	return &out, nil
}

func (e *ec2Client) detach(ctx context.Context, attachment string) error {
	p := url.Values{}
	p.Set("AttachmentId", attachment)
	p.Set("Force", "true")
	if err := e.call(ctx, "DetachNetworkInterface", p, nil); err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Code == "InvalidAttachmentID.NotFound" {
			return nil
		}
		return fmt.Errorf("detach %s: %w", attachment, err)
	}
	return nil
}

func (e *ec2Client) deleteInterface(ctx context.Context, eni string) error {
	p := url.Values{}
	p.Set("NetworkInterfaceId", eni)
	if err := e.call(ctx, "DeleteNetworkInterface", p, nil); err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Code == "InvalidNetworkInterfaceID.NotFound" {
			return nil
		}
		return fmt.Errorf("delete network interface %s: %w", eni, err)
	}
	return nil
}
