package app

import (
	"fmt"

	"github.com/keyrot/keyrot/internal/config"
)

// Warnings are the settings in cfg that are valid but probably not what was
// meant, every component's together: keyrot validate prints them (exit 0)
// and the long-running commands log them once at start.
func Warnings(cfg config.Config) []string {
	w := cfg.Warnings()
	if cfg.Notify.Via == "log" {
		return w // nothing is emailed: every event is a log line
	}
	for _, kind := range emailConfig(cfg, "").Unreached() {
		w = append(w, fmt.Sprintf("notify.recipients.%s is an empty list: %s events are emailed to nobody (remove the line to send them to admin and the owner)", kind, kind))
	}
	return w
}
