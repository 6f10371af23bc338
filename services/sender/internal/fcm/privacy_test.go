package fcm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wakepush/wakepush/loadtest/mocks/fcmmock"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/sender/internal/fcm"
	"github.com/wakepush/wakepush/services/sender/internal/provider"
)

// An FCM answer that quotes the registration token (INVALID_ARGUMENT names the offending value)
// does not carry the token into Result.Err, which the engine logs.
func TestErrorsCarryNoToken(t *testing.T) {
	const token = "cFSECRETTOKEN0001:APA91bSECRETTOKENSECRETTOKENSECRETTOKEN"
	tests := []struct {
		name   string
		status int
		code   string
		action provider.Action
	}{
		{"invalid argument", http.StatusBadRequest, "INVALID_ARGUMENT", provider.Drop},
		{"unregistered", http.StatusNotFound, "UNREGISTERED", provider.Permanent},
		{"internal", http.StatusInternalServerError, "INTERNAL", provider.Retry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/token" {
					w.Header().Set("Content-Type", "application/json")
					io.WriteString(w, `{"access_token":"at","token_type":"Bearer","expires_in":3600}`)
					return
				}
				var req struct {
					Message struct {
						Token string `json:"token"`
					} `json:"message"`
				}
				json.NewDecoder(r.Body).Decode(&req)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				fmt.Fprintf(w, `{"error":{"code":%d,"message":"Invalid value at 'message.token' (TYPE_STRING), \"%s\"","status":"%s",`+
					`"details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"%s"}]}}`,
					tt.status, req.Message.Token, tt.code, tt.code)
			}))
			t.Cleanup(srv.Close)
			app := &apps.App{ID: "im.test.android", Platform: "fcm", FCM: &apps.FCM{ProjectID: project, CredentialsFile: serviceAccount(t, srv.URL+"/token"), Endpoint: srv.URL}}
			pool, err := fcm.New([]*apps.App{app}, fcm.DefaultOptions)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			res := pool.Send(context.Background(), target(app, token), &wakepushv1.Wake{Id: "w"})
			if res.Action != tt.action || res.Err == nil {
				t.Fatalf("%+v, want action %v with an error", res, tt.action)
			}
			if strings.Contains(res.Err.Error(), "SECRETTOKEN") {
				t.Errorf("Result.Err carries the token: %v", res.Err)
			}
			if !strings.Contains(res.Err.Error(), tt.code) {
				t.Errorf("Result.Err lost the provider's code: %v", res.Err)
			}
		})
	}
}

// serviceAccount writes a service account key whose token_uri is tokenURI.
func serviceAccount(t *testing.T, tokenURI string) string {
	t.Helper()
	mock, err := fcmmock.New(fcmmock.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer mock.Close()
	raw, err := mock.NewServiceAccount(project)
	if err != nil {
		t.Fatal(err)
	}
	var sa map[string]any
	if err := json.Unmarshal(raw, &sa); err != nil {
		t.Fatal(err)
	}
	sa["token_uri"] = tokenURI
	b, _ := json.Marshal(sa)
	p := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
