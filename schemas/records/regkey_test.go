package records

import "testing"

func TestRegistrationKey(t *testing.T) {
	for _, c := range []struct {
		device, reg, key, partition string
	}{
		{"3f00aa", "", "3f00aa", "3f00aa"},
		{"3f00aa", "0123abcd", "3f00aa/0123abcd", "3f00aa"},
	} {
		key := RegistrationKey(c.device, c.reg)
		if key != c.key {
			t.Errorf("RegistrationKey(%q, %q) = %q, want %q", c.device, c.reg, key, c.key)
		}
		if d, r := SplitRegistrationKey(key); d != c.device || r != c.reg {
			t.Errorf("SplitRegistrationKey(%q) = %q, %q", key, d, r)
		}
		if p := string(PartitionKey([]byte(key))); p != c.partition {
			t.Errorf("PartitionKey(%q) = %q, want %q", key, p, c.partition)
		}
	}
}
