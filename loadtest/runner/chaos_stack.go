package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/chdb"
	"github.com/wakepush/wakepush/deploy/local/freeport"
)

// brokerPackage is the broker the runner starts as a child process when the scenario freezes
// or restarts Kafka (an in-process broker cannot be stopped with a signal).
const brokerPackage = "github.com/wakepush/wakepush/deploy/local/cmd/kafka-broker"

// brokerChild is the Kafka broker run as a child process: it can be frozen (SIGSTOP), killed
// and started again on the same address and data directory.
type brokerChild struct {
	bin, addr, dataDir, log string
	sync                    bool // -sync-writes
	proc                    *process
}

// startBrokerChild builds and starts the broker on a free port with a fresh data directory.
// With sync, it fsyncs every produced batch, so a SIGKILL loses nothing Kafka acknowledged
// (kfake then handles one fsync at a time: far slower under load).
func startBrokerChild(ctx context.Context, opts Options, sync bool) (*brokerChild, error) {
	bin, err := opts.Build(brokerPackage)
	if err != nil {
		return nil, err
	}
	addr, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "loadtest-kafka-")
	if err != nil {
		return nil, err
	}
	b := &brokerChild{bin: bin, addr: addr, dataDir: dir, sync: sync, log: filepath.Join(opts.ReportDir, "kafka.log")}
	if err := b.start(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return b, nil
}

// start runs the broker and waits until it answers metadata requests.
func (b *brokerChild) start(ctx context.Context) error {
	args := []string{"-addr", b.addr, "-data-dir", b.dataDir}
	if b.sync {
		args = append(args, "-sync-writes")
	}
	p, err := startProcess("kafka", b.bin, b.log, nil, args...)
	if err != nil {
		return err
	}
	b.proc = p
	deadline := time.Now().Add(60 * time.Second)
	for {
		mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := (&kafka.Client{Addr: kafka.TCP(b.addr), Timeout: 2 * time.Second}).Metadata(mctx, &kafka.MetadataRequest{})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("kafka broker exited before it was ready (%v); log: %s", p.err, b.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kafka broker not ready at %s after 60 s: %v; log: %s", b.addr, err, b.log)
		}
	}
}

// signal sends sig to the broker process.
func (b *brokerChild) signal(sig syscall.Signal) error {
	return syscall.Kill(b.proc.proc.Pid(), sig)
}

// end ends the broker: kill = SIGKILL, else SIGTERM (it persists its state), and waits.
func (b *brokerChild) end(kill bool) error {
	if kill {
		if err := b.proc.proc.Cmd.Process.Kill(); err != nil {
			return err
		}
		<-b.proc.done
		return nil
	}
	b.signal(syscall.SIGCONT) // a frozen broker cannot handle SIGTERM
	err := b.proc.proc.Stop()
	<-b.proc.done
	if b.proc.proc.Killed() {
		return fmt.Errorf("kafka broker did not stop within %s of SIGTERM (killed)", stopTimeout)
	}
	return err
}

// close stops the broker and removes its data.
func (b *brokerChild) close() {
	if b.proc != nil {
		select {
		case <-b.proc.done:
		default:
			b.signal(syscall.SIGCONT)
			b.proc.proc.Stop()
		}
	}
	os.RemoveAll(b.dataDir)
}

// findProcs returns the indices in st.procs of the processes a kill target names: one
// process, or every ingest process for "ingest".
func (st *stack) findProcs(name string) []int {
	st.procMu.Lock()
	defer st.procMu.Unlock()
	var out []int
	for i, p := range st.procs {
		if p.name == name || (name == "ingest" && strings.HasPrefix(p.name, "ingest-")) {
			out = append(out, i)
		}
	}
	return out
}

// killProc SIGKILLs st.procs[i] and waits until it is gone.
func (st *stack) killProc(i int) error {
	st.procMu.Lock()
	p := st.procs[i]
	st.procMu.Unlock()
	select {
	case <-p.done:
		return fmt.Errorf("%s had already exited: %v (log %s)", p.name, p.err, p.log)
	default:
	}
	if err := p.proc.Cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	<-p.done
	return nil
}

// restartProc starts st.procs[i] again with the same binary and environment (so the same
// addresses and consumer group), its output appended to the same log, and waits until it is
// ready.
func (st *stack) restartProc(ctx context.Context, i int, ready time.Duration) error {
	st.procMu.Lock()
	old := st.procs[i]
	st.procMu.Unlock()
	if f, err := os.OpenFile(old.log, os.O_WRONLY|os.O_APPEND, 0); err == nil {
		fmt.Fprintf(f, "\n=== loadtest: %s restarted at %s ===\n\n", old.name, time.Now().UTC().Format(time.RFC3339Nano))
		f.Close()
	}
	p, err := startProcess(old.name, old.bin, old.log, old.env)
	if err != nil {
		return err
	}
	st.procMu.Lock()
	st.procs[i] = p
	st.procMu.Unlock()
	for _, a := range st.admins {
		if a.name == p.name {
			return p.waitReady(ctx, "http://"+a.addr+"/readyz", ready)
		}
	}
	return nil
}

// stopClickHouse stops the ClickHouse server the run started.
func (st *stack) stopClickHouse() error {
	if st.ch == nil {
		return errors.New("no ClickHouse of the run's own to stop (-clickhouse given?)")
	}
	return st.ch.Stop()
}

// startClickHouseAgain starts ClickHouse on the data directory and ports it had, its output
// appended to clickhouse.log.
func (st *stack) startClickHouseAgain(ctx context.Context) error {
	host, tcpPort, err := splitPort(st.ch.TCPAddr)
	if err != nil {
		return err
	}
	_, httpPort, err := splitPort(st.ch.HTTPAddr)
	if err != nil {
		return err
	}
	if st.chLog == nil {
		st.chLog, err = os.OpenFile(st.chLogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(st.chLog, "\n=== loadtest: ClickHouse restarted at %s ===\n\n", time.Now().UTC().Format(time.RFC3339Nano))
	srv, err := chdb.Start(ctx, chdb.StartOptions{DataDir: st.ch.DataDir, ListenHost: host, TCPPort: tcpPort, HTTPPort: httpPort,
		Output: st.chLog, ReadyTimeout: 2 * time.Minute})
	if err != nil {
		return err
	}
	st.ch = srv
	return nil
}

func splitPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	return host, port, err
}
