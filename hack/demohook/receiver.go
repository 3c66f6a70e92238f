package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// maxBody bounds the body read of one request; a notification is a few
// hundred bytes.
const maxBody = 64 << 10

// receiver writes one line per request to out and answers 204.
type receiver struct {
	now func() time.Time
	mu  sync.Mutex
	out io.Writer
}

func newReceiver(out io.Writer, now func() time.Time) *receiver {
	return &receiver{now: now, out: out}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := rc.now()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	// One write per line, so that a reader of the file sees whole lines.
	_, err = io.WriteString(rc.out, line(at, r.Method, r.URL.RequestURI(), body))
	rc.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// line is the log line of one request: its time, method, path and body.
// The body keeps to its line: without its trailing newlines, and quoted
// when it has other line breaks or unprintable characters.
func line(at time.Time, method, path string, body []byte) string {
	b := strings.TrimRight(string(body), "\r\n")
	if strings.ContainsFunc(b, func(r rune) bool { return r != ' ' && !unicode.IsPrint(r) }) {
		b = strconv.Quote(b)
	}
	return fmt.Sprintf("%s %s %s %s\n", at.Format(time.TimeOnly), method, path, b)
}

// checkLoopback refuses an address whose host is not a loopback IP: the
// demo listens on 127.0.0.1 only.
func checkLoopback(address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q: the host must be a loopback IP, such as 127.0.0.1", address)
	}
	return nil
}
