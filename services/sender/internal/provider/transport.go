package provider

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// Reasons of a transport failure (no answer from the provider); the action is always Retry.
const (
	ReasonTimeout  = "timeout"  // the per-request deadline passed
	ReasonCanceled = "canceled" // the caller gave up (shutdown)
	ReasonNetwork  = "network"  // dial, TLS, reset, GOAWAY, connection lost
)

// TransportReason classifies an error that left no provider answer. parent is the caller's
// context: its cancellation is "canceled", while the per-request deadline is "timeout".
func TransportReason(parent context.Context, err error) string {
	switch {
	case parent.Err() != nil:
		return ReasonCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReasonTimeout
	}
	return ReasonNetwork
}

// CertPool reads a PEM CA bundle (a provider mock's CA, in tests and the dev stack).
func CertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", file)
	}
	return pool, nil
}
