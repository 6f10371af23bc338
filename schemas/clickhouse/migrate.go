// Package clickhouse holds wakepush's ClickHouse schema: ordered migrations applied idempotently
// at start (by the recorder, and by the Helm hook job), and the analyst queries that ship with
// them.
//
// Migrations are migrations/NNNN_name.sql, applied in version order. A file may hold several
// statements, each ending with ";" at the end of a line. ${database} in a migration is replaced
// by the configured database name. ClickHouse DDL is not transactional, so every statement must
// be idempotent on its own (CREATE … IF NOT EXISTS, ALTER … IF NOT EXISTS): a migration that
// failed half way is simply run again. Applied versions are recorded in
// <database>.schema_migrations with a checksum of the file; changing an applied file is an error
// (add a new migration instead).
package clickhouse

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DefaultDatabase is the database wakepush uses unless configured otherwise.
const DefaultDatabase = "wakepush"

// MigrationsTable is the table (in the migrated database) that records applied migrations.
const MigrationsTable = "schema_migrations"

// ErrChecksum reports that an applied migration's file has changed since it was applied. It is
// permanent: retrying does not help.
var ErrChecksum = errors.New("applied migration changed")

// ErrInvalid reports a malformed migration set or database name (a programming or
// configuration error, not a transient one).
var ErrInvalid = errors.New("invalid")

// Migration is one migration file.
type Migration struct {
	Version  uint32
	Name     string
	Checksum string // hex SHA-256 of the file as embedded (before ${database} substitution)
	SQL      string
}

// Statements returns the statements of m for database, in order.
func (m Migration) Statements(database string) []string {
	return SplitStatements(strings.ReplaceAll(m.SQL, "${database}", quoteIdent(database)))
}

// Applied is a row of schema_migrations.
type Applied struct {
	Version   uint32
	Name      string
	Checksum  string
	AppliedAt time.Time
}

var fileRE = regexp.MustCompile(`^(\d{4,})_([a-z0-9_]+)\.sql$`)

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	return loadMigrations(migrationFS, "migrations")
}

func loadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		m := fileRE.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("%w: file name %q is not NNNN_name.sql", ErrInvalid, e.Name())
		}
		v, err := strconv.ParseUint(m[1], 10, 32)
		if err != nil || v == 0 {
			return nil, fmt.Errorf("%w: version of %q must be 1 or more", ErrInvalid, e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(b)
		out = append(out, Migration{Version: uint32(v), Name: m[2], Checksum: hex.EncodeToString(sum[:]), SQL: string(b)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return int(a.Version) - int(b.Version) })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("%w: two migrations with version %d (%s, %s)", ErrInvalid, out[i].Version, out[i-1].Name, out[i].Name)
		}
	}
	return out, nil
}

// Pending returns the migrations not applied yet, in order, after checking that every applied
// migration that this code knows still has the checksum it was applied with. Applied versions
// this code does not know (a newer schema during a rolling deploy) are left alone.
func Pending(all []Migration, applied map[uint32]Applied) ([]Migration, error) {
	var pending []Migration
	var errs []error
	for _, m := range all {
		a, ok := applied[m.Version]
		if !ok {
			pending = append(pending, m)
			continue
		}
		if a.Checksum != m.Checksum {
			errs = append(errs, fmt.Errorf("%w: migration %04d_%s was applied with checksum %s but the file now has %s; add a new migration instead of editing an applied one",
				ErrChecksum, m.Version, m.Name, short(a.Checksum), short(m.Checksum)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return pending, nil
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// SplitStatements splits sql into statements at lines ending with ";" (trailing spaces
// ignored), dropping the ";" and statements that hold only comments and blank lines.
func SplitStatements(sql string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if s := strings.TrimSpace(cur.String()); hasCode(s) {
			out = append(out, s)
		}
		cur.Reset()
	}
	for line := range strings.Lines(sql) {
		trimmed := strings.TrimRight(line, " \t\r\n")
		if strings.HasSuffix(trimmed, ";") && !strings.HasPrefix(strings.TrimSpace(trimmed), "--") {
			cur.WriteString(strings.TrimSuffix(trimmed, ";"))
			flush()
			continue
		}
		cur.WriteString(line)
	}
	flush()
	return out
}

// hasCode reports whether s holds anything but "--" comment lines and blanks.
func hasCode(s string) bool {
	for line := range strings.Lines(s) {
		l := strings.TrimSpace(line)
		if l != "" && !strings.HasPrefix(l, "--") {
			return true
		}
	}
	return false
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidDatabase reports whether name is acceptable as the wakepush database name (a plain
// identifier, so it needs no escaping anywhere).
func ValidDatabase(name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("%w: database name %q: want letters, digits and _ (not starting with a digit)", ErrInvalid, name)
	}
	return nil
}

func quoteIdent(s string) string { return "`" + s + "`" }

// Migrate creates database if needed and applies the pending migrations in order, recording
// each in schema_migrations. conn may be connected to any database: every statement names its
// database. It is safe to run concurrently from several instances (every statement is
// idempotent; a version recorded twice is read once).
func Migrate(ctx context.Context, conn driver.Conn, database string) error {
	_, err := Apply(ctx, conn, database)
	return err
}

// Apply is Migrate, returning the migrations it applied (none when the schema was already at
// the latest version). When it fails part way, the migrations before the failing one are
// returned with the error.
func Apply(ctx context.Context, conn driver.Conn, database string) ([]Migration, error) {
	if err := ValidDatabase(database); err != nil {
		return nil, err
	}
	all, err := Migrations()
	if err != nil {
		return nil, err
	}
	db := quoteIdent(database)
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		return nil, fmt.Errorf("create database %s: %w", database, err)
	}
	if err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+db+`.`+MigrationsTable+` (
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC')
) ENGINE = MergeTree
ORDER BY version`); err != nil {
		return nil, fmt.Errorf("create %s.%s: %w", database, MigrationsTable, err)
	}
	applied, err := AppliedMigrations(ctx, conn, database)
	if err != nil {
		return nil, err
	}
	pending, err := Pending(all, applied)
	if err != nil {
		return nil, err
	}
	var done []Migration
	for _, m := range pending {
		for i, stmt := range m.Statements(database) {
			if err := conn.Exec(ctx, stmt); err != nil {
				return done, fmt.Errorf("migration %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		if err := conn.Exec(ctx, `INSERT INTO `+db+`.`+MigrationsTable+` (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)`,
			m.Version, m.Name, m.Checksum, time.Now().UTC()); err != nil {
			return done, fmt.Errorf("record migration %04d_%s: %w", m.Version, m.Name, err)
		}
		done = append(done, m)
	}
	return done, nil
}

// AppliedMigrations reads schema_migrations of database. When one version was recorded twice
// (two instances migrating at once), the first record wins.
func AppliedMigrations(ctx context.Context, conn driver.Conn, database string) (map[uint32]Applied, error) {
	if err := ValidDatabase(database); err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, `SELECT version, argMin(name, applied_at), argMin(checksum, applied_at), min(applied_at)
FROM `+quoteIdent(database)+`.`+MigrationsTable+` GROUP BY version`)
	if err != nil {
		return nil, fmt.Errorf("read %s.%s: %w", database, MigrationsTable, err)
	}
	defer rows.Close()
	out := map[uint32]Applied{}
	for rows.Next() {
		var a Applied
		if err := rows.Scan(&a.Version, &a.Name, &a.Checksum, &a.AppliedAt); err != nil {
			return nil, fmt.Errorf("scan %s: %w", MigrationsTable, err)
		}
		out[a.Version] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s.%s: %w", database, MigrationsTable, err)
	}
	return out, nil
}
