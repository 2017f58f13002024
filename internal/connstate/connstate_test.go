package connstate

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestTransitions walks every path in the package table.
func TestTransitions(t *testing.T) {
	s := Open
	s.CloseWrite()
	if s != ShuttingWrite || !s.Reading() {
		t.Fatalf("CloseWrite on Open: %v", s)
	}
	if f := s.Flushed(); f != SendFIN || s != WriteShut {
		t.Fatalf("flushed while shutting write: %v, %v", f, s)
	}
	if f := s.Flushed(); f != Stay || s != WriteShut {
		t.Fatalf("flushed again: %v, %v", f, s)
	}
	s.PeerEOF(true)
	if s != Finishing || s.Reading() || !s.AtEOF() {
		t.Fatalf("peer FIN: %v", s)
	}
	s.CloseWrite()
	if s != Finishing {
		t.Fatalf("CloseWrite while finishing moved to %v", s)
	}
	if f := s.Flushed(); f != CloseNow {
		t.Fatalf("flushed while finishing: %v", f)
	}
	for _, c := range []struct {
		from, to State
		finSent  bool
	}{
		{Header, ShuttingWrite, false}, {Open, ShuttingWrite, false},
		{ShuttingWrite, ShuttingWrite, false}, {WriteShut, WriteShut, true},
		{Finishing, Finishing, false}, {PeerShut, Finishing, false},
	} {
		s := c.from
		if fin := s.Drain(); s != c.to || fin != c.finSent {
			t.Errorf("Drain from %v: %v, finSent %v; want %v, %v", c.from, s, fin, c.to, c.finSent)
		}
	}
	// A HalfCloser's connection stays after the peer's FIN, writable,
	// not reading, until CloseWrite.
	s = Open
	s.PeerEOF(true)
	if s != PeerShut || s.Reading() || !s.AtEOF() {
		t.Fatalf("peer FIN kept: %v", s)
	}
	if f := s.Flushed(); f != Stay || s != PeerShut {
		t.Fatalf("flushed in peer-shut: %v, %v", f, s)
	}
	s.CloseWrite()
	if s != Finishing {
		t.Fatalf("CloseWrite in peer-shut: %v", s)
	}
	s = Open
	s.PeerEOF(false)
	if s != Finishing {
		t.Fatalf("peer FIN, not kept: %v", s)
	}
	s = ShuttingWrite
	s.PeerEOF(true)
	if s != Finishing {
		t.Fatalf("peer FIN after CloseWrite, kept: %v", s)
	}
	if Open.AtEOF() || Closed.Reading() || State(99).String() != "invalid" || Header.String() != "header" {
		t.Fatal("queries")
	}
}
