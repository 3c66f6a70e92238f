package notificationstest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
)

// SlackMessage is one message posted to a Slack.
type SlackMessage struct {
	Channel, Text, Token string
}

// Slack speaks the part of Slack's Web API that the notification engine's
// Slack service uses to post (chat.postMessage), on 127.0.0.1: point the
// service's apiURL at URL + "/api/".
type Slack struct {
	*httptest.Server
	mu   sync.Mutex
	got  []SlackMessage
	seen int
}

// NewSlack starts a Slack, closed when the test ends.
func NewSlack(t testing.TB) *Slack {
	s := &Slack{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/chat.postMessage", func(w http.ResponseWriter, req *http.Request) {
		if err := req.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		token := req.Header.Get("Authorization")
		if token == "" {
			token = "Bearer " + req.Form.Get("token")
		}
		msg := SlackMessage{Channel: req.Form.Get("channel"), Text: req.Form.Get("text"), Token: token}
		s.mu.Lock()
		s.got = append(s.got, msg)
		s.seen++
		ts := strconv.Itoa(s.seen) + ".000100"
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": msg.Channel, "ts": ts})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "unknown_method " + req.URL.Path})
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// Messages are those posted so far, in order.
func (s *Slack) Messages() []SlackMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SlackMessage(nil), s.got...)
}
