package http

import (
	"context"
	"log/slog"
	"time"
)

// record writes a request's record through h, the access or audit logger's
// handler, on which "system" is already rendered (Logger.With), so a record
// costs only its own fields. It takes the time it is given and skips
// slog's walk of the stack for a source location no handler here asks for.
func (s *Server) record(ctx context.Context, h slog.Handler, level slog.Level, t time.Time, msg string, attrs ...slog.Attr) {
	if !h.Enabled(ctx, level) {
		return
	}
	rec := slog.NewRecord(t, level, msg, 0)
	rec.AddAttrs(attrs...)
	_ = h.Handle(ctx, rec)
}

// probeRoutes are the health probes: a load balancer asks them every few
// seconds, so their access records are at debug level.
var probeRoutes = map[string]bool{"GET /healthz": true, "GET /readyz": true, "/healthz": true, "/readyz": true}
