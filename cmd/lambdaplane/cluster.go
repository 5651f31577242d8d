package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/client"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

// clusterCmd: lambdaplane cluster status.
func clusterCmd(args []string) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: lambdaplane cluster status [--endpoint-url URL] [--json]\n\nHosts (alive or dead, epoch, leader, API and underlay addresses, service CIDR slice), the\nenvironments and invocations of each, every Hyperplane ENI with its home host, and the replicas of every\nstream of the store.")
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "print the raw JSON")
	o := clientFlags(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "status" {
		fs.Usage()
		return errors.New("cluster needs the subcommand status")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Resolve(ctx, *o)
	if err != nil {
		return err
	}
	resp, err := c.Do(ctx, "lambda", http.MethodGet, "/_lambdaplane/cluster", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return client.ReadError(resp)
	}
	var st server.ClusterStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return fmt.Errorf("decode the cluster status: %w", err)
	}
	if *asJSON {
		e := json.NewEncoder(os.Stdout)
		e.SetIndent("", "  ")
		return e.Encode(st)
	}
	alive := 0
	for _, h := range st.Hosts {
		if h.Alive {
			alive++
		}
	}
	fmt.Printf("answered by %s: %d/%d hosts alive, leader %s, quorate %v, store replicas %d\n\n", st.Host, alive, len(st.Hosts), orNone(st.Leader), st.Quorate, st.Replicas)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "HOST\tSTATE\tEPOCH\tAPI\tUNDERLAY\tSERVICE CIDR\tPREFIX\tENVS\tBUSY\tRAN\tFORWARDED\tSERVED\tSPILLED")
	for _, h := range st.Hosts {
		state := "dead"
		if h.Alive {
			state = "alive"
		}
		if h.Leader {
			state += ",leader"
		}
		envs := "-"
		if h.Reachable {
			envs = fmt.Sprint(h.Environments)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", h.ID, state, h.Epoch, h.API, orNone(h.Underlay), h.ServiceCIDR, h.Prefix, envs, h.Busy, h.Ran, h.Forwarded, h.Served, h.Spilled)
	}
	w.Flush()
	var lagging []string
	for _, s := range st.Streams {
		if s.Current < s.Replicas {
			lagging = append(lagging, fmt.Sprintf("%s (%d/%d current)", s.Name, s.Current, s.Replicas))
		}
	}
	if len(st.ENIs) > 0 {
		fmt.Println()
		w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "HYPERPLANE ENI\tACCOUNT\tSUBNET\tADDRESS\tHOME")
		for _, e := range st.ENIs {
			home := orNone(e.Home)
			if e.Home != "" && !e.HomeAlive {
				home += " (dead: being re-homed)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.ID, e.AccountID, e.SubnetID, e.Address, home)
		}
		w.Flush()
	}
	fmt.Printf("\n%d streams and buckets", len(st.Streams))
	if len(lagging) == 0 {
		fmt.Println(", every replica current")
	} else {
		fmt.Printf("; catching up: %s\n", strings.Join(lagging, ", "))
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
