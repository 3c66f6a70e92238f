package dashboard

import "sync"

// subscriberBuffer is how many changes a slow browser may lag behind; past
// it, changes are dropped for it (the next one makes it read again).
const subscriberBuffer = 256

// hub fans changes out to the event streams.
type hub struct {
	mu   sync.Mutex
	subs map[chan Change]struct{}
}

func newHub() *hub { return &hub{subs: map[chan Change]struct{}{}} }

func (h *hub) subscribe() (<-chan Change, func()) {
	ch := make(chan Change, subscriberBuffer)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

func (h *hub) publish(c Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- c:
		default:
		}
	}
}
