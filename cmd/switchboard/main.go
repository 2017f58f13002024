// Command switchboard serves, sends to, load-tests and compares TCP
// services built on the switchboard library.
//
//	switchboard serve     run a service (echo, discard, hello, chat) on any I/O model
//	switchboard send      send framed messages and print the replies, like netcat
//	switchboard bench     load-test a server and verify every echoed byte
//	switchboard compare   benchmark every model side by side
//
// Each subcommand lives in its own file and adds itself to the root command
// from an init function.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

var rootCmd = &cobra.Command{
	Use:           "switchboard",
	Short:         "TCP services: serve, send, bench and compare I/O models",
	SilenceUsage:  true,
	SilenceErrors: true,
}

// usageError marks a bad command line: exit status 2, as netcat and the
// other classic tools do.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef builds a usageError.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitError carries an exit status chosen by a subcommand, after it has
// already said what went wrong.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func init() {
	rootCmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
}

// wrapArgs makes cobra's positional-argument checks usage errors too.
func wrapArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	rootCmd.SetArgs(args)
	err := rootCmd.Execute()
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// Library errors already name themselves; say it once.
	msg := err.Error()
	if !strings.HasPrefix(msg, "switchboard: ") {
		msg = "switchboard: " + msg
	}
	fmt.Fprintln(os.Stderr, msg)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return 2
	}
	return 1
}

// isCobraUsage recognises the errors cobra returns itself for an unknown
// subcommand, before any of our hooks run.
func isCobraUsage(err error) bool {
	return strings.HasPrefix(err.Error(), "unknown command ")
}
