package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"
)

// Metric is one value of a CloudWatch metric.
type Metric struct {
	Name  string
	Unit  string // a CloudWatch unit: Count, Milliseconds, ...
	Value float64
}

// writeEMF writes metrics as one CloudWatch Embedded Metric Format record: a
// JSON object on one line that CloudWatch Logs turns into metrics, with no
// API call from the function. dims are the dimension values; every metric
// is recorded under all of them together.
//
// The shape (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
//
//	{"_aws":{"Timestamp":<ms>,"CloudWatchMetrics":[{"Namespace":"keyrot",
//	  "Dimensions":[["FunctionName"]],"Metrics":[{"Name":"KeysCreated","Unit":"Count"}]}]},
//	 "FunctionName":"...","KeysCreated":1}
func writeEMF(w io.Writer, namespace string, at time.Time, dims map[string]string, metrics []Metric) error {
	type metricDef struct {
		Name string `json:"Name"`
		Unit string `json:"Unit"`
	}
	type directive struct {
		Namespace  string      `json:"Namespace"`
		Dimensions [][]string  `json:"Dimensions"`
		Metrics    []metricDef `json:"Metrics"`
	}
	type meta struct {
		Timestamp         int64       `json:"Timestamp"`
		CloudWatchMetrics []directive `json:"CloudWatchMetrics"`
	}
	record := map[string]any{}
	dimNames := make([]string, 0, len(dims))
	for name, value := range dims {
		dimNames = append(dimNames, name)
		record[name] = value
	}
	// Map order is random; keep the dimension set stable.
	slices.Sort(dimNames)
	d := directive{Namespace: namespace, Dimensions: [][]string{dimNames}, Metrics: make([]metricDef, 0, len(metrics))}
	for _, m := range metrics {
		if m.Name == "_aws" {
			return fmt.Errorf("emf: metric name %q is reserved", m.Name)
		}
		if _, ok := record[m.Name]; ok {
			return fmt.Errorf("emf: metric %q repeats a name", m.Name)
		}
		d.Metrics = append(d.Metrics, metricDef{Name: m.Name, Unit: m.Unit})
		record[m.Name] = m.Value
	}
	record["_aws"] = meta{Timestamp: at.UnixMilli(), CloudWatchMetrics: []directive{d}}
	line, err := json.Marshal(record)
	if err != nil {
		return fmt.Errorf("emf: encode record: %w", err)
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("emf: write record: %w", err)
	}
	return nil
}
