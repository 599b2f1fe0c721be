package keyrot_test

import (
	"testing"
	"time"

	"github.com/keyrot/keyrot"
)

// FuzzParseDuration: any input either fails cleanly or gives a duration
// that is not negative and prints back to the same value.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"5m", "90d", "1d12h", "1.5d", "0s", "-1m", "NaNd", "1e300d", "d", "1dd", "7d-1h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := keyrot.ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 && s[0] != '-' {
			t.Fatalf("ParseDuration(%q) = %v", s, d)
		}
		if d < 0 {
			return
		}
		back, err := keyrot.ParseDuration(keyrot.FormatDuration(d))
		if err != nil || back != d {
			t.Fatalf("round trip of %q: %v -> %q -> %v, %v", s, d, keyrot.FormatDuration(d), back, err)
		}
	})
}

// FuzzPlanUser: whatever IAM and the secret say, the planner never panics
// and never plans to delete an active key.
func FuzzPlanUser(f *testing.F) {
	f.Add(uint8(2), uint8(1), int64(300), int64(100), true, false, uint8(0))
	f.Fuzz(func(t *testing.T, nKeys, status uint8, ageSec, sinceSec int64, hasCurrent, report bool, intent uint8) {
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		ids := []string{"AKIAAAAAAAAAAAAAAAA1", "AKIAAAAAAAAAAAAAAAA2", "AKIAAAAAAAAAAAAAAAA3"}
		o := keyrot.Observation{User: keyrot.User{Name: "u"}}
		for i := range int(nKeys % 4) {
			st := keyrot.KeyActive
			if status&(1<<i) != 0 {
				st = keyrot.KeyInactive
			}
			o.Keys = append(o.Keys, keyrot.AccessKey{ID: ids[i%3], Status: st, CreateDate: now.Add(-time.Duration(ageSec%100000) * time.Second * time.Duration(i+1))})
		}
		if hasCurrent && len(o.Keys) > 0 {
			k := o.Keys[len(o.Keys)-1]
			o.Secret.Current = &keyrot.StoredKey{KeyID: k.ID, CreateDate: k.CreateDate, Generation: 3}
			o.Secret.CurrentSince = now.Add(-time.Duration(sinceSec%100000) * time.Second)
		}
		if intent%3 == 1 {
			o.Secret.Intent = &keyrot.Intent{Generation: 4, At: now.Add(-time.Duration(intent) * time.Second)}
		}
		p := keyrot.DefaultPolicy()
		if report {
			p.UnmanagedKeys = keyrot.ReportUnmanaged
		}
		plan := keyrot.PlanUser(o, p, now, false)
		for _, s := range plan.Steps {
			if s.Kind == keyrot.StepDelete {
				for _, k := range o.Keys {
					if k.ID == s.KeyID && k.Status == keyrot.KeyActive {
						t.Fatalf("plan deletes active key %s: %+v", k.ID, plan)
					}
				}
			}
		}
	})
}

// FuzzParseTimings: the timings tag on a secret is outside input (anyone
// with TagResource can edit it). Any value either fails cleanly or gives
// positive timings that print back to themselves, and a key annotated with
// them never expires before now.
func FuzzParseTimings(f *testing.F) {
	for _, s := range []string{"5m 2m 1s", "90d 7d 1m", "20s 10s 0s", "5m 2m", "0s 2m 1s", "5m -2m 1s", "1e9d 1d 1d", "5m\t2m\n1s", "x y z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := keyrot.ParseTimings(s)
		if err != nil {
			return
		}
		if tm.RotateEvery <= 0 || tm.DeactivateAfter <= 0 {
			t.Fatalf("ParseTimings(%q) = %+v", s, tm)
		}
		back, err := keyrot.ParseTimings(tm.String())
		if err != nil || back != tm {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v, %v", s, tm, tm.String(), back, err)
		}
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		c := keyrot.Credentials{AccessKeyID: "AKIAEXAMPLE", CreateDate: now.Add(-time.Hour), Timings: tm}.Annotate(now)
		if c.Expiration.Before(now) {
			t.Fatalf("timings %q: Expiration %s before now %s", s, c.Expiration, now)
		}
	})
}
