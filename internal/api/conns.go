package api

import (
	"context"
	"net"
	"sync"
)

// UnauthenticatedLimit caps the connections of a listener that have not yet
// completed an authenticated request. Once max such connections are open,
// Accept waits (new connections queue in the kernel's backlog) until one of
// them authenticates or closes; connections that have authenticated do not
// count. Serve it with ConnContext as the http.Server's ConnContext so
// that the front can tell a connection it authenticated.
type UnauthenticatedLimit struct {
	net.Listener
	slots chan struct{}
	done  chan struct{}
	once  sync.Once
}

// LimitUnauthenticated wraps ln; max <= 0 means no limit.
func LimitUnauthenticated(ln net.Listener, max int) net.Listener {
	if max <= 0 {
		return ln
	}
	return &UnauthenticatedLimit{Listener: ln, slots: make(chan struct{}, max), done: make(chan struct{})}
}

// Accept waits for a free slot, then for a connection.
func (l *UnauthenticatedLimit) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &trackedConn{Conn: c, free: func() { <-l.slots }}, nil
}

// Close stops Accept, also one waiting for a slot.
func (l *UnauthenticatedLimit) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// trackedConn holds a slot of its listener until it authenticates or closes.
type trackedConn struct {
	net.Conn
	once sync.Once
	free func()
}

func (c *trackedConn) release() { c.once.Do(c.free) }

func (c *trackedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

type connKey struct{}

// ConnContext is the http.Server ConnContext that lets the front mark the
// connection of an authenticated request.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*trackedConn); ok {
		return context.WithValue(ctx, connKey{}, tc)
	}
	return ctx
}

// markAuthenticated frees the request's connection from the unauthenticated
// limit.
func markAuthenticated(ctx context.Context) {
	if tc, ok := ctx.Value(connKey{}).(*trackedConn); ok {
		tc.release()
	}
}
