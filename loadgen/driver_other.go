//go:build !linux

package loadgen

const defaultDriver = DriverGoroutine

func newDriver(c *config) (driver, error) { return newNetDriver(c) }
