// Package testcert makes TLS certificates for tests, in memory, at test
// time: a CA, a server certificate for 127.0.0.1, ::1 and localhost, and a
// client certificate for mutual TLS, all signed by the CA. Nothing here is
// committed: every key is generated afresh, so none is ever a secret worth
// having.
package testcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// KeyType chooses the algorithm of the server and client keys (the CA's
// is always ECDSA P-256).
type KeyType int

const (
	// ECDSAP256 is the default: fast to make and to handshake with.
	ECDSAP256 KeyType = iota
	// RSA2048 is slower to make (tens of milliseconds), for tests of RSA
	// cipher suites and signatures.
	RSA2048
)

func (k KeyType) String() string {
	if k == RSA2048 {
		return "RSA-2048"
	}
	return "ECDSA-P256"
}

// ServerName is the DNS name in the server certificate, the one to set
// as tls.Config.ServerName when dialing an IP.
const ServerName = "localhost"

// Set is a CA with a server and a client certificate it signed.
type Set struct {
	// CA is the authority's certificate, CAPEM its PEM encoding, and Pool
	// a pool holding it alone: RootCAs for clients, ClientCAs for servers.
	CA    *x509.Certificate
	CAPEM []byte
	Pool  *x509.CertPool
	// Server is for 127.0.0.1, ::1 and localhost; Client has the client
	// authentication usage.
	Server tls.Certificate
	Client tls.Certificate

	caKey crypto.Signer
}

// New makes a Set with ECDSA P-256 keys, failing tb on error.
func New(tb testing.TB) *Set {
	tb.Helper()
	return NewWith(tb, ECDSAP256)
}

// NewWith makes a Set whose server and client keys are of type k.
func NewWith(tb testing.TB, k KeyType) *Set {
	tb.Helper()
	s, err := Generate(k)
	if err != nil {
		tb.Fatalf("testcert: %v", err)
	}
	return s
}

// Generate makes a Set without a testing.TB, for benchmarks' setup and
// helper processes.
func Generate(k KeyType) (*Set, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "switchboard test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	s := &Set{CA: ca, caKey: caKey, Pool: x509.NewCertPool()}
	s.Pool.AddCert(ca)
	s.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})

	s.Server, err = s.issue(k, &x509.Certificate{
		Subject:     pkix.Name{CommonName: ServerName},
		DNSNames:    []string{ServerName},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	s.Client, err = s.issue(k, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "switchboard test client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	return s, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return n
}

func newKey(k KeyType) (crypto.Signer, error) {
	if k == RSA2048 {
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func (s *Set) issue(k KeyType, tmpl *x509.Certificate) (tls.Certificate, error) {
	key, err := newKey(k)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = s.CA.NotBefore
	tmpl.NotAfter = s.CA.NotAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if k == RSA2048 {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.CA, key.Public(), s.caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ServerConfig returns a server configuration with the server
// certificate and no client authentication.
func (s *Set) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{s.Server}}
}

// MutualServerConfig returns a server configuration that requires a
// client certificate signed by the CA.
func (s *Set) MutualServerConfig() *tls.Config {
	cfg := s.ServerConfig()
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.ClientCAs = s.Pool
	return cfg
}

// ClientConfig returns a client configuration trusting the CA, with
// ServerName set to ServerName so an IP address can be dialed.
func (s *Set) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: s.Pool, ServerName: ServerName}
}

// MutualClientConfig is ClientConfig presenting the client certificate.
func (s *Set) MutualClientConfig() *tls.Config {
	cfg := s.ClientConfig()
	cfg.Certificates = []tls.Certificate{s.Client}
	return cfg
}

// Files are PEM files of a Set, for command-line tests.
type Files struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

// WriteFiles writes the Set as PEM files into a fresh t.TempDir(), keys
// readable by the owner only.
func (s *Set) WriteFiles(tb testing.TB) Files {
	tb.Helper()
	dir := tb.TempDir()
	f := Files{
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
	}
	write := func(path string, data []byte, mode os.FileMode) {
		if err := os.WriteFile(path, data, mode); err != nil {
			tb.Fatalf("testcert: %v", err)
		}
	}
	keyPEM := func(c tls.Certificate) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			tb.Fatalf("testcert: %v", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	certPEM := func(c tls.Certificate) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
	}
	write(f.CA, s.CAPEM, 0o644)
	write(f.ServerCert, certPEM(s.Server), 0o644)
	write(f.ServerKey, keyPEM(s.Server), 0o600)
	write(f.ClientCert, certPEM(s.Client), 0o644)
	write(f.ClientKey, keyPEM(s.Client), 0o600)
	return f
}
