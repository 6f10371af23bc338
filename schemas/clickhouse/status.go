package clickhouse

import (
	"context"
	"fmt"
	"regexp"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Status returns the migrations of this code that database has not applied yet (none: the
// schema is at the latest version), after the same checksum check as Migrate. It only reads
// (SELECT on <database>.schema_migrations), so it suits services and checks without DDL
// rights; a database or schema_migrations that does not exist yet is an error.
func Status(ctx context.Context, conn driver.Conn, database string) ([]Migration, error) {
	all, err := Migrations()
	if err != nil {
		return nil, err
	}
	applied, err := AppliedMigrations(ctx, conn, database)
	if err != nil {
		return nil, err
	}
	return Pending(all, applied)
}

// Latest is the version of the newest migration this code knows.
func Latest() (Migration, error) {
	all, err := Migrations()
	if err != nil {
		return Migration{}, err
	}
	if len(all) == 0 {
		return Migration{}, fmt.Errorf("%w: no migrations", ErrInvalid)
	}
	return all[len(all)-1], nil
}

var createTableRE = regexp.MustCompile(`(?im)^\s*CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+\$\{database\}\.([A-Za-z_][A-Za-z0-9_]*)`)

// Tables lists the tables the migrations create (not their materialized views), in migration
// order: the ones the recorder writes and the rollups the dashboards read.
func Tables() ([]string, error) {
	all, err := Migrations()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range all {
		for _, sm := range createTableRE.FindAllStringSubmatch(m.SQL, -1) {
			out = append(out, sm[1])
		}
	}
	return out, nil
}

// String is the migration's file name without the extension, e.g. 0001_tables.
func (m Migration) String() string { return fmt.Sprintf("%04d_%s", m.Version, m.Name) }
