package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"switchboard/loadgen"
)

// TLS for bench and compare. Against a server given with --connect the
// client flags say how to verify it. For the servers they start
// themselves, a throwaway ECDSA P-256 certificate for 127.0.0.1 is made in
// a temporary directory, handed to each server with --tls-cert/--tls-key,
// and trusted by the load generator; the directory goes when the command
// ends.

// setupTLS prepares f.tlsClient, and, when own (the command starts its
// servers), f.tlsServer. The returned function removes what it made.
func (f *loadFlags) setupTLS(own bool) (func(), error) {
	f.tlsClient, f.tlsServer = nil, nil
	cfg, err := f.tls.config()
	if err != nil || cfg == nil {
		return func() {}, err
	}
	f.tlsClient = cfg
	if !own {
		return func() {}, nil
	}
	dir, err := os.MkdirTemp("", "switchboard-tls-")
	if err != nil {
		return func() {}, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	certPEM, keyPEM, err := throwawayCert()
	if err != nil {
		cleanup()
		return func() {}, err
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		cleanup()
		return func() {}, err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		cleanup()
		return func() {}, err
	}
	f.tlsServer = []string{"--tls-cert", certFile, "--tls-key", keyFile}
	if !cfg.InsecureSkipVerify && cfg.RootCAs == nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(certPEM)
		cfg.RootCAs = pool
	}
	return cleanup, nil
}

// throwawayCert makes a self-signed ECDSA P-256 certificate for 127.0.0.1,
// ::1 and localhost, valid for a day.
func throwawayCert() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "switchboard bench"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// describeHandshakes is bench's line about the TLS handshakes of a run.
func describeHandshakes(r *loadgen.HandshakeStats) string {
	s := fmt.Sprintf("%d, %s/s while connecting; latency p50 %s, p99 %s, max %s",
		r.Count, fmtCount(r.PerSec), fmtDur(r.Latency.P50), fmtDur(r.Latency.P99), fmtDur(r.Latency.Max))
	if r.ServerCPUPerHandshake > 0 {
		s += fmt.Sprintf("; server CPU %.0f µs each (%s/s per core)", r.ServerCPUPerHandshake, fmtCount(1e6/r.ServerCPUPerHandshake))
	}
	return s
}
