package engine

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"switchboard/framing"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestCloseReasonOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want CloseReason
	}{
		{nil, ClosePeer},
		{syscall.ECONNRESET, CloseError},
		{ErrIdleTimeout, CloseIdle},
		{ErrHalfCloseTimeout, CloseIdle},
		{ErrWriteTimeout, CloseWriteTimeout},
		{ErrSlowConsumer, CloseSlowConsumer},
		{fmt.Errorf("decode: %w", framing.ErrFrameTooLarge), CloseProtocolError},
		{fmt.Errorf("%w: no header", ErrProxyHeader), CloseProtocolError},
		{ErrShutdown, CloseShutdown},
	} {
		if got := CloseReasonOf(c.err); got != c.want {
			t.Errorf("CloseReasonOf(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	for r := range NumCloseReasons {
		if r.String() == "unknown" || r.String() == "" {
			t.Errorf("reason %d has no name", r)
		}
	}
}

func TestCountClose(t *testing.T) {
	var s Stats
	for _, err := range []error{nil, ErrIdleTimeout, ErrWriteTimeout, ErrSlowConsumer, framing.ErrMalformed, errors.New("x")} {
		s.CountClose(err)
	}
	if s.Timeouts.Load() != 2 || s.SlowConsumers.Load() != 1 || s.ProtocolErrors.Load() != 1 {
		t.Errorf("legacy counters: %d %d %d", s.Timeouts.Load(), s.SlowConsumers.Load(), s.ProtocolErrors.Load())
	}
	var sum int64
	for i := range s.Closes {
		sum += s.Closes[i].Load()
	}
	if sum != 6 || s.Closes[ClosePeer].Load() != 1 || s.Closes[CloseError].Load() != 1 {
		t.Errorf("closes by reason: sum %d", sum)
	}
}

func TestAcceptErrorKindOf(t *testing.T) {
	wrapped := &os.SyscallError{Syscall: "accept", Err: syscall.EMFILE}
	for _, c := range []struct {
		err  error
		want AcceptErrorKind
	}{
		{wrapped, AcceptEMFILE},
		{syscall.ENFILE, AcceptENFILE},
		{syscall.ENOMEM, AcceptENOMEM},
		{syscall.ENOBUFS, AcceptENOMEM},
		{syscall.EINVAL, AcceptOther},
	} {
		if got := AcceptErrorKindOf(c.err); got != c.want {
			t.Errorf("AcceptErrorKindOf(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	var s Stats
	s.CountAcceptError(wrapped)
	s.CountAcceptError(syscall.ECONNREFUSED)
	if s.AcceptErrors.Load() != 2 || s.AcceptErrorKinds[AcceptEMFILE].Load() != 1 || s.AcceptErrorKinds[AcceptOther].Load() != 1 {
		t.Error("CountAcceptError: wrong counters")
	}
}
