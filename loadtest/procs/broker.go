package procs

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/freeport"
)

// BrokerPackage is the Kafka broker (kfake) the load tools run as a child process: unlike an
// in-process broker it can be frozen (SIGSTOP), killed and restarted, and its CPU is its own.
const BrokerPackage = "github.com/wakepush/wakepush/deploy/local/cmd/kafka-broker"

// Broker is the Kafka broker run as a child process: it can be frozen (Signal SIGSTOP),
// ended and started again on the same address and data directory.
type Broker struct {
	Bin, Addr, DataDir, Log string
	Sync                    bool // -sync-writes
	Proc                    *Process
}

// StartBroker starts the broker binary bin (built from BrokerPackage) on a free port with a
// fresh data directory, its output appended to logPath, and waits until it answers metadata
// requests. With sync, it fsyncs every produced batch, so a SIGKILL loses nothing Kafka
// acknowledged (kfake then handles one fsync at a time: far slower under load).
func StartBroker(ctx context.Context, bin, logPath string, sync bool) (*Broker, error) {
	addr, err := freeport.Addr()
	if err != nil {
		return nil, fmt.Errorf("kafka broker: free port: %w", err)
	}
	dir, err := os.MkdirTemp("", "loadtest-kafka-")
	if err != nil {
		return nil, fmt.Errorf("kafka broker: data directory: %w", err)
	}
	b := &Broker{Bin: bin, Addr: addr, DataDir: dir, Sync: sync, Log: logPath}
	if err := b.Start(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return b, nil
}

// Start runs the broker and waits until it answers metadata requests.
func (b *Broker) Start(ctx context.Context) error {
	args := []string{"-addr", b.Addr, "-data-dir", b.DataDir}
	if b.Sync {
		args = append(args, "-sync-writes")
	}
	p, err := Start("kafka", b.Bin, b.Log, nil, args...)
	if err != nil {
		return err
	}
	b.Proc = p
	deadline := time.Now().Add(60 * time.Second)
	for {
		// A transport of its own each time: kafka-go's shared DefaultTransport answers metadata
		// requests from its cache, so after a restart it would report the old broker as up.
		tr := &kafka.Transport{}
		mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := (&kafka.Client{Addr: kafka.TCP(b.Addr), Timeout: 2 * time.Second, Transport: tr}).Metadata(mctx, &kafka.MetadataRequest{})
		cancel()
		tr.CloseIdleConnections()
		if err == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("kafka broker exited before it was ready (%v); log: %s", p.Err(), b.Log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kafka broker not ready at %s after 60 s: %v; log: %s", b.Addr, err, b.Log)
		}
	}
}

// Pid is the broker's process id.
func (b *Broker) Pid() int { return b.Proc.Pid() }

// Signal sends sig to the broker process.
func (b *Broker) Signal(sig syscall.Signal) error { return b.Proc.Signal(sig) }

// End ends the broker: kill = SIGKILL, else SIGTERM (it persists its state), and waits.
func (b *Broker) End(kill bool) error {
	if kill {
		if err := b.Proc.proc.Cmd.Process.Kill(); err != nil {
			return err
		}
		<-b.Proc.Done()
		return nil
	}
	b.Signal(syscall.SIGCONT) // a frozen broker cannot handle SIGTERM
	err := b.Proc.proc.Stop()
	<-b.Proc.Done()
	if b.Proc.proc.Killed() {
		return fmt.Errorf("kafka broker did not stop within %s of SIGTERM (killed)", StopTimeout)
	}
	return err
}

// Close stops the broker and removes its data.
func (b *Broker) Close() {
	if b.Proc != nil && !b.Proc.Exited() {
		b.Signal(syscall.SIGCONT)
		b.Proc.proc.Stop()
	}
	os.RemoveAll(b.DataDir)
}
