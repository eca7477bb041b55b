// Command probe measures what a shared filesystem guarantees for the two
// primitives a directory lock can be built on, as seen from two processes
// that reach one directory through two mounts (two "hosts"):
//
//   - rename of one source name to two different targets: a compare-and-swap
//     only if at most one of the two renames succeeds;
//   - mkdir of one name: exclusive only if exactly one of the two succeeds.
//
// It also times one uncontended rename, mkdir and rmdir there.
//
// Usage:
//
//	go run ./scripts/probe DIR1 DIR2 [-rounds N]
//
// DIR1 and DIR2 are one directory seen through the two mounts (on a local
// filesystem, the same directory twice). The probe works in a fresh
// subdirectory of it and removes it at the end. It exits 0 when it could
// measure, whatever it found; 1 when it could not.
package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const childEnv = "DLOCK_PROBE_CHILD"

func main() {
	if dir := os.Getenv(childEnv); dir != "" {
		child(dir)
		return
	}
	flags := flag.NewFlagSet("probe", flag.ExitOnError)
	rounds := flags.Int("rounds", 1000, "contended rounds of each race")
	flags.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: probe DIR1 DIR2 [-rounds N]\n  DIR1, DIR2: one directory seen through two mounts\n")
		flags.PrintDefaults()
	}
	// flags may come after the directories
	var dirs []string
	args := os.Args[1:]
	for {
		flags.Parse(args)
		if flags.NArg() == 0 {
			break
		}
		dirs = append(dirs, flags.Arg(0))
		args = flags.Args()[1:]
	}
	if len(dirs) != 2 || *rounds < 1 {
		flags.Usage()
		os.Exit(2)
	}
	if err := run(dirs[0], dirs[1], *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func run(dir1, dir2 string, rounds int) error {
	name := "probe-" + randomHex(6)
	w1, w2 := filepath.Join(dir1, name), filepath.Join(dir2, name)
	if err := os.Mkdir(w1, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(w1)
	if err := appear(w2, 30*time.Second); err != nil {
		return fmt.Errorf("%s made through the first mount: %w", w2, err)
	}
	a, err := startChild(w1)
	if err != nil {
		return err
	}
	defer a.stop()
	b, err := startChild(w2)
	if err != nil {
		return err
	}
	defer b.stop()

	fmt.Printf("probe: %s and %s, %d rounds of each race, one process per mount\n", dir1, dir2, rounds)
	start := time.Now()
	if err := renameRace(a, b, rounds); err != nil {
		return err
	}
	if err := mkdirRace(a, b, rounds); err != nil {
		return err
	}
	if err := costs(w1, min(rounds, 200)); err != nil {
		return err
	}
	fmt.Printf("probe: done in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// tally counts the outcomes of racing rounds.
type tally struct {
	both, one, none int
	lose            map[string]int // the losers' answers
}

// race sends both children one command at one instant (the command's
// last word) and tallies the answers; it reports whether both won.
func (t *tally) race(a, b *proc, wa, wb []string) bool {
	at := strconv.FormatInt(time.Now().Add(3*time.Millisecond).UnixNano(), 10)
	a.send(slices.Concat(wa, []string{at})...)
	b.send(slices.Concat(wb, []string{at})...)
	ra, rb := a.reply(), b.reply()
	if t.lose == nil {
		t.lose = map[string]int{}
	}
	switch {
	case ra == "ok" && rb == "ok":
		t.both++
	case ra == "ok":
		t.one++
		t.lose[rb]++
	case rb == "ok":
		t.one++
		t.lose[ra]++
	default:
		t.none++
		t.lose[ra]++
		t.lose[rb]++
	}
	return ra == "ok" && rb == "ok"
}

// renameRace: in each round A makes free.N, B sees it, then at one instant
// A renames it to a.N and B renames it to b.N.
func renameRace(a, b *proc, rounds int) error {
	var t tally
	var example string
	for n := range rounds {
		src := fmt.Sprintf("free.%d", n)
		if r := a.do("mkdir", src); r != "ok" {
			return fmt.Errorf("mkdir %s: %s", src, r)
		}
		if r := b.do("see", src); r != "ok" {
			return fmt.Errorf("%s through the second mount: %s", src, r)
		}
		both := t.race(a, b, []string{"rename", src, fmt.Sprintf("a.%d", n)}, []string{"rename", src, fmt.Sprintf("b.%d", n)})
		if both && example == "" {
			example = fmt.Sprintf("round %d: both renames of %s succeeded; the directory then held [%s]", n, src, a.do("list"))
		}
		if r := a.do("clear"); r != "ok" {
			return fmt.Errorf("clearing round %d: %s", n, r)
		}
	}
	verdict := "rename is a compare-and-swap here (in these rounds)"
	if t.both > 0 {
		verdict = "rename is NOT a compare-and-swap here"
	}
	fmt.Printf("rename of a vanished source: %d of %d rounds both won: %s\n", t.both, rounds, verdict)
	fmt.Printf("  one won: %d, none won: %d; the losers' errors: %s\n", t.one, t.none, counts(t.lose))
	if example != "" {
		fmt.Printf("  e.g. %s\n", example)
	}
	return nil
}

// mkdirRace: in each round A and B mkdir m.N at one instant.
func mkdirRace(a, b *proc, rounds int) error {
	var t tally
	for n := range rounds {
		w := []string{"mkdirat", fmt.Sprintf("m.%d", n)}
		t.race(a, b, w, w)
		if r := a.do("clear"); r != "ok" {
			return fmt.Errorf("clearing round %d: %s", n, r)
		}
	}
	verdict := "mkdir is NOT exclusive here"
	if t.both == 0 && t.none == 0 {
		verdict = "one winner every time"
	}
	fmt.Printf("mkdir: exclusive in %d of %d (both won: %d, none won: %d): %s; the losers' errors: %s\n",
		t.one, rounds, t.both, t.none, verdict, counts(t.lose))
	return nil
}

// costs times uncontended operations through the first mount, from this
// process: mkdir of a fresh name, its rename to another fresh name, and
// rmdir of that.
func costs(dir string, samples int) error {
	var mk, ren, rm, mkrm []time.Duration
	for i := range samples {
		src, dst := filepath.Join(dir, fmt.Sprintf("c.%d", i)), filepath.Join(dir, fmt.Sprintf("d.%d", i))
		t0 := time.Now()
		if err := os.Mkdir(src, 0o755); err != nil {
			return err
		}
		t1 := time.Now()
		if err := os.Rename(src, dst); err != nil {
			return err
		}
		t2 := time.Now()
		if err := os.Remove(dst); err != nil {
			return err
		}
		t3 := time.Now()
		mk, ren, rm = append(mk, t1.Sub(t0)), append(ren, t2.Sub(t1)), append(rm, t3.Sub(t2))
		mkrm = append(mkrm, t1.Sub(t0)+t3.Sub(t2))
	}
	fmt.Printf("cost (uncontended, first mount, %d samples, median [min-max]): rename %s, mkdir+rmdir %s\n",
		samples, summary(ren), summary(mkrm))
	fmt.Printf("  mkdir %s, rmdir %s\n", summary(mk), summary(rm))
	return nil
}

func summary(d []time.Duration) string {
	slices.Sort(d)
	return fmt.Sprintf("%s [%s-%s]", round(d[len(d)/2]), round(d[0]), round(d[len(d)-1]))
}

func round(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(10 * time.Microsecond)
}

// counts writes a tally as "ENOENT 992, EEXIST 1", most frequent first.
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int {
		if m[x] != m[y] {
			return m[y] - m[x]
		}
		return strings.Compare(x, y)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", strings.TrimPrefix(k, "err "), m[k])
	}
	return strings.Join(parts, ", ")
}

// appear waits for path to be seen (through another mount's caches).
func appear(path string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		_, err := os.Stat(path)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not seen within %s: %w", within, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// proc is a child process working in one directory, driven by lines.
type proc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startChild(dir string) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &proc{cmd: cmd, in: in, out: bufio.NewScanner(out)}, nil
}

func (p *proc) send(words ...string) { fmt.Fprintln(p.in, strings.Join(words, " ")) }

func (p *proc) reply() string {
	if !p.out.Scan() {
		return "err child exited"
	}
	return p.out.Text()
}

func (p *proc) do(words ...string) string {
	p.send(words...)
	return p.reply()
}

func (p *proc) stop() {
	p.in.Close()
	p.cmd.Wait()
}

// child serves one command a line in dir: each answer is one line, "ok",
// "err ERRNO" or, for list, the names.
func child(dir string) {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		w := strings.Fields(in.Text())
		if len(w) == 0 {
			continue
		}
		var err error
		switch w[0] {
		case "mkdir":
			err = os.Mkdir(filepath.Join(dir, w[1]), 0o755)
		case "see":
			err = appear(filepath.Join(dir, w[1]), 30*time.Second)
		case "rename":
			sleepUntil(w[3])
			err = os.Rename(filepath.Join(dir, w[1]), filepath.Join(dir, w[2]))
		case "mkdirat":
			sleepUntil(w[2])
			err = os.Mkdir(filepath.Join(dir, w[1]), 0o755)
		case "list":
			names, lerr := names(dir)
			if lerr == nil {
				fmt.Println(strings.Join(names, " "))
				continue
			}
			err = lerr
		case "clear":
			err = clear(dir)
		default:
			err = fmt.Errorf("unknown command %q", w[0])
		}
		fmt.Println(answer(err))
	}
}

func names(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := f.Readdirnames(-1)
	slices.Sort(n)
	return n, err
}

// clear removes every entry of dir (all are empty directories) and waits
// until a listing shows none.
func clear(dir string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := names(dir)
		if err != nil {
			return err
		}
		if len(n) == 0 {
			return nil
		}
		for _, name := range n {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still holds %v", dir, n)
		}
	}
}

// sleepUntil waits for a wall-clock instant given in Unix nanoseconds:
// both children read the same clock, so their calls start together.
func sleepUntil(at string) {
	ns, _ := strconv.ParseInt(at, 10, 64)
	t := time.Unix(0, ns)
	if d := time.Until(t) - 200*time.Microsecond; d > 0 {
		time.Sleep(d)
	}
	for time.Now().Before(t) {
	}
}

func answer(err error) string {
	if err == nil {
		return "ok"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if s := errnoNames[errno]; s != "" {
			return "err " + s
		}
		return "err errno" + strconv.Itoa(int(errno))
	}
	return "err " + strings.ReplaceAll(err.Error(), " ", "_")
}

var errnoNames = map[syscall.Errno]string{
	syscall.ENOENT: "ENOENT", syscall.EEXIST: "EEXIST", syscall.ENOTEMPTY: "ENOTEMPTY",
	syscall.EPERM: "EPERM", syscall.EACCES: "EACCES", syscall.EIO: "EIO", syscall.EBUSY: "EBUSY",
	syscall.ESTALE: "ESTALE", syscall.EINVAL: "EINVAL", syscall.EXDEV: "EXDEV",
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
