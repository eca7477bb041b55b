// Command bench measures dlock against gofrs/flock and against the bare
// syscalls its protocol cannot avoid, all in one run, interleaved on one
// directory, and reports medians and ratios. It also measures etcdlock
// (uncontended and hand-off) against an etcd it starts on 127.0.0.1, to
// show the price of a lock kept off the host.
//
//	go run . [-quick] [-json] [-dir DIR] [-svg FILE] [-etcd=false | -etcd-endpoint URL]
//
// Contended measurements run the bench binary again as worker processes.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	maybeWorker()
	maybePeer()
	maybeGuest()
	quick := flag.Bool("quick", false, "a run of under a minute")
	asJSON := flag.Bool("json", false, "print the results as a JSON array")
	dir := flag.String("dir", os.TempDir(), "directory (and so filesystem) to put the locks in")
	svg := flag.String("svg", "", "write a bar chart of the ratios to this SVG file")
	profile := flag.String("cpuprofile", "", "write CPU profiles of every worker of the contended trials (first round) to this directory")
	only := flag.String("only", "", "measure only these groups (comma-separated: uncontended,handoff,throughput,herd,idle)")
	implList := flag.String("impls", "", "contended implementations to run (comma-separated; default all; leaving out etcd also leaves it out of uncontended); with -alternatives, the rows to measure")
	etcd := flag.Bool("etcd", true, "measure etcdlock too (uncontended and hand-off), against an etcd started in this process")
	etcdEndpoint := flag.String("etcd-endpoint", "", "measure etcdlock against the etcd at this client URL instead of starting one")
	alt := flag.Bool("alternatives", false, "measure dlock against the lock libraries users pick instead, on every filesystem, and write docs/alternatives.{md,svg,png}")
	altOut := flag.String("out", "../docs", "with -alternatives: the directory to write into")
	altFS := flag.String("fs", strings.Join(altAllFS, ","), "with -alternatives: filesystems (sshfs-* need root and /dev/fuse; nfs-* root and qemu, which the rig installs)")
	rigState := flag.String("rig-state", filepath.Join(os.TempDir(), "dlockbench-sfs"), "with -alternatives: state directory prefix of the sshfs rig (scripts/sharedfs.sh)")
	staleRounds := flag.Int("stale-rounds", 0, "with -alternatives: rounds of the stale-reclaim race per lock and filesystem (0: the run's default, 100; -quick 20)")
	lateRounds := flag.Int("late-rounds", 0, "with -alternatives: rounds of the late release per lock and filesystem (0: the run's default, 50; -quick 20)")
	parallel := flag.Int("parallel", 0, "with -alternatives: stale and late rounds of one lock run at once (0: the run's default, 25; -quick 10)")
	herdN := flag.Int("herd-n", 0, "with -alternatives: processes of the herd CPU row (0: the run's default, 64; -quick 16)")
	from := flag.String("from", "", "with -alternatives: write the table and chart again from this alternatives.json of an earlier run, measuring nothing")
	rows := flag.String("rows", "", "with -alternatives: measure only these groups of rows (comma-separated: "+strings.Join(altGroups, ",")+")")
	flag.Parse()

	if *alt {
		cfg := altSizes(*quick)
		cfg.out, cfg.repo, cfg.rigState, cfg.progress = *altOut, "..", *rigState, os.Stderr
		cfg.fss = strings.Split(*altFS, ",")
		for _, x := range []struct {
			to   *int
			from int
		}{{&cfg.staleRounds, *staleRounds}, {&cfg.lateRounds, *lateRounds}, {&cfg.parallel, *parallel}, {&cfg.herdN, *herdN}} {
			if x.from > 0 {
				*x.to = x.from
			}
		}
		if *rows != "" {
			cfg.groups = map[string]bool{}
			for _, g := range strings.Split(*rows, ",") {
				if !slices.Contains(altGroups, g) {
					fmt.Fprintf(os.Stderr, "bench: -rows: no group %q (want %s)\n", g, strings.Join(altGroups, ","))
					os.Exit(2)
				}
				cfg.groups[g] = true
			}
		}
		if *implList != "" {
			cfg.impls = map[string]bool{}
			for _, impl := range strings.Split(*implList, ",") {
				cfg.impls[impl] = true
			}
		}
		cfg.args = os.Args[1:]
		var rep *altReport
		var err error
		if *from != "" {
			rep, err = readAltReport(*from)
		} else {
			rep, err = runAlternatives(cfg)
		}
		if err == nil {
			err = writeAlternatives(cfg.out, rep)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}

	cfg := fullConfig()
	if *quick {
		cfg = quickConfig()
	}
	cfg.dir, cfg.profile, cfg.only, cfg.impls, cfg.progress = *dir, *profile, *only, *implList, os.Stderr
	cfg.etcd, cfg.etcdEndpoint = *etcd, *etcdEndpoint
	res, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	var out io.Writer = os.Stdout
	if *asJSON {
		err = writeJSON(out, res.results)
	} else {
		writeText(out, res)
	}
	if err == nil && *svg != "" {
		err = writeSVGFile(*svg, res)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config sizes a run.
type config struct {
	dir      string
	profile  string
	only     string
	impls    string
	progress io.Writer

	etcd         bool   // measure etcdlock (uncontended and hand-off)
	etcdEndpoint string // etcd's client URL; "": start one in this process

	uncRounds, uncOps int           // uncontended: rounds of batches of ops per implementation
	rounds            int           // trials per implementation for handoff and throughput
	herdRounds        int           // trials per implementation for herd CPU
	idleRounds        int           // idle trials (all implementations at once)
	warm              time.Duration // before each trial's window
	dur               time.Duration // handoff and throughput window
	herdDur           time.Duration
	idleDur           time.Duration
	hold              time.Duration // how long a holder holds in handoff and herd trials
	handoffN, herdN   []int
}

func fullConfig() config {
	return config{
		uncRounds: 21, uncOps: 1000,
		rounds: 5, herdRounds: 3, idleRounds: 3,
		warm: 300 * time.Millisecond, dur: 2 * time.Second,
		herdDur: 3 * time.Second, idleDur: 5 * time.Second,
		hold:     time.Millisecond,
		handoffN: []int{2, 8}, herdN: []int{16, 64},
	}
}

func quickConfig() config {
	return config{
		uncRounds: 9, uncOps: 200,
		rounds: 2, herdRounds: 1, idleRounds: 1,
		warm: 250 * time.Millisecond, dur: 700 * time.Millisecond,
		herdDur: 1200 * time.Millisecond, idleDur: 5 * time.Second,
		hold:     time.Millisecond,
		handoffN: []int{2, 8}, herdN: []int{16, 64},
	}
}
