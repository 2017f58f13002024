package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/spf13/pflag"
)

// TLS flags. A missing half of a pair is a usage error (exit 2); a file
// that cannot be read or parsed is a runtime error (exit 1), one line
// either way.

// serverTLSFlags are serve's.
type serverTLSFlags struct {
	cert, key, clientCA string
}

func (f *serverTLSFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.cert, "tls-cert", "", "serve TLS with this PEM certificate (chain) file; needs --tls-key")
	fl.StringVar(&f.key, "tls-key", "", "PEM private key of --tls-cert")
	fl.StringVar(&f.clientCA, "tls-client-ca", "", "require client certificates signed by a CA in this PEM file (mutual TLS)")
}

// config returns the server's TLS configuration, nil when TLS is off.
func (f *serverTLSFlags) config() (*tls.Config, error) {
	switch {
	case f.cert == "" && f.key == "":
		if f.clientCA != "" {
			return nil, usagef("--tls-client-ca needs --tls-cert and --tls-key")
		}
		return nil, nil
	case f.cert == "":
		return nil, usagef("--tls-key needs --tls-cert")
	case f.key == "":
		return nil, usagef("--tls-cert needs --tls-key")
	}
	cert, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f.clientCA != "" {
		pool, err := loadPool("--tls-client-ca", f.clientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// clientTLSFlags are send's and bench's. Any of them turns TLS on.
type clientTLSFlags struct {
	on         bool
	ca         string
	serverName string
	insecure   bool
}

func (f *clientTLSFlags) register(fl *pflag.FlagSet) {
	fl.BoolVar(&f.on, "tls", false, "speak TLS (implied by the other --tls-* flags and --insecure)")
	fl.StringVar(&f.ca, "tls-ca", "", "verify the server against the CAs in this PEM file instead of the system's")
	fl.StringVar(&f.serverName, "tls-server-name", "", "name to verify the server's certificate against and send as SNI (default: the host of the address)")
	fl.BoolVar(&f.insecure, "insecure", false, "TLS without verifying the server's certificate (testing only)")
}

// config returns the client TLS configuration, nil when TLS is off.
func (f *clientTLSFlags) config() (*tls.Config, error) {
	if !f.on && f.ca == "" && f.serverName == "" && !f.insecure {
		return nil, nil
	}
	if f.insecure && f.ca != "" {
		return nil, usagef("--insecure skips verification; --tls-ca has nothing to do with it")
	}
	cfg := &tls.Config{ServerName: f.serverName, InsecureSkipVerify: f.insecure}
	if f.ca != "" {
		pool, err := loadPool("--tls-ca", f.ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// loadPool reads a PEM file of CA certificates.
func loadPool(flag, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", flag, path)
	}
	return pool, nil
}
