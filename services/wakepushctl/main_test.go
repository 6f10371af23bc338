package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	chschema "github.com/wakepush/wakepush/schemas/clickhouse"
)

func TestQueryParams(t *testing.T) {
	tests := []struct {
		text string
		want []string
	}{
		{"SELECT 1", nil},
		{"WHERE a >= {from:DateTime64(3)} AND b < {to:DateTime64(3)} AND a >= {from:DateTime64(3)}", []string{"from", "to"}},
		{"x = {app:String} AND y = {slack_ms:UInt32}", []string{"app", "slack_ms"}},
	}
	for _, tt := range tests {
		if got := queryParams(tt.text); !slices.Equal(got, tt.want) {
			t.Errorf("queryParams(%q) = %v, want %v", tt.text, got, tt.want)
		}
	}
}

// Every shipped query's parameters are either defaulted or documented in its comment, so
// `wakepushctl query NAME` can tell the analyst what to pass.
func TestShippedQueriesDocumentTheirParameters(t *testing.T) {
	now := time.Now()
	for _, name := range chschema.Queries() {
		text, err := chschema.Query(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range queryParams(text) {
			if _, ok := defaultParam(p, now); ok {
				continue
			}
			if !containsComment(text, p) {
				t.Errorf("query %s: parameter %s is neither defaulted nor described in the header comment", name, p)
			}
		}
	}
}

func containsComment(text, param string) bool {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "--") && strings.Contains(line, "{"+param+":") {
			return true
		}
	}
	return false
}
