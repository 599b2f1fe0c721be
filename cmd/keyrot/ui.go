package main

import (
	"context"
	"fmt"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/fleet"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/ui"
)

// uiEventsPerUser is how many of the events this process emitted /ui keeps
// per user.
const uiEventsPerUser = 50

// uiMinRefresh bounds how often /ui pages reload themselves.
const uiMinRefresh = 10 * time.Second

// noNotify drops events: an engine built only to observe (dry runs) has
// nothing to tell.
var noNotify = keyrot.NotifierFunc(func(context.Context, keyrot.Event) error { return nil })

// observer builds views of the fleet from dry-run passes of eng.
func observer(eng *app.App, cfg config.Config, clock keyrot.Clock) *fleet.Observer {
	return &fleet.Observer{Planner: eng.Rotator, Keys: eng.Keys, Clock: clock, Concurrency: cfg.Rotation.Concurrency}
}

// uiOption mounts /ui on the API server. It observes the fleet with the
// daemon's engine (a.views), whose events it also shows, or, for serve,
// with an engine built only to observe: serve then needs IAM's read
// permissions too, for /ui alone. A snapshot is reused for the API's poll
// interval, so viewers cost IAM calls at most that often.
func (a *apiRuntime) uiOption(ctx context.Context) (keyrothttp.ServerOption, error) {
	eng, events := a.views, ui.EventSource(a.events)
	if eng == nil {
		var err error
		if eng, err = app.New(ctx, a.cfg, app.Options{Logger: a.log, Clock: a.clock, Notifier: noNotify}); err != nil {
			return nil, fmt.Errorf("ui: %w", err)
		}
		events = nil // this process rotates nothing: it sees no events
	}
	poll, _ := a.cfg.APIPoll()
	return app.MountUI(ui.Config{
		Source: fleet.NewCached(observer(eng, a.cfg, a.clock), poll, a.clock),
		Events: events, Clock: a.clock, Logger: a.log, Refresh: max(poll, uiMinRefresh),
	})
}
