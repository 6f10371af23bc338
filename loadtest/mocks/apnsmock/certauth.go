package apnsmock

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Environments of Config.Environment and ClientCertOptions.Environment.
const (
	EnvProduction = "production"
	EnvSandbox    = "sandbox"
)

var (
	// oidUID is the subject attribute Apple's push certificates carry the
	// bundle id (topic) in: "UID=com.example.app, CN=Apple Push Services:
	// com.example.app, OU=<team id>, …".
	oidUID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}
	// Apple's extensions marking a push certificate for the development
	// (sandbox) and production environments; a universal certificate has both.
	oidAPNsDevelopment = asn1.ObjectIdentifier{1, 2, 840, 113635, 100, 6, 3, 1}
	oidAPNsProduction  = asn1.ObjectIdentifier{1, 2, 840, 113635, 100, 6, 3, 2}
	asn1Null           = []byte{0x05, 0x00}
)

// clientCAs is the set of CAs trusted for client certificates; gen changes
// whenever it does so that cached verdicts are re-checked.
type clientCAs struct {
	mu   sync.Mutex
	pool atomic.Pointer[x509.CertPool]
	gen  atomic.Uint64
}

// AddClientCA trusts ca for certificate authentication: a connection whose
// client certificate chains to it (and is valid for client auth) is
// authenticated for the topic in the certificate's subject.
func (s *Server) AddClientCA(ca *x509.Certificate) {
	s.clientCAs.mu.Lock()
	defer s.clientCAs.mu.Unlock()
	pool := x509.NewCertPool()
	if old := s.clientCAs.pool.Load(); old != nil {
		pool = old.Clone()
	}
	pool.AddCert(ca)
	s.clientCAs.pool.Store(pool)
	s.clientCAs.gen.Add(1)
	s.log.Info("apns-mock client CA added", "subject", ca.Subject.String())
}

// certVerdict is the outcome of checking a connection's client certificate.
type certVerdict struct {
	gen    uint64
	reason string // "" when valid; else BadCertificate or BadCertificateEnvironment
	topic  string // the certificate's topic (subject UID, else CN)
	id     *identity
}

// allows reports whether the certificate may push to topic: its own topic
// and, for a bundle id, that bundle's push-type variants (.voip,
// .complication, …), like Apple's universal push certificates.
func (v *certVerdict) allows(topic string) bool {
	if topic == v.topic {
		return true
	}
	certBase, certType := splitTopic(v.topic)
	base, _ := splitTopic(topic)
	return certType == "" && base == certBase
}

func (v *certVerdict) identity() *identity {
	if v == nil {
		return nil
	}
	return v.id
}

// certAuth returns the verdict on the request's client certificate, or nil
// when the connection presented none (token auth). The verdict is cached per
// connection until the trusted CAs change.
func (s *Server) certAuth(r *http.Request, cs *connState) *certVerdict {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	gen := s.clientCAs.gen.Load()
	if cs != nil {
		if v := cs.cert.Load(); v != nil && v.gen == gen {
			return v
		}
	}
	v := s.verifyClientCert(r.TLS.PeerCertificates, gen)
	if cs != nil {
		cs.cert.Store(v)
	}
	return v
}

func (s *Server) verifyClientCert(chain []*x509.Certificate, gen uint64) *certVerdict {
	v := &certVerdict{gen: gen, reason: ReasonBadCertificate}
	roots := s.clientCAs.pool.Load()
	if roots == nil {
		return v
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: s.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return v
	}
	v.topic = certTopic(leaf)
	if v.topic == "" {
		return v
	}
	var dev, prod bool
	for _, e := range leaf.Extensions {
		dev = dev || e.Id.Equal(oidAPNsDevelopment)
		prod = prod || e.Id.Equal(oidAPNsProduction)
	}
	if (s.env == EnvProduction && dev && !prod) || (s.env == EnvSandbox && prod && !dev) {
		v.reason = ReasonBadCertificateEnvironment
		return v
	}
	team := ""
	if ou := leaf.Subject.OrganizationalUnit; len(ou) > 0 {
		team = ou[0]
	}
	v.reason, v.id = "", &identity{teamID: team}
	return v
}

// certTopic is the subject UID, else the CN without a "…: " prefix such as
// "Apple Push Services: ".
func certTopic(c *x509.Certificate) string {
	for _, n := range c.Subject.Names {
		if n.Type.Equal(oidUID) {
			if s, ok := n.Value.(string); ok && s != "" {
				return s
			}
		}
	}
	cn := c.Subject.CommonName
	if i := strings.LastIndex(cn, ": "); i >= 0 {
		cn = cn[i+2:]
	}
	return strings.TrimSpace(cn)
}

// ClientCertOptions describe a push certificate to issue.
type ClientCertOptions struct {
	// Topic is the bundle id the certificate is for (subject UID and CN
	// "Apple Push Services: <topic>"). Required.
	Topic string
	// TeamID goes into the subject OU (Push.TeamID). Optional.
	TeamID string
	// Environment is EnvProduction, EnvSandbox or "" (both, like Apple's
	// universal "Sandbox & Production" certificate).
	Environment string
	// NotBefore and NotAfter default to an hour ago and a year from now.
	NotBefore, NotAfter time.Time
}

// ClientCert is an issued push certificate.
type ClientCert struct {
	TLS     tls.Certificate // with Leaf
	CertPEM []byte          // the certificate
	KeyPEM  []byte          // its ECDSA P-256 key, PKCS#8
}

// PEM returns the certificate and key in one PEM file, the form
// certificate.FromPemFile of sideshow/apns2 reads.
func (c *ClientCert) PEM() []byte { return append(append([]byte(nil), c.CertPEM...), c.KeyPEM...) }

// IssueClientCert signs an APNs-style push (client) certificate for a topic.
// Trust the CA for client certificates (Config.ClientCAs or
// Server.AddClientCA) to have the mock accept it.
func (ca *CA) IssueClientCert(o ClientCertOptions) (*ClientCert, error) {
	if o.Topic == "" {
		return nil, errors.New("apnsmock: client certificate needs a topic")
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.AddDate(1, 0, 0)
	}
	subj := pkix.Name{
		CommonName:   "Apple Push Services: " + o.Topic,
		Organization: []string{"wakepush loadtest"},
		Country:      []string{"US"},
		ExtraNames:   []pkix.AttributeTypeAndValue{{Type: oidUID, Value: o.Topic}},
	}
	if o.TeamID != "" {
		subj.OrganizationalUnit = []string{o.TeamID}
	}
	var exts []pkix.Extension
	switch o.Environment {
	case EnvProduction:
		exts = append(exts, pkix.Extension{Id: oidAPNsProduction, Value: asn1Null})
	case EnvSandbox:
		exts = append(exts, pkix.Extension{Id: oidAPNsDevelopment, Value: asn1Null})
	case "":
		exts = append(exts, pkix.Extension{Id: oidAPNsDevelopment, Value: asn1Null},
			pkix.Extension{Id: oidAPNsProduction, Value: asn1Null})
	default:
		return nil, errors.New("apnsmock: client certificate environment: want production, sandbox or empty")
	}
	tmpl := &x509.Certificate{
		Subject:         subj,
		NotBefore:       o.NotBefore,
		NotAfter:        o.NotAfter,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		ExtraExtensions: exts,
	}
	cert, err := ca.Sign(tmpl)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, err
	}
	cert.Certificate = cert.Certificate[:1] // a push certificate file holds the leaf only
	return &ClientCert{
		TLS:     cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}, nil
}
