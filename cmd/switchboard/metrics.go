package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"switchboard"
)

// metricsHandler serves the server's counters and the Go runtime's. The
// values are read from Server.Stats at scrape time, so serving adds nothing
// to the hot path.
func metricsHandler(srv *switchboard.Server) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	labels := prometheus.Labels{"model": srv.Model()}
	counter := func(name, help string, get func(switchboard.Stats) int64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "switchboard", Name: name, Help: help, ConstLabels: labels,
		}, func() float64 { return float64(get(srv.Stats())) }))
	}
	counter("connections_accepted_total", "Connections accepted.", func(s switchboard.Stats) int64 { return s.Accepted })
	counter("connections_rejected_total", "Connections closed at accept by a limit.", func(s switchboard.Stats) int64 { return s.Rejected })
	counter("accept_errors_total", "Temporary accept failures (EMFILE, ENFILE, ...).", func(s switchboard.Stats) int64 { return s.AcceptErrors })
	counter("protocol_errors_total", "Connections closed for a framing or PROXY header error.", func(s switchboard.Stats) int64 { return s.ProtocolErrors })
	counter("timeouts_total", "Connections closed by the idle or write timeout.", func(s switchboard.Stats) int64 { return s.Timeouts })
	counter("slow_consumers_total", "Connections closed for not reading their output.", func(s switchboard.Stats) int64 { return s.SlowConsumers })
	counter("received_bytes_total", "Bytes read from connections.", func(s switchboard.Stats) int64 { return s.BytesIn })
	counter("sent_bytes_total", "Bytes written to connections.", func(s switchboard.Stats) int64 { return s.BytesOut })
	counter("tls_handshakes_total", "TLS handshakes that succeeded.", func(s switchboard.Stats) int64 { return s.Handshakes })
	counter("tls_handshake_failures_total", "Connections closed because their TLS handshake failed.", func(s switchboard.Stats) int64 { return s.HandshakeFailures })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "switchboard", Name: "connections_active", Help: "Connections open now.", ConstLabels: labels,
	}, func() float64 { return float64(srv.Stats().Active) }))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}
