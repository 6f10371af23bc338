package main

import (
	"fmt"
	"time"

	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/internal/service"
)

// defaultAdminAddr is the coalescer's default admin address.
const defaultAdminAddr = "127.0.0.1:18092"

// settings is the coalescer's configuration. Every setting is a flag whose default comes from
// the environment variable named in its usage (README.md has the table).
type settings struct {
	Service service.Flags
	Kafka   kafkax.Config

	AppsFile string
	// Group is the consumer group id of push.events.
	Group string
	// RestoreSlack is added to the longest min_interval to make the window of push.wakes read at
	// assignment and the window in which repeated event ids are dropped.
	RestoreSlack time.Duration
	// CommitInterval is how often a partition commits its safe offset.
	CommitInterval time.Duration
	// MaxBatch is the most records handled (and their wakes produced) in one step.
	MaxBatch int
	// SessionTimeout is the consumer group session timeout (heartbeats every tenth of it).
	SessionTimeout time.Duration
	// ProduceTimeout bounds one attempt to produce a batch of wakes.
	ProduceTimeout time.Duration

	apps *apps.Set
}

// loadSettings parses args and the environment, loads the apps file and validates everything,
// reporting every problem at once.
func loadSettings(args []string) (*settings, error) {
	s := &settings{}
	set := config.New("coalescer")
	s.Service.Register(set, defaultAdminAddr)
	s.Kafka.Register(set)
	set.String(&s.AppsFile, "apps-file", "WAKEPUSH_APPS_FILE", "", "path of the apps file (apps served and their coalesce.min_interval)")
	set.String(&s.Group, "group", "WAKEPUSH_COALESCER_GROUP", "wakepush-coalescer", "consumer group id for push.events")
	set.Duration(&s.RestoreSlack, "restore-slack", "WAKEPUSH_COALESCER_RESTORE_SLACK", 30*time.Second,
		"extra time, beyond the longest min_interval, of push.wakes read when a partition is assigned and of event-id dedup")
	set.Duration(&s.CommitInterval, "commit-interval", "WAKEPUSH_COALESCER_COMMIT_INTERVAL", time.Second,
		"how often each partition commits the offset below its oldest event not yet covered by an acknowledged wake")
	set.Int(&s.MaxBatch, "max-batch", "WAKEPUSH_COALESCER_MAX_BATCH", 500, "most events handled per produce round trip")
	set.Duration(&s.SessionTimeout, "session-timeout", "WAKEPUSH_COALESCER_SESSION_TIMEOUT", 30*time.Second,
		"consumer group session timeout: how long a dead instance keeps its partitions")
	set.Duration(&s.ProduceTimeout, "produce-timeout", "WAKEPUSH_COALESCER_PRODUCE_TIMEOUT", 10*time.Second,
		"bound of one attempt to produce wakes (failed attempts are retried while the partition is owned)")
	if err := set.Parse(args); err != nil {
		return nil, err
	}

	var chk config.Check
	s.Service.Validate(&chk)
	s.Kafka.Validate(&chk)
	chk.Require(s.AppsFile != "", "WAKEPUSH_APPS_FILE is required")
	if s.AppsFile != "" {
		a, err := apps.Load(s.AppsFile)
		chk.Add(err)
		s.apps = a
	}
	chk.Require(s.Group != "", "WAKEPUSH_COALESCER_GROUP must not be empty")
	chk.Require(s.RestoreSlack >= 0, "WAKEPUSH_COALESCER_RESTORE_SLACK must not be negative")
	chk.Require(s.CommitInterval > 0, "WAKEPUSH_COALESCER_COMMIT_INTERVAL must be > 0")
	chk.Require(s.MaxBatch >= 1, "WAKEPUSH_COALESCER_MAX_BATCH must be >= 1")
	chk.Require(s.SessionTimeout >= 2*time.Second, "WAKEPUSH_COALESCER_SESSION_TIMEOUT must be >= 2s")
	chk.Require(s.ProduceTimeout > 0, "WAKEPUSH_COALESCER_PRODUCE_TIMEOUT must be > 0")
	if err := chk.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

// intervals returns the min_interval of every app.
func (s *settings) intervals() map[string]time.Duration {
	m := map[string]time.Duration{}
	for _, a := range s.apps.All() {
		m[a.ID] = a.Coalesce.MinInterval
	}
	return m
}

// window is how far back state matters: the longest interval plus the slack.
func (s *settings) window() time.Duration {
	var longest time.Duration
	for _, d := range s.intervals() {
		longest = max(longest, d)
	}
	return longest + s.RestoreSlack
}

func (s *settings) String() string {
	return fmt.Sprintf("group=%s apps=%d window=%s", s.Group, len(s.apps.All()), s.window())
}
