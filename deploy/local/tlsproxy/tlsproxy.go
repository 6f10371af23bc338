// Package tlsproxy terminates TLS in front of a plain TCP service: each accepted TLS
// connection is forwarded, decrypted, to the backend address. The local stack uses it where its
// stand-in for a production service cannot serve TLS itself (libchdb, see package chdb), so that
// the TLS settings of clients are still tested against the real protocol behind it.
package tlsproxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy is a running TLS terminator.
type Proxy struct {
	ln      net.Listener
	backend string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Start listens on addr (host:port; port 0 picks a free one) with cfg, which needs a server
// certificate (and ClientAuth/ClientCAs for mutual TLS), and forwards connections to backend.
func Start(addr, backend string, cfg *tls.Config) (*Proxy, error) {
	if cfg == nil || (len(cfg.Certificates) == 0 && cfg.GetCertificate == nil) {
		return nil, errors.New("tlsproxy: the TLS configuration has no server certificate")
	}
	ln, err := tls.Listen("tcp", addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("tlsproxy: listen on %s: %w", addr, err)
	}
	p := &Proxy{ln: ln, backend: backend, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the TLS address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting, closes every forwarded connection and waits for them. It is safe to
// call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	err := p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// track registers c to be closed by Close; false when the proxy is closing.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go p.forward(c.(*tls.Conn))
	}
}

// forward completes the handshake (a client that fails it, e.g. without a required
// certificate, is dropped) and copies both ways until either side ends.
func (p *Proxy) forward(c *tls.Conn) {
	defer p.wg.Done()
	defer p.untrack(c)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	b, err := net.DialTimeout("tcp", p.backend, 10*time.Second)
	if err != nil {
		return
	}
	if !p.track(b) {
		b.Close()
		return
	}
	defer p.untrack(b)
	defer b.Close()
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(b, c)
		b.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}()
	go func() {
		io.Copy(c, b)
		c.CloseWrite()
		done <- struct{}{}
	}()
	<-done
	<-done
}
