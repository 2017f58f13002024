package testcert

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestChains(t *testing.T) {
	for _, k := range []KeyType{ECDSAP256, RSA2048} {
		t.Run(k.String(), func(t *testing.T) {
			s := NewWith(t, k)
			for _, name := range []string{"127.0.0.1", "::1", "localhost"} {
				if _, err := s.Server.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: s.Pool}); err != nil {
					t.Errorf("server certificate for %s: %v", name, err)
				}
			}
			if _, err := s.Server.Leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: s.Pool}); err == nil {
				t.Error("server certificate valid for example.com")
			}
			if _, err := s.Client.Leaf.Verify(x509.VerifyOptions{Roots: s.Pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("client certificate: %v", err)
			}
			if _, err := s.Client.Leaf.Verify(x509.VerifyOptions{Roots: New(t).Pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
				t.Error("client certificate verified by another CA")
			}
			if got := s.MutualServerConfig(); got.ClientAuth != tls.RequireAndVerifyClientCert || got.ClientCAs != s.Pool {
				t.Error("MutualServerConfig does not require client certificates")
			}
		})
	}
}

func TestWriteFiles(t *testing.T) {
	s := New(t)
	f := s.WriteFiles(t)
	for _, pair := range [][2]string{{f.ServerCert, f.ServerKey}, {f.ClientCert, f.ClientKey}} {
		if _, err := tls.LoadX509KeyPair(pair[0], pair[1]); err != nil {
			t.Errorf("LoadX509KeyPair(%s): %v", pair[0], err)
		}
		st, err := os.Stat(pair[1])
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("key %s: mode %v, %v", pair[1], st.Mode(), err)
		}
	}
	ca, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(ca) {
		t.Error("CA file holds no certificate")
	}
}
