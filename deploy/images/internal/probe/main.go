// Command probe reports, as one JSON object, what a process started from an image sees: its user
// and groups, HOME and PATH, whether the CA bundle parses, and whether it can write to the
// binaries' directory or the root. run_test.go builds it statically, bind-mounts it into a
// container of each image and runs it in place of the entrypoint, so that what it reports is the
// image's user and files, not the host's.
package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
)

type report struct {
	UID, GID, EUID, EGID int
	Groups               []int
	Home, Path           string
	SSLCertFile          string
	CACerts              int    // certificates parsed from $SSL_CERT_FILE
	CAError              string `json:",omitempty"`
	WritableBinDir       bool   // could create a file in /usr/local/bin
	WritableRoot         bool   // could create a file in /
}

func main() {
	r := report{UID: os.Getuid(), GID: os.Getgid(), EUID: os.Geteuid(), EGID: os.Getegid(),
		Home: os.Getenv("HOME"), Path: os.Getenv("PATH"), SSLCertFile: os.Getenv("SSL_CERT_FILE")}
	r.Groups, _ = os.Getgroups()
	if b, err := os.ReadFile(r.SSLCertFile); err != nil {
		r.CAError = err.Error()
	} else {
		for {
			var blk *pem.Block
			if blk, b = pem.Decode(b); blk == nil {
				break
			}
			if _, err := x509.ParseCertificate(blk.Bytes); err == nil {
				r.CACerts++
			}
		}
	}
	r.WritableBinDir = canCreate("/usr/local/bin")
	r.WritableRoot = canCreate("/")
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		os.Exit(1)
	}
}

func canCreate(dir string) bool {
	f, err := os.CreateTemp(dir, ".probe-")
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}
