package caddymodule

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// sidecarSockets holds the sidecar's bound sockets across config
// generations. A reload starts the new config before it stops the old one:
// the new app takes a reference to the socket the old one serves, the old
// one stops taking connections from it and drops its reference, and the
// socket itself is never closed, so no connection waiting in its backlog is
// refused. (Caddy's pool alone hands a TCP address to the new config as a
// second SO_REUSEPORT socket; closing the old one would reset the
// connections queued on it.) The socket is bound by Caddy's
// NetworkAddress.Listen, which also unlinks a stale Unix socket file and
// sets its mode.
var sidecarSockets = caddy.NewUsagePool()

// pooledSocket is one bound socket; one goroutine accepts on it and hands
// each connection to whichever server asks next.
type pooledSocket struct {
	ln    net.Listener
	conns chan net.Conn
	done  chan struct{}
}

func (p *pooledSocket) accept() {
	var backoff time.Duration
	for {
		c, err := p.ln.Accept()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second) // EMFILE and the like
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		select {
		case p.conns <- c:
		case <-p.done:
			_ = c.Close()
			return
		}
	}
}

// Destruct closes the socket once no config uses it (Caddy's listener
// removes a Unix socket's file).
func (p *pooledSocket) Destruct() error {
	close(p.done)
	return p.ln.Close()
}

// acquireListener returns a listener for addr that one server may Serve
// and Close, and the pool key to release it with.
func acquireListener(ctx caddy.Context, addr string) (net.Listener, string, error) {
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil {
		return nil, "", err
	}
	key := na.String() // a Unix socket's mode included: a new mode is applied by a new bind
	v, _, err := sidecarSockets.LoadOrNew(key, func() (caddy.Destructor, error) {
		l, err := na.Listen(ctx, 0, net.ListenConfig{})
		if err != nil {
			return nil, err
		}
		ln, ok := l.(net.Listener)
		if !ok {
			if c, ok := l.(interface{ Close() error }); ok {
				_ = c.Close()
			}
			return nil, errors.New("not a stream listener")
		}
		p := &pooledSocket{ln: ln, conns: make(chan net.Conn), done: make(chan struct{})}
		go p.accept()
		return p, nil
	})
	if err != nil {
		return nil, "", err
	}
	return &serverListener{socket: v.(*pooledSocket), closed: make(chan struct{})}, key, nil
}

// releaseListener drops one reference to the socket under key.
func releaseListener(key string) { _, _ = sidecarSockets.Delete(key) }

// serverListener is one server's view of a pooled socket: closing it stops
// that server taking connections, not the socket.
type serverListener struct {
	socket *pooledSocket
	once   sync.Once
	closed chan struct{}
}

func (l *serverListener) Accept() (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-l.socket.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.socket.done:
		return nil, net.ErrClosed
	}
}

func (l *serverListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *serverListener) Addr() net.Addr { return l.socket.ln.Addr() }
