package senderbench

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/wakepush/wakepush/schemas/records"
)

// Device is one pre-registered iOS device and the one wake the benchmark sends it.
type Device struct {
	Token          string // 64 hex digits, like a real APNs device token
	DeviceID       string // what ingest derives from (app, platform, token)
	RegistrationID string // 32 hex digits, as ingest's identity.NewRegistrationID
	EventID        string // the push event the wake covers (UUIDv7, as ingest's records.NewID)
	AcceptedAt     time.Time
	WakeID         string // what the coalescer derives for a leading wake of that one event
}

// deviceIDKey stands in for ingest's WAKEPUSH_DEVICE_ID_KEY (the load test's key).
var deviceIDKey = []byte(strings.Repeat("\x09", 32))

// DeviceID is ingest's device id (services/ingest/identity Keys.DeviceID): the first 16 bytes
// of HMAC-SHA256(key, app ‖ 0 ‖ platform ‖ 0 ‖ token), in hex.
func DeviceID(app, platform, token string) string {
	m := hmac.New(sha256.New, deviceIDKey)
	m.Write([]byte(app))
	m.Write([]byte{0})
	m.Write([]byte(platform))
	m.Write([]byte{0})
	m.Write([]byte(token))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// WakeID is the coalescer's wake id (services/coalescer/coalesce.WakeID): a UUIDv8 holding the
// first event's acceptance time in milliseconds and a SHA-256 of the device, the first and last
// covered event ids and the event count. Copied, not imported: the loadtest module does not
// depend on the services module.
func WakeID(device, firstID, lastID string, count int, firstAt int64) string {
	h := sha256.New()
	var n [8]byte
	for _, s := range [...]string{device, firstID, lastID} {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	h.Write(strconv.AppendInt(n[:0], int64(count), 10))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])

	var u uuid.UUID
	ms := uint64(firstAt / 1e6)
	if firstAt < 0 {
		ms = 0
	}
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	copy(u[6:], sum[:10])
	u[6] = 0x80 | u[6]&0x0f // version 8
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant
	return u.String()
}

// MakeDevices returns n devices of app: tokens and registration ids derived from seed (the same
// seed gives the same devices), one event each accepted at now, and the wake covering it.
func MakeDevices(n int, seed int64, app string, now time.Time) []Device {
	out := make([]Device, n)
	var buf [16]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(seed))
	for i := range out {
		binary.BigEndian.PutUint64(buf[8:], uint64(i))
		tok := sha256.Sum256(append([]byte("sender-bench token "), buf[:]...))
		reg := sha256.Sum256(append([]byte("sender-bench registration "), buf[:]...))
		d := &out[i]
		d.Token = hex.EncodeToString(tok[:])
		d.DeviceID = DeviceID(app, "apns", d.Token)
		d.RegistrationID = hex.EncodeToString(reg[:16])
		d.EventID = records.NewID()
		d.AcceptedAt = now
		d.WakeID = WakeID(d.DeviceID, d.EventID, d.EventID, 1, now.UnixNano())
	}
	return out
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
