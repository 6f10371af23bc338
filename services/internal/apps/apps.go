// Package apps reads the apps file (WAKEPUSH_APPS_FILE): the push apps a deployment serves, with
// their platform, coalescing interval and provider credentials. Every service reads the same file
// (a ConfigMap in Kubernetes; keys come from mounted Secrets).
package apps

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
)

// DefaultMinInterval is the coalescing interval for apps that set none. Reasoning in
// docs/architecture.md: iOS gives the woken extension ~30 s, Prosody already batches a
// hibernated session's pushes for 1 s, and Apple throttles devices that get many pushes, so one
// wake per 10 s covers a burst while the app is still fetching from the first.
const DefaultMinInterval = 10 * time.Second

// File is the apps file.
type File struct {
	Apps []App `yaml:"apps"`
}

// App is one push app.
type App struct {
	// ID names the app in registrations, nodes and records (usually the bundle id).
	ID       string   `yaml:"id"`
	Platform string   `yaml:"platform"` // apns or fcm
	Coalesce Coalesce `yaml:"coalesce"`
	APNs     *APNs    `yaml:"apns"`
	FCM      *FCM     `yaml:"fcm"`
}

// Coalesce configures the coalescer for an app.
type Coalesce struct {
	MinInterval time.Duration `yaml:"min_interval"`
}

// APNs configures delivery through Apple.
type APNs struct {
	Topic   string `yaml:"topic"`
	TeamID  string `yaml:"team_id"`
	KeyID   string `yaml:"key_id"`
	KeyFile string `yaml:"key_file"` // .p8 (PKCS#8 PEM, ES256)
	// CertificateFile selects certificate (TLS client certificate) authentication instead of
	// token auth: a PEM file with the certificate and its private key, or a .p12 (PKCS#12).
	// Exactly one of token auth (team_id, key_id, key_file) or certificate_file is set.
	CertificateFile string `yaml:"certificate_file"`
	// CertificatePasswordFile holds the password of the .p12 or of an encrypted PEM key
	// (trailing newline ignored). Optional.
	CertificatePasswordFile string `yaml:"certificate_password_file"`
	// Endpoint overrides the production/sandbox hosts (tests and the dev stack point at the mock).
	Endpoint string `yaml:"endpoint"`
	// CAFile adds a CA to trust (the mock's); empty means the system roots.
	CAFile string `yaml:"ca_file"`
	// PushType is alert (default: mutable-content wake for the notification service extension),
	// background or voip.
	PushType string `yaml:"push_type"`
}

// CertificateAuth reports whether the app authenticates to APNs with a client certificate
// (certificate_file) rather than a provider token.
func (a *APNs) CertificateAuth() bool { return a.CertificateFile != "" }

// FCM configures delivery through Firebase.
type FCM struct {
	ProjectID       string `yaml:"project_id"`
	CredentialsFile string `yaml:"credentials_file"` // service account JSON (token_uri is honoured)
	// Endpoint overrides https://fcm.googleapis.com (tests and the dev stack point at the mock).
	Endpoint string `yaml:"endpoint"`
	// CAFile adds a CA to trust for the endpoint and the token_uri (the mock's); empty means
	// the system roots. Optional.
	CAFile string `yaml:"ca_file"`
}

// Set is the validated apps of a deployment, by id.
type Set struct {
	byID map[string]*App
	list []*App
}

// Load reads and validates the apps file. Relative key/CA paths stay relative to the process's
// working directory.
func Load(path string) (*Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read apps file: %w", err)
	}
	return Parse(b, filepath.Base(path))
}

// Parse validates an apps file's content; name is used in errors.
func Parse(b []byte, name string) (*Set, error) {
	var f File
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("apps file %s: %w", name, err)
	}
	s := &Set{byID: map[string]*App{}}
	var errs []error
	for i := range f.Apps {
		a := &f.Apps[i]
		if err := a.validate(); err != nil {
			errs = append(errs, fmt.Errorf("app #%d (%q): %w", i+1, a.ID, err))
			continue
		}
		if _, dup := s.byID[a.ID]; dup {
			errs = append(errs, fmt.Errorf("app %q is listed twice", a.ID))
			continue
		}
		s.byID[a.ID] = a
		s.list = append(s.list, a)
	}
	if len(f.Apps) == 0 {
		errs = append(errs, errors.New("no apps listed"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("apps file %s: %w", name, err)
	}
	return s, nil
}

func (a *App) validate() error {
	var errs []error
	if a.ID == "" {
		errs = append(errs, errors.New("id is required"))
	}
	if a.Coalesce.MinInterval < 0 {
		errs = append(errs, errors.New("coalesce.min_interval must not be negative"))
	}
	if a.Coalesce.MinInterval == 0 {
		a.Coalesce.MinInterval = DefaultMinInterval
	}
	switch a.Platform {
	case "apns":
		if a.APNs == nil {
			errs = append(errs, errors.New("platform apns needs an apns section"))
			break
		}
		if a.APNs.Topic == "" {
			a.APNs.Topic = a.ID
		}
		tokenAuth := a.APNs.TeamID != "" || a.APNs.KeyID != "" || a.APNs.KeyFile != ""
		switch {
		case tokenAuth && a.APNs.CertificateFile != "":
			errs = append(errs, errors.New("apns: set either team_id, key_id and key_file (token auth) or certificate_file (certificate auth), not both"))
		case a.APNs.CertificateFile != "":
		case a.APNs.TeamID == "" || a.APNs.KeyID == "" || a.APNs.KeyFile == "":
			errs = append(errs, errors.New("apns needs team_id, key_id and key_file (token auth) or certificate_file (certificate auth)"))
		}
		if a.APNs.CertificatePasswordFile != "" && a.APNs.CertificateFile == "" {
			errs = append(errs, errors.New("apns.certificate_password_file needs certificate_file"))
		}
		switch a.APNs.PushType {
		case "":
			a.APNs.PushType = "alert"
		case "alert", "background", "voip":
		default:
			errs = append(errs, fmt.Errorf("apns.push_type %q: want alert, background or voip", a.APNs.PushType))
		}
	case "fcm":
		if a.FCM == nil || a.FCM.ProjectID == "" {
			errs = append(errs, errors.New("platform fcm needs fcm.project_id"))
		}
	default:
		errs = append(errs, fmt.Errorf("platform %q: want apns or fcm", a.Platform))
	}
	return errors.Join(errs...)
}

// Get returns the app with id.
func (s *Set) Get(id string) (*App, bool) {
	a, ok := s.byID[id]
	return a, ok
}

// All returns the apps in file order.
func (s *Set) All() []*App { return s.list }

// ProtoPlatform is the app's platform as a record enum.
func (a *App) ProtoPlatform() wakepushv1.Platform {
	switch a.Platform {
	case "apns":
		return wakepushv1.Platform_PLATFORM_APNS
	case "fcm":
		return wakepushv1.Platform_PLATFORM_FCM
	}
	return wakepushv1.Platform_PLATFORM_UNSPECIFIED
}
