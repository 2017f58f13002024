package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"switchboard/client"
	"switchboard/framing"
	"switchboard/internal/netaddr"
)

type sendFlags struct {
	connect     string
	framing     string
	maxFrame    sizeFlag
	timeout     time.Duration
	halfClose   bool
	stream      bool
	quiet       time.Duration
	proxyHeader string
	proxySource string
}

func init() {
	f := sendFlags{maxFrame: sizeFlag(framing.DefaultMaxFrame)}
	cmd := &cobra.Command{
		Use:   "send [flags] [MESSAGE...]",
		Short: "Send framed messages and print the replies, like netcat",
		Long: `Send each MESSAGE, framed, to a server and print each reply on a line.

Messages go one at a time: send one, wait for its reply (up to --timeout),
print it, send the next. Without MESSAGE arguments the messages come from
standard input: with --framing line each line of input is a message; with
raw framing all of the input is one message (nothing when it is empty);
with any other framing all of the input is exactly one message, possibly
empty (with eof framing an empty message is just the half-close). A
message over --max-frame is refused before it is sent; only --framing raw
--half-close streams input of any size.

Each reply is printed followed by a newline. With raw framing, which has no
message boundaries, a reply is everything the server sends until it is
quiet for --quiet (200ms) or closes. A raw (or eof-framed) reply that
already ends in a newline gets no second one.

With --stream, the default when stdin is a terminal and no MESSAGE is
given, send works like netcat: input goes out as it comes (raw: bytes as
they are read; any other framing: each line one message), and whatever
the server sends is printed as it arrives, without waiting for replies.
It ends when the server closes, or when input ends (Ctrl-D), the write
half is shut down and the server closes (or --timeout passes). --stream=false
turns it off on a terminal. Two of them chat through "serve --service chat":

  switchboard send --connect 127.0.0.1:9000 --framing line --stream

--proxy-header v1|v2 opens the connection with a PROXY header, announcing
the connection's own address or --proxy-source's, so a server that
expects one from its balancer can be tried directly:

  switchboard send --connect 127.0.0.1:8888 --proxy-header v2 --proxy-source 203.0.113.7:4000 hello

With --half-close it sends everything, shuts down its write half, and
prints everything the server sends until it closes: raw bytes as they come
with raw and eof framing, one reply per line with the others. This is how
to talk to a service that does not answer each message (discard), or that
answers once at the end. --framing eof always ends its single message
that way, then prints the reply on a line.

Exit status: 0 when every message got its reply (or, with --half-close,
when the server closed cleanly); 1 when the connection is refused or
fails, a reply times out, the server closes early or breaks the framing, or
the input cannot be sent (one line on stderr says which); 2 for a bad
command line.

Examples:
  switchboard send hello world
  switchboard send --framing line < requests.txt
  printf 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' | switchboard send --half-close
  switchboard send --connect unix:/tmp/sb.sock --framing len:4 ping`,
		Args: wrapArgs(cobra.ArbitraryArgs),
		RunE: func(cmd *cobra.Command, args []string) error { return runSend(cmd, &f, args) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.connect, "connect", "127.0.0.1:8888", "server address: host:port, [::1]:port or unix:/path")
	fl.StringVar(&f.framing, "framing", "raw", "message framing: raw, line, delim:HEX, fixed:N, len:N[be|le], digits:N, typed:T=N,..., eof, resp")
	fl.Var(&f.maxFrame, "max-frame", "largest message sent or reply accepted (KiB, MiB, GiB)")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Second, "limit for connecting and for each send and reply (0: none)")
	fl.BoolVar(&f.halfClose, "half-close", false, "send all, shut down the write half, print everything until the server closes")
	fl.BoolVar(&f.stream, "stream", false, "stream both ways like netcat: send input as it comes, print replies as they arrive (default when stdin is a terminal)")
	fl.DurationVar(&f.quiet, "quiet", 200*time.Millisecond, "raw framing: a reply ends when the server sends nothing for this long (or closes)")
	fl.StringVar(&f.proxyHeader, "proxy-header", "", "open the connection with a PROXY header: v1 or v2")
	fl.StringVar(&f.proxySource, "proxy-source", "", "client address the PROXY header announces, ip:port (default: the connection's own)")
	rootCmd.AddCommand(cmd)
}

// sendSession is one run of the send command.
type sendSession struct {
	f      *sendFlags
	codec  framing.Codec
	rawish bool // raw or eof framing: replies are byte streams, not records
	out    *bufio.Writer
	errOut io.Writer
	rbuf   []byte // raw replies
}

func runSend(cmd *cobra.Command, f *sendFlags, args []string) error {
	if _, _, err := netaddr.Split(f.connect); err != nil {
		return usagef("--connect: %v", err)
	}
	if f.maxFrame <= 0 {
		return usagef("--max-frame must be positive")
	}
	if f.timeout < 0 {
		return usagef("--timeout must not be negative")
	}
	codec, err := framing.Parse(f.framing, f.maxFrame.Int())
	if err != nil {
		return usagef("--framing: %v", err)
	}
	if f.quiet <= 0 {
		return usagef("--quiet must be positive")
	}
	proxySrc, err := parseProxyFlags(f.proxyHeader, f.proxySource)
	if err != nil {
		return err
	}
	stream := f.stream
	if !cmd.Flags().Changed("stream") {
		stream = len(args) == 0 && !f.halfClose && codec.String() != "eof" && isTerminal(cmd.InOrStdin())
	}
	if stream && (f.halfClose || len(args) > 0 || codec.String() == "eof") {
		return usagef("--stream takes its messages from stdin, and excludes --half-close and --framing eof")
	}
	s := &sendSession{
		f:      f,
		codec:  codec,
		rawish: codec.String() == "raw" || codec.String() == "eof",
		out:    bufio.NewWriter(cmd.OutOrStdout()),
		errOut: cmd.ErrOrStderr(),
	}
	isEOF := codec.String() == "eof"
	if isEOF && len(args) > 1 {
		return usagef("--framing eof carries one message per connection; got %d", len(args))
	}
	// Arguments are checked before connecting: one the framing cannot
	// carry is a bad command line, and nothing is sent.
	var scratch []byte
	for i, a := range args {
		if _, err := codec.Append(scratch[:0], []byte(a)); err != nil {
			return usagef("message %d: %v", i+1, err)
		}
	}
	var src msgSource
	switch {
	case len(args) > 0:
		src = &argSource{args: args}
	case codec.String() == "line":
		src = newLineSource(cmd.InOrStdin(), codec.MaxFrame())
	case codec.String() == "raw" && f.halfClose:
		src = &chunkSource{r: cmd.InOrStdin()}
	default:
		src = &wholeSource{r: cmd.InOrStdin(), max: codec.MaxFrame(), skipEmpty: codec.String() == "raw"}
	}

	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	c, err := client.Dial(ctx, f.connect, client.WithCodec(codec), client.WithTimeout(f.timeout))
	if err != nil {
		return s.fail(err)
	}
	defer c.Close()
	if f.proxyHeader != "" {
		if err := sendProxyHeader(c, f.proxyHeader, proxySrc, f.timeout); err != nil {
			return s.fail(err)
		}
	}

	switch {
	case stream:
		err = s.stream(c, cmd.InOrStdin())
	case f.halfClose:
		err = s.halfClose(c, src)
	case isEOF:
		err = s.eofExchange(c, src)
	default:
		err = s.lockstep(c, src)
	}
	if ferr := s.out.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("stdout: %w", ferr)
	}
	if err != nil {
		return s.fail(err)
	}
	return nil
}

// fail prints the one line that says what went wrong and exits 1.
func (s *sendSession) fail(err error) error {
	s.out.Flush()
	fmt.Fprintf(s.errOut, "switchboard: %v\n", err)
	return exitError{1}
}

// lockstep sends each message and prints its reply before the next.
func (s *sendSession) lockstep(c *client.Conn, src msgSource) error {
	for i := 1; ; i++ {
		msg, err := src.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := c.Send(msg); err != nil {
			return messageErr(i, err)
		}
		if s.codec.String() == "raw" {
			if err := s.rawReply(c, i); err != nil {
				return err
			}
			continue
		}
		reply, err := c.Receive(context.Background())
		if err == io.EOF {
			return fmt.Errorf("receive %s: connection closed by the server before replying to message %d", s.f.connect, i)
		}
		if err != nil {
			return err
		}
		s.printReply(reply)
		if err := s.out.Flush(); err != nil {
			return fmt.Errorf("stdout: %w", err)
		}
	}
}

// eofExchange sends the one message of eof framing, ends it by shutting
// down the write half, and prints the reply, which ends when the server
// closes.
func (s *sendSession) eofExchange(c *client.Conn, src msgSource) error {
	msg, err := src.next()
	if err != nil && err != io.EOF {
		return err
	}
	if err := c.Send(msg); err != nil {
		return err
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	reply, err := c.Receive(context.Background())
	if err != nil && err != io.EOF { // io.EOF: an empty reply
		return err
	}
	s.printReply(reply)
	return nil
}

// halfClose sends everything, shuts down the write half and prints what
// comes back until EOF. Replies are read while sending, so a server that
// answers as it reads cannot fill both directions' buffers and stall.
func (s *sendSession) halfClose(c *client.Conn, src msgSource) error {
	recvErr := make(chan error, 1)
	go func() { recvErr <- s.receiveAll(c) }()
	sendErr := func() error {
		for i := 1; ; i++ {
			msg, err := src.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			if err := c.Send(msg); err != nil {
				return messageErr(i, err)
			}
		}
		return c.CloseWrite()
	}()
	if sendErr != nil {
		// Stop the receiver, but keep its error if the server broke the
		// connection first: that is the real cause.
		select {
		case err := <-recvErr:
			if err != nil {
				return err
			}
		case <-time.After(50 * time.Millisecond):
			c.Close()
			<-recvErr
		}
		return sendErr
	}
	return <-recvErr
}

func (s *sendSession) receiveAll(c *client.Conn) error {
	if s.rawish {
		_, err := c.WriteTo(s.out)
		return err
	}
	for {
		reply, err := c.Receive(context.Background())
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		s.printReply(reply)
	}
}

// printReply writes a reply and the newline that ends it.
func (s *sendSession) printReply(reply []byte) {
	s.out.Write(reply)
	if s.rawish && len(reply) > 0 && reply[len(reply)-1] == '\n' {
		return
	}
	s.out.WriteByte('\n')
}

// messageErr names the message an error is about, unless the error is the
// connection's own (it names the address already).
func messageErr(i int, err error) error {
	var ce *client.Error
	if errors.As(err, &ce) {
		return err
	}
	return fmt.Errorf("message %d: %w", i, err)
}

// msgSource yields the messages to send; io.EOF ends them.
type msgSource interface {
	next() ([]byte, error)
}

type argSource struct{ args []string }

func (a *argSource) next() ([]byte, error) {
	if len(a.args) == 0 {
		return nil, io.EOF
	}
	m := a.args[0]
	a.args = a.args[1:]
	return []byte(m), nil
}

// lineSource yields the lines of r without their "\n" or "\r\n"; a last
// line without a newline counts. A line longer than max is an error, found
// without buffering more than max+2 bytes of it.
type lineSource struct {
	r    *bufio.Reader
	max  int
	line []byte
	n    int // lines read
}

func newLineSource(r io.Reader, max int) *lineSource {
	return &lineSource{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

func (l *lineSource) next() ([]byte, error) {
	l.line = l.line[:0]
	l.n++
	for {
		chunk, err := l.r.ReadSlice('\n')
		l.line = append(l.line, chunk...)
		if len(l.line) > l.max+2 {
			return nil, fmt.Errorf("stdin line %d: longer than --max-frame (%s)", l.n, formatSize(int64(l.max)))
		}
		switch {
		case err == nil:
			line := bytes.TrimSuffix(l.line[:len(l.line)-1], []byte("\r"))
			if len(line) > l.max {
				return nil, fmt.Errorf("stdin line %d: longer than --max-frame (%s)", l.n, formatSize(int64(l.max)))
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			if len(l.line) == 0 {
				return nil, io.EOF
			}
			return l.line, nil // the last line had no newline
		default:
			return nil, fmt.Errorf("stdin: %w", err)
		}
	}
}

// wholeSource yields all of r as one message, refusing more than max
// bytes. With skipEmpty an empty input yields no message at all.
type wholeSource struct {
	r         io.Reader
	max       int
	skipEmpty bool
	done      bool
}

func (w *wholeSource) next() ([]byte, error) {
	if w.done {
		return nil, io.EOF
	}
	w.done = true
	b, err := io.ReadAll(io.LimitReader(w.r, int64(w.max)+1))
	if err != nil {
		return nil, fmt.Errorf("stdin: %w", err)
	}
	if len(b) > w.max {
		return nil, fmt.Errorf("stdin holds more than --max-frame (%s)", formatSize(int64(w.max)))
	}
	if len(b) == 0 && w.skipEmpty {
		return nil, io.EOF
	}
	return b, nil
}

// chunkSource streams r as it comes, for raw framing, where message
// boundaries do not exist on the wire anyway.
type chunkSource struct {
	r   io.Reader
	buf []byte
}

func (c *chunkSource) next() ([]byte, error) {
	if c.buf == nil {
		c.buf = make([]byte, 64<<10)
	}
	for range 100 {
		n, err := c.r.Read(c.buf)
		if n > 0 {
			return c.buf[:n], nil
		}
		if err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			return nil, fmt.Errorf("stdin: %w", err)
		}
	}
	return nil, fmt.Errorf("stdin: %w", io.ErrNoProgress)
}
