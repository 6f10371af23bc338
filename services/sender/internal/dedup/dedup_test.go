package dedup

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestSetEvictsOldest(t *testing.T) {
	s := New(3)
	for i := range 5 {
		s.Add(fmt.Sprint(i))
	}
	s.Add("4") // already present: no eviction
	for i, want := range []bool{false, false, true, true, true} {
		if got := s.Contains(fmt.Sprint(i)); got != want {
			t.Errorf("Contains(%d) = %v, want %v", i, got, want)
		}
	}
	if s.Len() != 3 {
		t.Errorf("Len = %d, want 3", s.Len())
	}
}

func TestClaimSerializesSameID(t *testing.T) {
	s := New(10)
	ctx := context.Background()
	delivered, release, err := s.Claim(ctx, "w")
	if err != nil || delivered {
		t.Fatalf("first claim: delivered=%v err=%v", delivered, err)
	}
	// Another id is not blocked.
	_, r2, err := s.Claim(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	r2()

	var wg sync.WaitGroup
	got := make(chan bool, 1)
	wg.Go(func() {
		d, r, err := s.Claim(ctx, "w")
		if err != nil {
			t.Error(err)
			return
		}
		r()
		got <- d
	})
	select {
	case <-got:
		t.Fatal("second claim of the same id did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	s.Add("w")
	release()
	wg.Wait()
	if !<-got {
		t.Error("second claim did not see the delivery")
	}
}

func TestClaimHonoursContext(t *testing.T) {
	s := New(10)
	_, release, _ := s.Claim(context.Background(), "w")
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := s.Claim(ctx, "w"); err == nil {
		t.Error("claim of a busy id returned without error after ctx ended")
	}
}
