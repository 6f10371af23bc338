package clickhouse

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func TestSplitStatements(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sql  string
		want []string
	}{
		{"single without semicolon", "SELECT 1", []string{"SELECT 1"}},
		{"single", "SELECT 1;\n", []string{"SELECT 1"}},
		{"two with comments", "-- header;\n-- more\nCREATE TABLE a (x UInt8)\nENGINE = Memory;\n\n-- second\nSELECT 2;  \n", []string{"-- header;\n-- more\nCREATE TABLE a (x UInt8)\nENGINE = Memory", "-- second\nSELECT 2"}},
		{"semicolon inside a line does not split", "SELECT ';' AS x, 1;\nSELECT 2", []string{"SELECT ';' AS x, 1", "SELECT 2"}},
		{"only comments", "-- nothing;\n\n", nil},
		{"crlf", "SELECT 1;\r\nSELECT 2;\r\n", []string{"SELECT 1", "SELECT 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := SplitStatements(tt.sql)
			if !slices.Equal(got, tt.want) {
				t.Errorf("SplitStatements(%q) = %q, want %q", tt.sql, got, tt.want)
			}
		})
	}
}

func TestEmbeddedMigrations(t *testing.T) {
	t.Parallel()
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}
	for i, m := range ms {
		if m.Version != uint32(i+1) {
			t.Errorf("migration %d has version %d: versions must be 1, 2, 3, … without gaps", i, m.Version)
		}
		stmts := m.Statements("wp_test")
		if len(stmts) == 0 {
			t.Errorf("migration %04d_%s has no statements", m.Version, m.Name)
		}
		for _, s := range stmts {
			if strings.Contains(s, "${") {
				t.Errorf("migration %04d_%s: unreplaced placeholder in %q", m.Version, m.Name, s)
			}
			if strings.Contains(s, "CREATE") && !strings.Contains(s, "IF NOT EXISTS") {
				t.Errorf("migration %04d_%s: CREATE without IF NOT EXISTS is not idempotent: %.80q", m.Version, m.Name, s)
			}
			for _, what := range []string{"ADD COLUMN", "ADD INDEX", "ADD PROJECTION"} {
				if strings.Count(s, what) != strings.Count(s, what+" IF NOT EXISTS") {
					t.Errorf("migration %04d_%s: %s without IF NOT EXISTS is not idempotent: %.80q", m.Version, m.Name, what, s)
				}
			}
		}
	}
}

func TestLoadMigrationsRejectsBadSets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files fstest.MapFS
	}{
		{"bad name", fstest.MapFS{"m/first.sql": {Data: []byte("SELECT 1")}}},
		{"version zero", fstest.MapFS{"m/0000_zero.sql": {Data: []byte("SELECT 1")}}},
		{"duplicate version", fstest.MapFS{"m/0001_a.sql": {Data: []byte("SELECT 1")}, "m/0001_b.sql": {Data: []byte("SELECT 2")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := loadMigrations(tt.files, "m"); !errors.Is(err, ErrInvalid) {
				t.Errorf("loadMigrations: err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestPending(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"m/0002_b.sql": {Data: []byte("SELECT 2")},
		"m/0001_a.sql": {Data: []byte("SELECT 1")},
		"m/0003_c.sql": {Data: []byte("SELECT 3")},
	}
	all, err := loadMigrations(fsys, "m")
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{all[0].Name, all[1].Name, all[2].Name}; !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("order = %v, want a b c", got)
	}
	applied := func(ms ...Migration) map[uint32]Applied {
		out := map[uint32]Applied{}
		for _, m := range ms {
			out[m.Version] = Applied{Version: m.Version, Name: m.Name, Checksum: m.Checksum}
		}
		return out
	}
	names := func(ms []Migration) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return out
	}

	t.Run("fresh database applies all", func(t *testing.T) {
		got, err := Pending(all, applied())
		if err != nil || !slices.Equal(names(got), []string{"a", "b", "c"}) {
			t.Errorf("Pending = %v, %v; want a b c", names(got), err)
		}
	})
	t.Run("applied ones are skipped", func(t *testing.T) {
		got, err := Pending(all, applied(all[0], all[1]))
		if err != nil || !slices.Equal(names(got), []string{"c"}) {
			t.Errorf("Pending = %v, %v; want c", names(got), err)
		}
	})
	t.Run("nothing to do", func(t *testing.T) {
		got, err := Pending(all, applied(all...))
		if err != nil || len(got) != 0 {
			t.Errorf("Pending = %v, %v; want none", names(got), err)
		}
	})
	t.Run("unknown newer version is left alone", func(t *testing.T) {
		a := applied(all...)
		a[9] = Applied{Version: 9, Name: "future", Checksum: "x"}
		got, err := Pending(all, a)
		if err != nil || len(got) != 0 {
			t.Errorf("Pending = %v, %v; want none", names(got), err)
		}
	})
	t.Run("changed applied migration is an error", func(t *testing.T) {
		a := applied(all...)
		changed := a[2]
		changed.Checksum = "0000000000000000deadbeef"
		a[2] = changed
		_, err := Pending(all, a)
		if !errors.Is(err, ErrChecksum) {
			t.Fatalf("Pending: err = %v, want ErrChecksum", err)
		}
		if !strings.Contains(err.Error(), "0002_b") {
			t.Errorf("error %q does not name the migration", err)
		}
	})
}

func TestValidDatabase(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"wakepush", "wp_test_1", "_x"} {
		if err := ValidDatabase(ok); err != nil {
			t.Errorf("ValidDatabase(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1abc", "a-b", "a.b", "a`b", "x; DROP TABLE y"} {
		if err := ValidDatabase(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidDatabase(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestQueryLookup(t *testing.T) {
	t.Parallel()
	names := Queries()
	for _, want := range []string{"latency_quantiles", "uncovered_events"} {
		if !slices.Contains(names, want) {
			t.Errorf("Queries() = %v, missing %s", names, want)
		}
	}
	for _, n := range names {
		q, err := Query(n)
		if err != nil {
			t.Fatal(err)
		}
		q2, err := Query(n + ".sql")
		if err != nil || q2 != q {
			t.Errorf("Query(%q.sql) differs from Query(%q): %v", n, n, err)
		}
		if !strings.HasPrefix(q, "-- "+n+":") {
			t.Errorf("query %s must start with a comment %q saying what it answers", n, "-- "+n+": …")
		}
	}
	for _, bad := range []string{"", "nope", "../migrations/0001_tables"} {
		if _, err := Query(bad); err == nil {
			t.Errorf("Query(%q) succeeded", bad)
		}
	}
}
