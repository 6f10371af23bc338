package telemetry

import (
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MaxCachedOptions bounds an OptionCache: label values come from the apps file and from finite
// sets (outcomes, providers' reasons), but a provider answering arbitrary reasons must not grow
// memory for ever; past the bound, options are built per measurement.
const MaxCachedOptions = 4096

// OptionCache keeps the measurement option of each label combination K. Building an
// attribute.Set per measurement (allocating, sorting, hashing) costs more than recording it:
// ~15 % of the sender engine's CPU per wake before (docs/performance.md).
type OptionCache[K comparable] struct {
	build func(K) []attribute.KeyValue
	m     sync.Map // K → metric.MeasurementOption
	n     atomic.Int64
}

// NewOptionCache returns a cache whose options carry build(k)'s attributes.
func NewOptionCache[K comparable](build func(K) []attribute.KeyValue) *OptionCache[K] {
	return &OptionCache[K]{build: build}
}

// Get returns the option of k.
func (c *OptionCache[K]) Get(k K) metric.MeasurementOption {
	if o, ok := c.m.Load(k); ok {
		return o.(metric.MeasurementOption)
	}
	o := metric.WithAttributeSet(attribute.NewSet(c.build(k)...))
	if c.n.Load() < MaxCachedOptions {
		if _, loaded := c.m.LoadOrStore(k, o); !loaded {
			c.n.Add(1)
		}
	}
	return o
}

// Len is the number of cached options.
func (c *OptionCache[K]) Len() int { return int(c.n.Load()) }
