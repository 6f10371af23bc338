// Package dashboards defines wakepush's Grafana dashboards as code with the Grafana Foundation
// SDK. `go run ./deploy/monitoring/cmd/monitoring-gen` writes them as JSON into the Helm chart
// (deploy/helm/wakepush/dashboards), where the Grafana dashboard sidecar picks them up.
//
// Two dashboards:
//   - wakepush-services: the services' Prometheus metrics (rates, latency quantiles, consumer
//     lag and wake age, dead letters, component connections, ingest refusals), for SREs;
//   - wakepush-analytics: the ClickHouse per-minute rollups (events_1m, deliveries_1m,
//     dead_letters_1m, wake_latency_1m) and the raw tables, for analysts, through the
//     grafana-clickhouse-datasource plugin and its macros ($__timeFilter, $__timeInterval).
//
// Both take their data source from a dashboard variable (${prometheus}, ${clickhouse}), so they
// work with whatever the data sources are called in a Grafana.
package dashboards

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Data source kinds of a panel.
const (
	Prometheus = "prometheus"
	ClickHouse = "grafana-clickhouse-datasource"
)

// Dashboard is one dashboard: its file name in the chart and its panels by row.
type Dashboard struct {
	File        string // e.g. wakepush-services.json
	UID, Title  string
	Description string
	Datasource  string // Prometheus or ClickHouse: every panel of a dashboard uses the one
	Rows        []Row
}

// Row is a titled group of panels.
type Row struct {
	Title  string
	Panels []Panel
}

// Panel is one panel with its queries.
type Panel struct {
	Title, Description string
	Viz                string // "timeseries" (default), "table" or "stat"
	Unit               string
	Width              uint32 // of 24; default 12
	Queries            []Query
	// MustHaveData: the panel test (panels_test.go) requires rows/series from this panel after
	// its short stack run with traffic. Panels that show trouble (refusals, errors, retries)
	// are only required to run.
	MustHaveData bool
}

// Query is a PromQL expression or a ClickHouse SQL statement (with the plugin's macros).
type Query struct {
	Expr   string // PromQL or SQL
	Legend string // Prometheus legend format
	Table  bool   // ClickHouse: table format (else time series)
	// Quiet: no data while all is well (errors), so exempt from MustHaveData.
	Quiet bool
}

// All returns every dashboard.
func All() []Dashboard { return []Dashboard{services(), analytics()} }

// JSON renders d as Grafana dashboard JSON (indented, with a trailing newline).
func (d Dashboard) JSON() ([]byte, error) {
	dsVar := "prometheus"
	if d.Datasource == ClickHouse {
		dsVar = "clickhouse"
	}
	ds := common.DataSourceRef{Type: ptr(d.Datasource), Uid: ptr("${" + dsVar + "}")}
	b := dashboard.NewDashboardBuilder(d.Title).
		Uid(d.UID).
		Description(d.Description).
		Tags([]string{"wakepush"}).
		Editable().
		Timezone("utc").
		Time("now-6h", "now").
		Refresh("1m").
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder(dsVar).
			Label(map[string]string{Prometheus: "Prometheus", ClickHouse: "ClickHouse"}[d.Datasource]).
			Type(d.Datasource))
	if d.Datasource == Prometheus {
		b = b.WithVariable(dashboard.NewQueryVariableBuilder("app").Label("app").
			Datasource(ds).
			Query(dashboard.StringOrMap{String: ptr("label_values(wakepush_coalescer_events_total, app)")}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).IncludeAll(true).AllValue(".*").
			Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{String: ptr("All")},
				Value: dashboard.StringOrArrayOfString{String: ptr("$__all")}}))
	} else {
		b = b.WithVariable(dashboard.NewQueryVariableBuilder("app").Label("app").
			Datasource(ds).
			Query(dashboard.StringOrMap{String: ptr(AppVariableSQL)}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).IncludeAll(true).
			Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{String: ptr("All")},
				Value: dashboard.StringOrArrayOfString{String: ptr("$__all")}}))
	}
	id := uint32(0)
	for _, row := range d.Rows {
		id++
		b = b.WithRow(dashboard.NewRowBuilder(row.Title).Id(id))
		for _, p := range row.Panels {
			id++
			pb, err := panel(ds, d.Datasource, p, id)
			if err != nil {
				return nil, fmt.Errorf("%s / %s: %w", d.UID, p.Title, err)
			}
			b = b.WithPanel(pb)
		}
	}
	built, err := b.Build()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.UID, err)
	}
	out, err := json.MarshalIndent(built, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// AppVariableSQL lists the apps for the analytics dashboard's app variable.
const AppVariableSQL = "SELECT DISTINCT app FROM events_1m WHERE $__timeFilter(minute) ORDER BY app"

func panel(ds common.DataSourceRef, kind string, p Panel, id uint32) (cog.Builder[dashboard.Panel], error) {
	targets := make([]cog.Builder[variants.Dataquery], 0, len(p.Queries))
	for i, q := range p.Queries {
		ref := string(rune('A' + i))
		if kind == Prometheus {
			targets = append(targets, prometheus.NewDataqueryBuilder().RefId(ref).Datasource(ds).Expr(q.Expr).
				LegendFormat(q.Legend).Range())
		} else {
			targets = append(targets, clickHouseQuery{RefID: ref, Datasource: ds, SQL: q.Expr, Table: q.Table || p.Viz == "table" || p.Viz == "stat"})
		}
	}
	width := p.Width
	if width == 0 {
		width = 12
	}
	switch p.Viz {
	case "", "timeseries":
		return timeseries.NewPanelBuilder().Id(id).Title(p.Title).Description(p.Description).Datasource(ds).
			Unit(p.Unit).Span(width).Height(8).Targets(targets).
			Legend(common.NewVizLegendOptionsBuilder().ShowLegend(true).DisplayMode(common.LegendDisplayModeList).
				Placement(common.LegendPlacementBottom)), nil
	case "table":
		return table.NewPanelBuilder().Id(id).Title(p.Title).Description(p.Description).Datasource(ds).
			Unit(p.Unit).Span(width).Height(8).Targets(targets), nil
	case "stat":
		return stat.NewPanelBuilder().Id(id).Title(p.Title).Description(p.Description).Datasource(ds).
			Unit(p.Unit).Span(width).Height(4).Targets(targets), nil
	}
	return nil, fmt.Errorf("unknown visualization %q", p.Viz)
}

// clickHouseQuery is a target of the grafana-clickhouse-datasource plugin (v4) in raw SQL mode.
// The Foundation SDK has no ClickHouse query type, so this implements its Dataquery variant.
type clickHouseQuery struct {
	RefID      string
	Datasource common.DataSourceRef
	SQL        string
	Table      bool
}

type clickHouseTarget struct {
	RefID      string               `json:"refId"`
	Datasource common.DataSourceRef `json:"datasource"`
	EditorType string               `json:"editorType"`
	QueryType  string               `json:"queryType"`
	Format     int                  `json:"format"` // the plugin's Format enum: 0 time series, 1 table
	RawSQL     string               `json:"rawSql"`
}

func (clickHouseTarget) ImplementsDataqueryVariant() {}
func (clickHouseTarget) DataqueryType() string       { return ClickHouse }
func (clickHouseTarget) Validate() error             { return nil }
func (t clickHouseTarget) Equals(o variants.Dataquery) bool {
	other, ok := o.(clickHouseTarget)
	return ok && other.RefID == t.RefID && other.RawSQL == t.RawSQL && other.Format == t.Format
}

func (q clickHouseQuery) Build() (variants.Dataquery, error) {
	t := clickHouseTarget{RefID: q.RefID, Datasource: q.Datasource, EditorType: "sql", QueryType: "timeseries", Format: 0, RawSQL: q.SQL}
	if q.Table {
		t.QueryType, t.Format = "table", 1
	}
	return t, nil
}

func ptr[T any](v T) *T { return &v }
