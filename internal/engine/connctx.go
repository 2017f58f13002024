package engine

import (
	"context"
	"sync"
)

// ConnContext is the lazily made context.Context of one connection, shared
// by every engine: the pointer to it stays nil until a handler asks, so a
// connection that never does costs one word.
type ConnContext struct {
	ctx    context.Context
	cancel context.CancelFunc
}

var (
	doneOnce sync.Once
	doneCtx  context.Context
)

// closedContext is an already cancelled context, for a connection asked
// for its context after it closed.
func closedContext() context.Context {
	doneOnce.Do(func() {
		var cancel context.CancelFunc
		doneCtx, cancel = context.WithCancel(context.Background())
		cancel()
	})
	return doneCtx
}

// GetContext returns *p's context, making it on the first call. closed
// says whether the connection has closed already. The caller serialises
// calls for one connection (its mutex).
func GetContext(p **ConnContext, closed bool) context.Context {
	if *p != nil {
		return (*p).ctx
	}
	if closed {
		return closedContext()
	}
	ctx, cancel := context.WithCancel(context.Background())
	*p = &ConnContext{ctx, cancel}
	return ctx
}

// CancelContext cancels *p's context if one was made; the connection has
// closed. Under the same serialisation as GetContext.
func CancelContext(p *ConnContext) {
	if p != nil {
		p.cancel()
	}
}
