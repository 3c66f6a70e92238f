// Package notificationstest is an HTTP endpoint on 127.0.0.1 that receives
// notifications in tests, and fails on demand.
package notificationstest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Request is one request the Receiver accepted.
type Request struct {
	Method, Path, Authorization, Body string
}

// Receiver records the requests it accepts; while its status is set, it
// refuses them with that status instead.
type Receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []Request
	status  int
	refused int
}

// NewReceiver starts a Receiver, closed when the test ends.
func NewReceiver(t testing.TB) *Receiver {
	r := &Receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.status != 0 {
			r.refused++
			// Echoes the token, as some services do in their errors.
			http.Error(w, "bad token "+req.Header.Get("Authorization"), r.status)
			return
		}
		r.got = append(r.got, Request{Method: req.Method, Path: req.URL.Path, Authorization: req.Header.Get("Authorization"), Body: string(body)})
	}))
	t.Cleanup(r.Close)
	return r
}

// SetStatus makes the Receiver refuse requests with status; 0 accepts them
// again.
func (r *Receiver) SetStatus(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = status
}

// Requests are those accepted so far, in order.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.got...)
}

// Messages are the accepted requests as "PATH BODY".
func (r *Receiver) Messages() []string {
	var out []string
	for _, req := range r.Requests() {
		out = append(out, req.Path+" "+req.Body)
	}
	return out
}

// Refused counts the requests refused so far.
func (r *Receiver) Refused() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}
