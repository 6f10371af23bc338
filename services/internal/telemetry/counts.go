package telemetry

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Counts is a counter (or up-down counter) of a hot path: one atomic cell per label
// combination K, read by an observable instrument at each collection. Adding is a map load and
// an atomic add; a synchronous instrument's Add looks the attribute set up in the SDK's
// aggregation on every call (~0.3–0.5 µs: with the in-flight gauge, ~7 % of an ingest publish's
// CPU, docs/performance.md). The exported series are the same as a synchronous instrument's
// (a cumulative sum, monotonic or not); what is lost is exemplars, which a counter of outcomes
// does not need.
//
// K must range over a finite set (outcomes, sources, conditions): a cell, once created, is kept.
type Counts[K comparable] struct {
	build func(K) []attribute.KeyValue
	m     sync.Map // K → *countCell
}

type countCell struct {
	n    atomic.Int64
	opts metric.ObserveOption
}

// NewCounts registers name on meter as an Int64ObservableCounter (monotonic: Add only positive
// values) or, with upDown, an Int64ObservableUpDownCounter; each series carries build(k)'s
// attributes. Several Counts of one name (one per component instance) add up, as synchronous
// counters of one name do.
func NewCounts[K comparable](meter metric.Meter, name, description string, upDown bool, build func(K) []attribute.KeyValue) (*Counts[K], error) {
	c := &Counts[K]{build: build}
	var inst metric.Int64Observable
	var err error
	if upDown {
		inst, err = meter.Int64ObservableUpDownCounter(name, metric.WithDescription(description))
	} else {
		inst, err = meter.Int64ObservableCounter(name, metric.WithDescription(description))
	}
	if err != nil {
		return nil, err
	}
	// A callback given at creation would be ignored for the second instance of a name.
	if _, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c.m.Range(func(_, v any) bool {
			cell := v.(*countCell)
			o.ObserveInt64(inst, cell.n.Load(), cell.opts)
			return true
		})
		return nil
	}, inst); err != nil {
		return nil, err
	}
	return c, nil
}

// Add adds d to k's series.
func (c *Counts[K]) Add(k K, d int64) {
	v, ok := c.m.Load(k)
	if !ok {
		v, _ = c.m.LoadOrStore(k, &countCell{opts: metric.WithAttributeSet(attribute.NewSet(c.build(k)...))})
	}
	v.(*countCell).n.Add(d)
}
