package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestWriteEMFShape checks the record against the documented Embedded
// Metric Format: one JSON line, _aws.Timestamp in epoch milliseconds,
// CloudWatchMetrics[{Namespace, Dimensions, Metrics[{Name, Unit}]}], and each
// dimension and metric value at the top level.
func TestWriteEMFShape(t *testing.T) {
	var buf bytes.Buffer
	at := time.Date(2026, 11, 2, 9, 0, 0, 123e6, time.UTC)
	err := writeEMF(&buf, "keyrot", at, map[string]string{"FunctionName": "fn"}, []Metric{
		{Name: "KeysCreated", Unit: "Count", Value: 2},
		{Name: "DurationMs", Unit: "Milliseconds", Value: 1534},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if got, want := strings.Count(out, "\n"), 1; got != want || !strings.HasSuffix(out, "\n") {
		t.Fatalf("record is %d lines, want %d ending in a newline: %q", got, want, out)
	}
	var rec struct {
		AWS struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
		FunctionName string
		KeysCreated  float64
		DurationMs   float64
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	if got, want := rec.AWS.Timestamp, at.UnixMilli(); got != want {
		t.Errorf("Timestamp = %d, want %d", got, want)
	}
	if got, want := len(rec.AWS.CloudWatchMetrics), 1; got != want {
		t.Fatalf("CloudWatchMetrics has %d directives, want %d", got, want)
	}
	d := rec.AWS.CloudWatchMetrics[0]
	if got, want := d.Namespace, "keyrot"; got != want {
		t.Errorf("Namespace = %q, want %q", got, want)
	}
	if got, want := d.Dimensions, [][]string{{"FunctionName"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Dimensions = %v, want %v", got, want)
	}
	if got, want := d.Metrics, []struct{ Name, Unit string }{{"KeysCreated", "Count"}, {"DurationMs", "Milliseconds"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Metrics = %v, want %v", got, want)
	}
	if got, want := rec.FunctionName, "fn"; got != want {
		t.Errorf("FunctionName = %q, want %q", got, want)
	}
	if got, want := rec.KeysCreated, 2.0; got != want {
		t.Errorf("KeysCreated = %v, want %v", got, want)
	}
	if got, want := rec.DurationMs, 1534.0; got != want {
		t.Errorf("DurationMs = %v, want %v", got, want)
	}
}

func TestWriteEMFRejectsClashingNames(t *testing.T) {
	tests := []struct {
		name    string
		dims    map[string]string
		metrics []Metric
	}{
		{"reserved _aws", nil, []Metric{{Name: "_aws", Unit: "Count"}}},
		{"metric named like a dimension", map[string]string{"FunctionName": "fn"}, []Metric{{Name: "FunctionName", Unit: "Count"}}},
		{"metric twice", nil, []Metric{{Name: "KeysCreated", Unit: "Count"}, {Name: "KeysCreated", Unit: "Count"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := writeEMF(&buf, "keyrot", time.Now(), tt.dims, tt.metrics); err == nil {
				t.Fatalf("no error; wrote %s", buf.String())
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %q despite the error", buf.String())
			}
		})
	}
}
