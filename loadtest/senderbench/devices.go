package senderbench

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/wakepush/wakepush/schemas/records"
)

// Device is one pre-registered iOS device and the one wake the benchmark sends it.
type Device struct {
	Token string // 64 hex digits, like a real APNs device token
	// DeviceID has the shape of ingest's (32 hex digits); the sender takes it from the
	// registration and never derives it, so its value does not matter.
	DeviceID       string
	RegistrationID string // 32 hex digits, as ingest's identity.NewRegistrationID
	EventID        string // the push event the wake covers (UUIDv7, as ingest's records.NewID)
	AcceptedAt     time.Time
	// WakeID has the shape of the coalescer's (a 36-character UUID); the sender only hashes
	// and forwards it.
	WakeID string
}

// MakeDevices returns n devices: tokens and registration ids derived from seed (the same
// seed gives the same devices), one event each accepted at now, and the wake covering it.
func MakeDevices(n int, seed int64, now time.Time) []Device {
	out := make([]Device, n)
	for i := range out {
		out[i] = MakeDevice(seed, i, now)
	}
	return out
}

// MakeDevice is device i of MakeDevices(n, seed, now) for any n > i (its event and wake ids
// are new on every call), for tools that generate more devices than they can hold.
func MakeDevice(seed int64, i int, now time.Time) Device {
	var buf [16]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(seed))
	binary.BigEndian.PutUint64(buf[8:], uint64(i))
	tok := sha256.Sum256(append([]byte("sender-bench token "), buf[:]...))
	dev := sha256.Sum256(append([]byte("sender-bench device "), buf[:]...))
	reg := sha256.Sum256(append([]byte("sender-bench registration "), buf[:]...))
	return Device{
		Token:          hex.EncodeToString(tok[:]),
		DeviceID:       hex.EncodeToString(dev[:16]),
		RegistrationID: hex.EncodeToString(reg[:16]),
		EventID:        records.NewID(),
		AcceptedAt:     now,
		WakeID:         records.NewID(),
	}
}

// WriteDevices writes what the bare apns2 loop needs of each device, one per line:
// token, device id, wake id, separated by spaces.
func WriteDevices(w io.Writer, devs []Device) error {
	bw := bufio.NewWriter(w)
	for _, d := range devs {
		if _, err := fmt.Fprintf(bw, "%s %s %s\n", d.Token, d.DeviceID, d.WakeID); err != nil {
			return fmt.Errorf("write devices: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write devices: %w", err)
	}
	return nil
}

// WriteDevicesFile is WriteDevices into a new file at path.
func WriteDevicesFile(path string, devs []Device) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("devices file: %w", err)
	}
	if err := WriteDevices(f, devs); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("devices file: %w", err)
	}
	return nil
}

// ReadDevices reads what WriteDevices wrote (Token, DeviceID and WakeID of each device).
func ReadDevices(r io.Reader) ([]Device, error) {
	var out []Device
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			return nil, fmt.Errorf("devices line %d: want token, device id and wake id, got %d fields", line, len(f))
		}
		out = append(out, Device{Token: f[0], DeviceID: f[1], WakeID: f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read devices: %w", err)
	}
	return out, nil
}
