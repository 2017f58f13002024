package main

import (
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"switchboard"
	"switchboard/metrics"
)

// metricsHandler serves the server's counters (the library's collector,
// the same one an application would register) and the Go runtime's and
// process's. With withPprof it also serves /debug/pprof/ on the same
// address; the handlers are mounted on our own mux, never on
// http.DefaultServeMux, so nothing else in the process can expose them by
// accident.
func metricsHandler(srv *switchboard.Server, withPprof bool) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		metrics.New(srv, metrics.Options{}),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}
