package devices

import (
	"context"
	"log/slog"
	"time"

	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// RunRefresh is Run looking for new partitions every refresh.
func (s *Set) RunRefresh(ctx context.Context, cfg *kafkax.Config, log *slog.Logger, refresh time.Duration) error {
	return s.run(ctx, cfg, log, refresh)
}
