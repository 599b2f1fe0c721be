package app

import (
	"context"
	"net/http"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/fleet"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/ui"
)

// NoNotify drops events: an engine built only to observe (dry runs, /ui,
// keyrot report) has nothing to tell.
var NoNotify = keyrot.NotifierFunc(func(context.Context, keyrot.Event) error { return nil })

// Observer builds views of the fleet from dry-run passes of eng.
func Observer(eng *App, clock keyrot.Clock) *fleet.Observer {
	return &fleet.Observer{Planner: eng.Rotator, Keys: eng.Keys, Clock: clock, Concurrency: eng.Config.Rotation.Concurrency}
}

// MountUI builds the /ui handler from cfg and returns the API server option
// that mounts it. The UI checks API keys with the server it is mounted on
// (its keys, scopes and limits), so cfg.Authenticate is set here.
func MountUI(cfg ui.Config) (keyrothttp.ServerOption, error) {
	var srv *keyrothttp.Server // set when the option is applied, before any request
	cfg.Authenticate = func(w http.ResponseWriter, r *http.Request, apiKey string) (ui.Principal, error) {
		k, err := srv.CheckKey(w, r, apiKey)
		if err != nil {
			return ui.Principal{}, err
		}
		return ui.Principal{Name: k.Name, Allows: k.Allows}, nil
	}
	h, err := ui.New(cfg)
	if err != nil {
		return nil, err
	}
	mount := keyrothttp.WithHandler(h, ui.Patterns()...)
	return func(s *keyrothttp.Server) {
		srv = s
		mount(s)
	}, nil
}
