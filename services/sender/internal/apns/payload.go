package apns

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/sideshow/apns2"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/internal/apps"
)

// LocKey is the localization key of the generic alert text an alert wake carries. The app's
// Localizable.strings defines it (e.g. "New activity"); the notification service extension
// replaces or suppresses it after fetching from the XMPP server. Never message content.
const LocKey = "WAKEPUSH_NEW_ACTIVITY"

// Push types an app can configure (apps file apns.push_type).
const (
	PushTypeAlert      = "alert"
	PushTypeBackground = "background"
	PushTypeVoIP       = "voip"
)

// Expiry is how long APNs should keep trying to deliver a wake to an offline device
// (apns-expiration = now + Expiry).
type Expiry struct {
	// Alert applies to alert and background wakes. Default 1 h: APNs keeps only the newest
	// notification per device anyway, and a wake that reaches a phone within the hour still
	// makes the app fetch its pending messages; later, the user opening the app does that.
	Alert time.Duration
	// VoIP applies to VoIP (call) wakes. Default 30 s: a call that rings minutes late is
	// worse than none. (0 — "try once" — cannot be sent with apns2.)
	VoIP time.Duration
}

// DefaultExpiry is the documented default.
var DefaultExpiry = Expiry{Alert: time.Hour, VoIP: 30 * time.Second}

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

type backgroundPayload struct {
	APS    backgroundAPS `json:"aps"`
	WakeID string        `json:"wake_id"`
}

type backgroundAPS struct {
	ContentAvailable int `json:"content-available"`
}

type voipPayload struct {
	WakeID string `json:"wake_id"`
	Urgent bool   `json:"urgent"`
}

// Notification builds the APNs request for a wake to a device of app at time now. The payload
// only names the wake; the extension fetches everything else from the XMPP server.
//
//   - alert (default): apns-push-type alert, priority 10, a generic localizable alert with
//     mutable-content 1 so the notification service extension runs (and, with the filtering
//     entitlement, may hide it).
//   - background: content-available 1, priority 5 (10 is an APNs error). Apple throttles these
//     to a few per hour, so it is an option, not the default.
//   - voip: only for urgent wakes (calls) of apps configured voip: topic + ".voip", priority
//     10. PushKit must ring CallKit, so non-urgent wakes of such an app go out as alert wakes.
func Notification(app *apps.App, token string, w *wakepushv1.Wake, exp Expiry, now time.Time) (*apns2.Notification, error) {
	n := &apns2.Notification{
		ApnsID:      APNsID(w.GetId()),
		CollapseID:  CollapseID(w.GetDeviceId()),
		DeviceToken: token,
		Topic:       app.APNs.Topic,
	}
	var payload any
	switch pushType(app, w) {
	case PushTypeVoIP:
		n.Topic += ".voip"
		n.PushType = apns2.PushTypeVOIP
		n.Priority = apns2.PriorityHigh
		n.Expiration = now.Add(exp.VoIP)
		// A call replaces nothing on the device: no collapse id.
		n.CollapseID = ""
		payload = voipPayload{WakeID: w.GetId(), Urgent: true}
	case PushTypeBackground:
		n.PushType = apns2.PushTypeBackground
		n.Priority = apns2.PriorityLow
		n.Expiration = now.Add(exp.Alert)
		payload = backgroundPayload{APS: backgroundAPS{ContentAvailable: 1}, WakeID: w.GetId()}
	default:
		n.PushType = apns2.PushTypeAlert
		n.Priority = apns2.PriorityHigh
		n.Expiration = now.Add(exp.Alert)
		payload = alertPayload{APS: alertAPS{Alert: alertText{LocKey: LocKey}, MutableContent: 1}, WakeID: w.GetId()}
	}
	b, err := marshalPayload(payload)
	if err != nil {
		return nil, err
	}
	n.Payload = b
	return n, nil
}

// marshalPayload is json.Marshal(payload), byte for byte, without reflection for the payloads
// whose wake id needs no escaping (every id wakepush makes): the payload's fixed parts around the
// id. json.Marshal's reflection was ~2 % of the sender's CPU per push. FuzzMarshalPayload holds
// it to json.Marshal.
func marshalPayload(payload any) ([]byte, error) {
	var id, prefix, suffix string
	switch p := payload.(type) {
	case alertPayload:
		id, prefix, suffix = p.WakeID, `{"aps":{"alert":{"loc-key":"`+LocKey+`"},"mutable-content":1},"wake_id":"`, `"}`
		if p.APS != (alertAPS{Alert: alertText{LocKey: LocKey}, MutableContent: 1}) {
			return json.Marshal(payload)
		}
	case backgroundPayload:
		id, prefix, suffix = p.WakeID, `{"aps":{"content-available":1},"wake_id":"`, `"}`
		if p.APS.ContentAvailable != 1 {
			return json.Marshal(payload)
		}
	case voipPayload:
		id, prefix, suffix = p.WakeID, `{"wake_id":"`, `","urgent":true}`
		if !p.Urgent {
			return json.Marshal(payload)
		}
	default:
		return json.Marshal(payload)
	}
	for i := range len(id) {
		// What json.Marshal writes as it is: printable ASCII other than '"', '\\' and the
		// HTML-escaped '<', '>', '&'.
		if c := id[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return json.Marshal(payload)
		}
	}
	b := make([]byte, 0, len(prefix)+len(id)+len(suffix))
	return append(append(append(b, prefix...), id...), suffix...), nil
}

func pushType(app *apps.App, w *wakepushv1.Wake) string {
	switch app.APNs.PushType {
	case PushTypeVoIP:
		if w.GetUrgent() {
			return PushTypeVoIP
		}
		return PushTypeAlert
	case PushTypeBackground:
		return PushTypeBackground
	}
	return PushTypeAlert
}

// wakeIDSpace is the UUID namespace for apns-ids derived from wake ids that are not UUIDs.
var wakeIDSpace = uuid.MustParse("0b0e5f53-6b7e-4c8a-9a57-1f3c2f6d8a41")

// APNsID is the apns-id for a wake: the wake id itself when it is a UUID (lowercase, as APNs
// echoes it), else a name-based UUID (v5) of it. Every attempt of a wake carries the same
// apns-id, so Apple's logs, the mock's and our Delivery records line up.
func APNsID(wakeID string) string {
	if u, err := uuid.Parse(wakeID); err == nil {
		return u.String()
	}
	return uuid.NewSHA1(wakeIDSpace, []byte(wakeID)).String()
}

// CollapseID is the apns-collapse-id of a device's wakes: stable per device (so a phone that was
// offline shows one "new activity" notification, not one per wake), 35 bytes (limit 64), and
// not the device id itself.
func CollapseID(deviceID string) string {
	sum := sha256.Sum256([]byte(deviceID))
	return "wp-" + hex.EncodeToString(sum[:16])
}
