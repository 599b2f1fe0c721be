package mock

import (
	"slices"
	"sync"

	"github.com/keyrot/keyrot/notify"
)

// DeliveryResults records what a notify.Queue reports to its result hook:
// pass Hook to notify.WithResultHook. It is safe for concurrent use.
type DeliveryResults struct {
	mu  sync.Mutex
	got map[string][]notify.Result
	all []notify.Result
}

// Hook records one result for target.
func (r *DeliveryResults) Hook(target string, res notify.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string][]notify.Result{}
	}
	r.got[target] = append(r.got[target], res)
	r.all = append(r.all, res)
}

// List returns every result recorded, in order.
func (r *DeliveryResults) List() []notify.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.all)
}

// Of returns the results recorded for target, in order.
func (r *DeliveryResults) Of(target string) []notify.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got[target])
}
