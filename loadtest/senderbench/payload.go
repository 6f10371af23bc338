package senderbench

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/sideshow/apns2"
)

// What the sender sends for an ordinary (non-urgent) wake of an app with the default push type
// (alert), services/sender/internal/apns/payload.go and its README's "APNs requests": the
// benchmark's bare apns2 loop sends exactly this, so the two targets put the same bytes on the
// wire. That package is internal to the services module, so this is a copy; the smoke test
// checks it against what the APNs mock received from the sender binary.
const (
	// LocKey is the localization key of the generic alert text.
	LocKey = "WAKEPUSH_NEW_ACTIVITY"
	// AlertExpiry is the sender's default apns-expiration of alert wakes (now + 1 h).
	AlertExpiry = time.Hour
)

type alertPayload struct {
	APS    alertAPS `json:"aps"`
	WakeID string   `json:"wake_id"`
}

type alertAPS struct {
	Alert          alertText `json:"alert"`
	MutableContent int       `json:"mutable-content"`
}

type alertText struct {
	LocKey string `json:"loc-key"`
}

// Notification is the APNs request the sender makes for a wake of an alert app: push type
// alert, priority 10, apns-expiration now + AlertExpiry, a collapse id per device, the wake id
// as apns-id (or a name-based UUID of it) and the generic alert payload naming the wake.
func Notification(topic, token, deviceID, wakeID string, now time.Time) (*apns2.Notification, error) {
	b, err := json.Marshal(alertPayload{APS: alertAPS{Alert: alertText{LocKey: LocKey}, MutableContent: 1}, WakeID: wakeID})
	if err != nil {
		return nil, fmt.Errorf("payload of wake %s: %w", wakeID, err)
	}
	return &apns2.Notification{
		ApnsID:      APNsID(wakeID),
		CollapseID:  CollapseID(deviceID),
		DeviceToken: token,
		Topic:       topic,
		PushType:    apns2.PushTypeAlert,
		Priority:    apns2.PriorityHigh,
		Expiration:  now.Add(AlertExpiry),
		Payload:     b,
	}, nil
}

// wakeIDSpace is the sender's UUID namespace for apns-ids of wake ids that are not UUIDs.
var wakeIDSpace = uuid.MustParse("0b0e5f53-6b7e-4c8a-9a57-1f3c2f6d8a41")

// APNsID is the sender's apns-id of a wake: the wake id when it is a UUID (lowercase), else a
// name-based UUID (v5) of it.
func APNsID(wakeID string) string {
	if u, err := uuid.Parse(wakeID); err == nil {
		return u.String()
	}
	return uuid.NewSHA1(wakeIDSpace, []byte(wakeID)).String()
}

// CollapseID is the sender's apns-collapse-id of a device: "wp-" and 32 hex digits of
// SHA-256(device id).
func CollapseID(deviceID string) string {
	sum := sha256.Sum256([]byte(deviceID))
	return "wp-" + hex.EncodeToString(sum[:16])
}
