package metrics_test

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"switchboard"
	"switchboard/metrics"
)

// An application registers the collector with its own registry, beside its
// other metrics, and serves that registry however it likes (promhttp).
func ExampleNew() {
	srv, err := switchboard.NewServer(switchboard.BaseHandler{}, switchboard.WithModel(switchboard.ModelGoroutine))
	if err != nil {
		panic(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.New(srv, metrics.Options{
		ConstLabels: prometheus.Labels{"service": "echo"},
	}))
	n, err := testutil.GatherAndCount(reg, "switchboard_connections_closed_total")
	fmt.Println(n, err)
	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP switchboard_connections_active Connections open now.
# TYPE switchboard_connections_active gauge
switchboard_connections_active{model="goroutine",service="echo"} 0
`), "switchboard_connections_active")
	fmt.Println(err)
	// Output:
	// 10 <nil>
	// <nil>
}
