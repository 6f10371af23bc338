package records

import "strings"

// RegistrationKeySeparator separates the device id from the registration id in the Kafka key of
// a push.registrations record. Producers hash only the part before it (kafkax), so every
// registration of a device lands in the device's partition.
const RegistrationKeySeparator = "/"

// RegistrationKey is the Kafka key of a registration record: "<device_id>/<registration_id>",
// or "<device_id>" for a device's v1 registration (empty registrationID).
func RegistrationKey(deviceID, registrationID string) string {
	if registrationID == "" {
		return deviceID
	}
	return deviceID + RegistrationKeySeparator + registrationID
}

// SplitRegistrationKey is the inverse of RegistrationKey.
func SplitRegistrationKey(key string) (deviceID, registrationID string) {
	deviceID, registrationID, _ = strings.Cut(key, RegistrationKeySeparator)
	return deviceID, registrationID
}

// PartitionKey is the part of a Kafka key that decides the partition: everything before the
// first RegistrationKeySeparator (the whole key when there is none).
func PartitionKey(key []byte) []byte {
	for i, c := range key {
		if c == RegistrationKeySeparator[0] {
			return key[:i]
		}
	}
	return key
}
