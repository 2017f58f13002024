// Package metrics exports a switchboard server's counters to Prometheus.
//
// New returns a prometheus.Collector that an application registers with
// its own prometheus.Registerer, beside its other metrics. Values are read
// from Server.Stats when Prometheus scrapes, so the collector adds nothing
// to the path a message takes: the engines keep their counters whether or
// not anything collects them.
//
// This package is the only part of switchboard that depends on
// prometheus/client_golang; the server library itself does not.
package metrics

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"

	"switchboard"
)

// Source is what the collector reads; *switchboard.Server is one.
type Source interface {
	Stats() switchboard.Stats
	Model() string
}

// Options adjust the collector. The zero value is the CLI's choice.
type Options struct {
	// Namespace prefixes every metric name (default "switchboard").
	Namespace string
	// ConstLabels are added to every metric, for example to tell two
	// servers in one process apart. The collector adds "model" itself.
	ConstLabels prometheus.Labels
	// Version is reported by build_info (default: the main module's
	// version from the binary's build information).
	Version string
}

// Collector is a prometheus.Collector over one server's Stats.
type Collector struct {
	src     Source
	version string

	accepted, rejected, active       *prometheus.Desc
	acceptErrors, closed             *prometheus.Desc
	bytesIn, bytesOut, msgsIn, msgsO *prometheus.Desc
	buildInfo                        *prometheus.Desc
}

// New returns a collector for src.
func New(src Source, opts Options) *Collector {
	ns := opts.Namespace
	if ns == "" {
		ns = "switchboard"
	}
	labels := prometheus.Labels{"model": src.Model()}
	for k, v := range opts.ConstLabels {
		labels[k] = v
	}
	version := opts.Version
	if version == "" {
		version = buildVersion()
	}
	d := func(name, help string, variable ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, variable, labels)
	}
	return &Collector{
		src:          src,
		version:      version,
		accepted:     d("connections_accepted_total", "Connections accepted and handed to the handler."),
		rejected:     d("connections_rejected_total", "Connections closed at accept by a limit (--max-conns, or shed when out of descriptors)."),
		active:       d("connections_active", "Connections open now."),
		acceptErrors: d("accept_errors_total", "Failed accepts, by errno: emfile, enfile, enomem (ENOMEM and ENOBUFS), other.", "kind"),
		closed:       d("connections_closed_total", "Closed connections, by reason.", "reason"),
		bytesIn:      d("received_bytes_total", "Bytes read from connections."),
		bytesOut:     d("sent_bytes_total", "Bytes written to connections."),
		msgsIn:       d("messages_received_total", "Frames decoded and delivered to the handler."),
		msgsO:        d("messages_sent_total", "Frames the handler queued for sending."),
		buildInfo:    d("build_info", "Always 1; the labels say what is running.", "version", "go_version"),
	}
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.accepted, c.rejected, c.active, c.acceptErrors, c.closed,
		c.bytesIn, c.bytesOut, c.msgsIn, c.msgsO, c.buildInfo,
	} {
		ch <- d
	}
}

// Collect reads one Stats snapshot and sends every metric from it, so the
// values of one scrape agree with each other as far as the counters do.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.accepted, st.Accepted)
	counter(c.rejected, st.Rejected)
	ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(st.Active))
	k := st.AcceptErrorKinds
	counter(c.acceptErrors, k.EMFILE, "emfile")
	counter(c.acceptErrors, k.ENFILE, "enfile")
	counter(c.acceptErrors, k.ENOMEM, "enomem")
	counter(c.acceptErrors, k.Other, "other")
	for _, r := range closeReasons(st.Closes) {
		counter(c.closed, r.n, r.reason)
	}
	counter(c.bytesIn, st.BytesIn)
	counter(c.bytesOut, st.BytesOut)
	counter(c.msgsIn, st.MessagesIn)
	counter(c.msgsO, st.MessagesOut)
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1, c.version, runtime.Version())
}

type reasonCount struct {
	reason string
	n      int64
}

// closeReasons lists every reason, zero or not, so a rate() over any of
// them exists from the first scrape.
func closeReasons(cc switchboard.CloseCounts) []reasonCount {
	return []reasonCount{
		{"peer", cc.Peer}, {"error", cc.Error}, {"idle", cc.Idle},
		{"write_timeout", cc.WriteTimeout}, {"frame_timeout", cc.FrameTimeout},
		{"slow_consumer", cc.SlowConsumer}, {"protocol_error", cc.ProtocolError},
		{"panic", cc.Panic}, {"shutdown", cc.Shutdown}, {"handshake", cc.Handshake},
	}
}

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}
