package app

import (
	"net/http"

	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/ui"
)

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
