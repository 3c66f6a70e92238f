//go:build soak

package soak

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// apiProxy stands between the controller and the kube-apiserver: an HTTPS
// reverse proxy on loopback with a self-signed certificate, forwarding each
// request with its own Authorization (the controller's ServiceAccount
// token), so the API server sees the controller exactly as without it.
// While armed it injects faults: it answers a share of writes with 409,
// 500 or 503 without forwarding them, delays a share of the other
// requests, ends watches at random moments, and cuts the controller's
// connections now and then. Each fault is counted.
type apiProxy struct {
	cfg   config
	tally *tally
	proxy *httputil.ReverseProxy
	srv   *http.Server
	ln    net.Listener
	caPEM []byte
	armed atomic.Bool

	mu    sync.Mutex
	rng   *mrand.Rand
	conns map[net.Conn]struct{}
	done  chan struct{}
}

// newAPIProxy starts the proxy in front of the API server of the admin
// kubeconfig. Only the server's address and CA are taken from it: the
// proxy itself has no credentials.
func newAPIProxy(cfg config, t *tally, adminKubeconfig string) (*apiProxy, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", adminKubeconfig)
	if err != nil {
		return nil, err
	}
	upstream, err := url.Parse(rc.Host)
	if err != nil {
		return nil, err
	}
	if err := checkLoopback(upstream.Host); err != nil {
		return nil, err
	}
	pool, err := caPool(rc)
	if err != nil {
		return nil, err
	}
	cert, caPEM, err := selfSigned()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &apiProxy{cfg: cfg, tally: t, ln: ln, caPEM: caPEM, rng: cfg.rng(streamProxy), conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(upstream) },
		Transport: &http.Transport{
			DialContext:         dialLoopback,
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 64,
		},
		// Watches stream: pass every event on at once.
		FlushInterval: -1,
		// Ended watches and cut connections are the point; don't log them.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p.srv = &http.Server{
		Handler:           p,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnState:         p.track,
	}
	go func() { _ = p.srv.ServeTLS(ln, "", "") }()
	go p.cutConnections()
	return p, nil
}

// caPool is the API server's CA from a rest config.
func caPool(rc *rest.Config) (*x509.CertPool, error) {
	data := rc.CAData
	if len(data) == 0 {
		var err error
		if data, err = os.ReadFile(rc.CAFile); err != nil {
			return nil, fmt.Errorf("reading the API server's CA: %w", err)
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, errors.New("no certificate in the API server's CA")
	}
	return pool, nil
}

// selfSigned makes the proxy's certificate for 127.0.0.1; the controller's
// kubeconfig trusts exactly this certificate.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "soak-api-proxy"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// kubeconfig writes a kubeconfig that reaches the API server through the
// proxy with the given bearer token.
func (p *apiProxy) kubeconfig(path, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["soak"] = &clientcmdapi.Cluster{Server: "https://" + p.ln.Addr().String(), CertificateAuthorityData: p.caPEM}
	cfg.AuthInfos["soak"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["soak"] = &clientcmdapi.Context{Cluster: "soak", AuthInfo: "soak"}
	cfg.CurrentContext = "soak"
	return clientcmd.WriteToFile(*cfg, path)
}

// arm starts or stops the faults; disarmed, the proxy only forwards.
func (p *apiProxy) arm(on bool) { p.armed.Store(on) }

func (p *apiProxy) close() {
	close(p.done)
	_ = p.srv.Close()
}

func (p *apiProxy) track(c net.Conn, s http.ConnState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch s {
	case http.StateNew:
		p.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(p.conns, c)
	}
}

// cutConnections closes every client connection at random moments: all the
// requests and watches in flight on them fail at once, as when a load
// balancer or the network drops the controller's connection.
func (p *apiProxy) cutConnections() {
	r := p.cfg.rng(streamCuts)
	for {
		select {
		case <-p.done:
			return
		case <-time.After(exponential(r, p.cfg.cutEvery)):
		}
		if !p.armed.Load() {
			continue
		}
		p.mu.Lock()
		n := len(p.conns)
		for c := range p.conns {
			// The TCP connection under TLS: an abrupt cut, no close_notify.
			if tc, ok := c.(*tls.Conn); ok {
				c = tc.NetConn()
			}
			_ = c.Close()
		}
		p.mu.Unlock()
		p.tally.add(faultCuts, n)
	}
}

// decision is what the fault layer does with one request.
type decision struct {
	status int           // answer with this status instead of forwarding
	delay  time.Duration // wait before forwarding
}

func (p *apiProxy) decide(r *http.Request) decision {
	p.mu.Lock()
	defer p.mu.Unlock()
	var d decision
	switch {
	case isWrite(r.Method):
		if p.rng.Float64() < p.cfg.writeFaults {
			d.status = injectedCodes[p.rng.IntN(len(injectedCodes))]
		}
	default:
		if p.rng.Float64() < p.cfg.delayShare {
			d.delay = uniform(p.rng, 50*time.Millisecond, p.cfg.maxDelay)
		}
	}
	return d
}

func isWrite(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

func isWatch(r *http.Request) bool {
	w := r.URL.Query().Get("watch")
	return w == "true" || w == "1" || strings.Contains(r.URL.Path, "/watch/")
}

func (p *apiProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.tally.inc(countProxied)
	if isWatch(r) {
		p.serveWatch(w, r)
		return
	}
	if !p.armed.Load() {
		p.proxy.ServeHTTP(w, r)
		return
	}
	d := p.decide(r)
	if d.status != 0 {
		p.tally.inc(injected[d.status].fault)
		writeStatus(w, d.status)
		return
	}
	if d.delay > 0 {
		p.tally.inc(faultDelayed)
		select {
		case <-time.After(d.delay):
		case <-r.Context().Done():
			return
		}
	}
	p.proxy.ServeHTTP(w, r)
}

// serveWatch forwards a watch and ends it at a random moment while the
// proxy is armed. Every watch gets a life, also one opened before the
// faults start: the controller's first watches would otherwise last
// until the API server's own timeout, minutes later.
func (p *apiProxy) serveWatch(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var timer *time.Timer
	drop := func() {
		switch {
		case r.Context().Err() != nil:
		case p.armed.Load():
			// Cancelling the upstream request makes the proxy abort the
			// response: the client's watch ends with an error mid-stream.
			p.tally.inc(faultDroppedWatches)
			cancel()
		default:
			timer.Reset(p.watchLife())
		}
	}
	// Made stopped, then set: drop may use timer however soon it fires.
	timer = time.AfterFunc(time.Hour, drop)
	timer.Reset(p.watchLife())
	defer timer.Stop()
	p.proxy.ServeHTTP(w, r.WithContext(ctx))
}

func (p *apiProxy) watchLife() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return exponential(p.rng, p.cfg.watchLife)
}

// The answers the proxy gives in place of a write: an optimistic-concurrency
// conflict, and the API server failing. None carries Retry-After, which
// client-go would act on by itself: the controller sees each one.
var (
	injectedCodes = []int{http.StatusConflict, http.StatusInternalServerError, http.StatusServiceUnavailable}
	injected      = map[int]struct{ reason, fault string }{
		http.StatusConflict:            {"Conflict", fault409},
		http.StatusInternalServerError: {"InternalError", fault500},
		http.StatusServiceUnavailable:  {"ServiceUnavailable", fault503},
	}
)

// writeStatus answers like the API server does, with a metav1.Status.
func writeStatus(w http.ResponseWriter, code int) {
	body, _ := json.Marshal(map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": fmt.Sprintf("soak: injected %d", code), "reason": injected[code].reason, "code": code,
	})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
