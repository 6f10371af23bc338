// Package monitoring holds wakepush's production monitoring as code: the Grafana dashboards
// (built with the Grafana Foundation SDK and generated into the Helm chart) and the tests that
// run every panel's query and every alert rule against real engines (docs/monitoring.md).
package monitoring
