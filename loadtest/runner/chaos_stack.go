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
	"time"

	"github.com/wakepush/wakepush/deploy/local/chdb"
	"github.com/wakepush/wakepush/loadtest/procs"
)

// startBrokerChild builds and starts the broker as a child process on a free port with a fresh
// data directory (procs.StartBroker), its log kafka.log in the report dir.
func startBrokerChild(ctx context.Context, opts Options, sync bool) (*procs.Broker, error) {
	bin, err := opts.Build(procs.BrokerPackage)
	if err != nil {
		return nil, err
	}
	return procs.StartBroker(ctx, bin, filepath.Join(opts.ReportDir, "kafka.log"), sync)
}

// findProcs returns the indices in st.procs of the processes a kill target names: one
// process, or every ingest process for "ingest".
func (st *stack) findProcs(name string) []int {
	st.procMu.Lock()
	defer st.procMu.Unlock()
	var out []int
	for i, p := range st.procs {
		if p.Name == name || (name == "ingest" && strings.HasPrefix(p.Name, "ingest-")) {
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
	return p.Kill()
}

// restartProc starts st.procs[i] again with the same binary and environment (so the same
// addresses and consumer group), its output appended to the same log, and waits until it is
// ready.
func (st *stack) restartProc(ctx context.Context, i int, ready time.Duration) error {
	st.procMu.Lock()
	old := st.procs[i]
	st.procMu.Unlock()
	p, err := old.Restart("loadtest")
	if err != nil {
		return err
	}
	st.procMu.Lock()
	st.procs[i] = p
	st.procMu.Unlock()
	for _, a := range st.admins {
		if a.name == p.Name {
			return p.WaitReady(ctx, "http://"+a.addr+"/readyz", ready)
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
