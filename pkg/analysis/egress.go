package analysis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// DefaultDeniedCIDRs are the addresses no measurement may connect to unless
// --analysis-allow-cidrs lifts them: link-local IPv4 and IPv6, where cloud
// instance metadata services (and the credentials they hand out) live, and
// AWS's IPv6 metadata address.
var DefaultDeniedCIDRs = []string{"169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"}

// EgressPolicy decides which addresses the web, prometheus and judge
// providers may connect to. It is checked when a connection is dialled,
// on the address actually dialled, so a host name resolving (or rebinding)
// to a denied address is refused too.
//
// An address is denied when a deny prefix contains it, unless an allow
// prefix at least as specific as the most specific such deny prefix also
// contains it: an allow carves an exception out of a deny (allowing
// 169.254.0.0/16 lifts the whole default entry), and a deny more specific
// than an allow still wins. A nil policy is the default deny list.
type EgressPolicy struct {
	deny  []egressRule
	allow []netip.Prefix
}

// egressRule is a denied prefix and where it comes from, for the message.
type egressRule struct {
	prefix netip.Prefix
	source string
}

const (
	sourceDefault = "the default deny list"
	sourceFlag    = "--analysis-deny-cidrs"
)

// NewEgressPolicy is the default deny list plus deny, with the exceptions
// of allow.
func NewEgressPolicy(deny, allow []netip.Prefix) *EgressPolicy {
	p := &EgressPolicy{allow: allow}
	for _, s := range DefaultDeniedCIDRs {
		p.deny = append(p.deny, egressRule{prefix: netip.MustParsePrefix(s), source: sourceDefault})
	}
	for _, d := range deny {
		p.deny = append(p.deny, egressRule{prefix: d, source: sourceFlag})
	}
	return p
}

// ParseCIDRs parses a comma-separated list of CIDRs (a flag's value); a
// bare address is a single-address prefix. Prefixes are masked, so
// 10.1.2.3/8 is 10.0.0.0/8.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR or an IP address", f)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR: %w", f, err)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

var defaultEgress = NewEgressPolicy(nil, nil)

// ErrEgressDenied is what a refused connection's error wraps.
var ErrEgressDenied = errors.New("denied by the analysis egress policy")

// Allowed says whether a measurement may connect to ip: nil, or an error
// naming the rule that denies it.
func (p *EgressPolicy) Allowed(ip netip.Addr) error {
	if p == nil {
		p = defaultEgress
	}
	// A zone would make every prefix miss, and an IPv4-mapped IPv6 address
	// reaches the IPv4 address.
	ip = ip.WithZone("").Unmap()
	var denied *egressRule
	for i, r := range p.deny {
		if r.prefix.Contains(ip) && (denied == nil || r.prefix.Bits() > denied.prefix.Bits()) {
			denied = &p.deny[i]
		}
	}
	if denied == nil {
		return nil
	}
	for _, a := range p.allow {
		if a.Contains(ip) && a.Bits() >= denied.prefix.Bits() {
			return nil
		}
	}
	return fmt.Errorf("%s is %w (%s from %s; --analysis-allow-cidrs makes exceptions)", ip, ErrEgressDenied, denied.prefix, denied.source)
}

// control is a net.Dialer's Control: it sees the address about to be
// connected to, after name resolution.
func (p *EgressPolicy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("the analysis egress policy cannot check %q: %w", address, err)
	}
	return p.Allowed(ap.Addr())
}

// dialContext dials through the policy.
func (p *EgressPolicy) dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: p.control}
	return d.DialContext(ctx, network, address)
}

// proxy is http.ProxyFromEnvironment for measurements. Through a proxy the
// dial reaches the proxy, not the target, so a target given as an IP
// address is checked here; a host name is resolved by the proxy.
func (p *EgressPolicy) proxy(req *http.Request) (*url.URL, error) {
	u, err := http.ProxyFromEnvironment(req)
	if err != nil || u == nil {
		return u, err
	}
	if ip, perr := netip.ParseAddr(req.URL.Hostname()); perr == nil {
		if err := p.Allowed(ip); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// sameOrigin is an http.Client's CheckRedirect: a measurement follows a
// redirect only to the scheme, host and port it started with, so an answer
// cannot send the request, and its credentials, elsewhere.
func sameOrigin(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	from, to := origin(via[0].URL), origin(req.URL)
	if from != to {
		return fmt.Errorf("refusing the redirect from %s to %s: measurements follow redirects only to the same scheme, host and port", from, to)
	}
	return nil
}

// origin is scheme://host:port of u, with the scheme's default port made
// explicit.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// maxBody bounds how much of an answer a measurement reads.
const maxBody = 1 << 20

// errBodyTooLarge is what reading past maxBody returns.
var errBodyTooLarge = fmt.Errorf("the answer is larger than %d bytes (1 MiB), the most a measurement reads", maxBody)

// bounded is a RoundTripper whose answers fail to read past maxBody, so no
// provider, nor the libraries they use, holds a larger answer in memory.
type bounded struct{ rt http.RoundTripper }

func (b bounded) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > maxBody {
		_ = resp.Body.Close()
		return nil, errBodyTooLarge
	}
	resp.Body = &boundedBody{rc: resp.Body, left: maxBody}
	return resp, nil
}

// boundedBody reads at most left bytes, then fails if there is more.
type boundedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte tells a body of exactly maxBody from a longer one.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }

// httpClient is the client of a measurement: answers bounded, redirects
// only to the same origin.
func httpClient(rt http.RoundTripper) *http.Client {
	return &http.Client{Transport: bounded{rt: rt}, CheckRedirect: sameOrigin}
}
