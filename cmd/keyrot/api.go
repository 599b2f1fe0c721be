package main

import (
	"context"
	"log/slog"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
)

// apiRuntime is the REST API beside the engine (wired in the next change).
type apiRuntime struct{}

func (m *Main) newAPI(_ context.Context, _ config.Config, _ *slog.Logger, _ bool) (*apiRuntime, error) {
	return &apiRuntime{}, nil
}
func (a *apiRuntime) publisher() keyrot.CredentialsPublisher         { return nil }
func (a *apiRuntime) notifierHook(n keyrot.Notifier) keyrot.Notifier { return n }
func (a *apiRuntime) start(context.Context, *app.App) (map[string]string, error) {
	return map[string]string{}, nil
}
func (a *apiRuntime) stop(context.Context, *slog.Logger) {}
func (a *apiRuntime) observePass(keyrot.Summary)         {}
func (m *Main) runServe(context.Context, []string) error { return &usageError{"serve: not wired yet"} }
func (m *Main) runCredentials(context.Context, []string) error {
	return &usageError{"credentials: not wired yet"}
}
func (m *Main) runAPIKey(context.Context, []string) error {
	return &usageError{"apikey: not wired yet"}
}
