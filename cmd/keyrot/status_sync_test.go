package main

import (
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
)

func TestStatusShowsEachTargetPerUser(t *testing.T) {
	since := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	sum := keyrot.Summary{Results: []keyrot.UserResult{{
		User:     "ci-bot",
		Current:  &keyrot.AccessKey{ID: "AKIANEW", CreateDate: since},
		Retiring: map[string]keyrot.Retirement{"AKIAOLD": {HeldFor: []string{"github/acme/app"}}},
		Targets: []keyrot.TargetState{
			{Target: "github/acme/app", KeyID: "AKIAOLD", FailingSince: since, Err: "github: PUT: 500 Internal Server Error"},
			{Target: "gitlab/project/acme/app", KeyID: "AKIANEW", Confirmed: true},
			{Target: "gitlab/group/acme"},
		},
	}}}
	rows := statusRows(sum, since.Add(time.Minute))
	if got := rows[0].Targets; len(got) != 3 || got[0].State != "failing" || got[0].HeldKey != "AKIAOLD" || got[1].State != "confirmed" || got[2].State != "pending" {
		t.Fatalf("targets = %+v", got)
	}
	var b strings.Builder
	printStatus(&b, rows)
	for _, want := range []string{
		"USER    SYNC TARGET              STATE      CONFIRMED KEY  HOLDING  NOTES",
		"ci-bot  github/acme/app          failing    AKIAOLD        AKIAOLD  failing since 2026-11-02T09:00:00Z github: PUT: 500 Internal Server Error",
		"ci-bot  gitlab/project/acme/app  confirmed  AKIANEW        -",
		"ci-bot  gitlab/group/acme        pending    -              -",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}
