package senderbench

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"
)

// BareFlag is the first argument that turns the sender-bench binary into the bare apns2 child.
const BareFlag = "-bare-apns2"

// Lines of the bare child's protocol on stdin and stdout.
const (
	bareReady = "ready" // child → parent: set up, waiting for go
	bareGo    = "go"    // parent → child: start sending
)

// BareResult is the bare child's report, one JSON line on stdout after the loop.
type BareResult struct {
	Pushes   int            `json:"pushes"`   // pushes attempted
	OK       int            `json:"ok"`       // answered 200
	Statuses map[int]int    `json:"statuses"` // answers by HTTP status
	Errors   int            `json:"errors"`   // no answer (transport error, timeout)
	FirstErr string         `json:"first_error,omitempty"`
	Reasons  map[string]int `json:"reasons,omitempty"` // APNs reasons of non-200 answers
	// The loop's own CPU (getrusage RUSAGE_SELF, user + system) and wall time, from the go
	// line to the last answer.
	CPUNanos  int64 `json:"cpu_ns"`
	WallNanos int64 `json:"wall_ns"`
}

type bareOptions struct {
	url, caFile, keyFile, teamID, keyID, topic, devices string
	concurrency, conns                                  int
	timeout                                             time.Duration
}

func parseBareFlags(args []string, stderr io.Writer) (*bareOptions, error) {
	o := &bareOptions{}
	fs := flag.NewFlagSet("sender-bench "+BareFlag, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.url, "url", "", "APNs endpoint (the mock), https://host:port")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM CA the endpoint's certificate chains to")
	fs.StringVar(&o.keyFile, "key-file", "", "the .p8 signing key (token auth)")
	fs.StringVar(&o.teamID, "team-id", "", "team id of the key")
	fs.StringVar(&o.keyID, "key-id", "", "key id")
	fs.StringVar(&o.topic, "topic", "", "apns-topic (the app's bundle id)")
	fs.StringVar(&o.devices, "devices", "", "devices file: token, device id and wake id per line")
	fs.IntVar(&o.concurrency, "concurrency", 64, "pushes in flight (goroutines)")
	fs.IntVar(&o.conns, "conns", 1, "HTTP/2 connections (one apns2 client each, used round-robin)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "deadline of one push (as the sender's WAKEPUSH_SENDER_APNS_TIMEOUT)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var missing []string
	for name, v := range map[string]string{"-url": o.url, "-ca-file": o.caFile, "-key-file": o.keyFile, "-team-id": o.teamID,
		"-key-id": o.keyID, "-topic": o.topic, "-devices": o.devices} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	switch {
	case len(missing) > 0:
		return nil, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.concurrency < 1 || o.conns < 1:
		return nil, errors.New("-concurrency and -conns must be at least 1")
	}
	return o, nil
}

// BareMain is the bare apns2 child (args after BareFlag): it loads the key, the CA and the
// devices, builds -conns apns2 token clients on apns2's own HTTP/2 transport trusting the CA,
// says ready, waits for go on stdin, pushes one notification per device (the payload and
// headers the sender would send for its wake) from -concurrency goroutines, writes a BareResult
// line and exits when stdin closes. It returns the exit status.
func BareMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseBareFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "sender-bench "+BareFlag+":", err)
		return 2
	}
	if err := bare(o, stdin, stdout); err != nil {
		fmt.Fprintln(stderr, "sender-bench "+BareFlag+":", err)
		return 1
	}
	return 0
}

func bare(o *bareOptions, stdin io.Reader, stdout io.Writer) error {
	key, err := token.AuthKeyFromFile(o.keyFile)
	if err != nil {
		return fmt.Errorf("key %s: %w", o.keyFile, err)
	}
	caPEM, err := os.ReadFile(o.caFile)
	if err != nil {
		return fmt.Errorf("CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("CA %s: no PEM certificate", o.caFile)
	}
	f, err := os.Open(o.devices)
	if err != nil {
		return fmt.Errorf("devices: %w", err)
	}
	devs, err := ReadDevices(f)
	f.Close()
	if err != nil {
		return err
	}
	// One JWT for every client, as the sender shares one per signing key.
	tok := &token.Token{AuthKey: key, KeyID: o.keyID, TeamID: o.teamID}
	clients := make([]*apns2.Client, o.conns)
	for i := range clients {
		c := apns2.NewTokenClient(tok)
		c.Host = o.url
		c.HTTPClient.Transport.(*http2.Transport).TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		clients[i] = c
	}
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}()

	in := bufio.NewReader(stdin)
	if _, err := fmt.Fprintln(stdout, bareReady); err != nil {
		return fmt.Errorf("say ready: %w", err)
	}
	line, err := in.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != bareGo {
		return fmt.Errorf("waiting for %q on stdin: got %q (%v)", bareGo, line, err)
	}

	cpu0, err := rusageCPU()
	if err != nil {
		return err
	}
	began := time.Now()
	res := pushAll(clients, o.topic, devs, o.concurrency, o.timeout)
	res.WallNanos = time.Since(began).Nanoseconds()
	cpu1, err := rusageCPU()
	if err != nil {
		return err
	}
	res.CPUNanos = (cpu1 - cpu0).Nanoseconds()
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode the result: %w", err)
	}
	if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
		return fmt.Errorf("write the result: %w", err)
	}
	_, _ = io.Copy(io.Discard, in) // until the parent has read our CPU and closes stdin
	return nil
}

// pushAll sends one push per device from concurrency goroutines, client i mod len(clients) for
// device i, each push with its own deadline, and counts the answers.
func pushAll(clients []*apns2.Client, topic string, devs []Device, concurrency int, timeout time.Duration) BareResult {
	var (
		next atomic.Int64
		mu   sync.Mutex
		wg   sync.WaitGroup
		res  = BareResult{Pushes: len(devs), Statuses: map[int]int{}, Reasons: map[string]int{}}
	)
	for range concurrency {
		wg.Go(func() {
			statuses := map[int]int{}
			reasons := map[string]int{}
			ok, errs, firstErr := 0, 0, ""
			for {
				i := int(next.Add(1) - 1)
				if i >= len(devs) {
					break
				}
				d := &devs[i]
				n, err := Notification(topic, d.Token, d.DeviceID, d.WakeID, time.Now())
				if err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), timeout)
					var resp *apns2.Response
					resp, err = clients[i%len(clients)].PushWithContext(ctx, n)
					cancel()
					if err == nil {
						statuses[resp.StatusCode]++
						if resp.StatusCode == http.StatusOK {
							ok++
						} else {
							reasons[resp.Reason]++
						}
						continue
					}
				}
				errs++
				if firstErr == "" {
					// A transport error names the URL, which ends in the token: keep it out.
					firstErr = strings.ReplaceAll(err.Error(), d.Token, "<token>")
				}
			}
			mu.Lock()
			defer mu.Unlock()
			res.OK += ok
			res.Errors += errs
			if res.FirstErr == "" {
				res.FirstErr = firstErr
			}
			for s, c := range statuses {
				res.Statuses[s] += c
			}
			for r, c := range reasons {
				res.Reasons[r] += c
			}
		})
	}
	wg.Wait()
	return res
}

// rusageCPU is this process's user + system CPU time by getrusage(2).
func rusageCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
