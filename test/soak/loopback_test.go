//go:build soak

package soak

import (
	"context"
	"fmt"
	"net"
)

// dialLoopback dials like net.Dialer, but only addresses in 127.0.0.0/8:
// the soak runs on one machine and must never reach anything else, whatever
// a kubeconfig or a template says. Every connection the test process opens
// goes through it.
func dialLoopback(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing to dial %s: the soak dials 127.0.0.0/8 only", addr)
	}
	return nil
}
