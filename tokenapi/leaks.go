package tokenapi

// The leak response: GitHub's secret-scanning partner endpoint. GitHub
// POSTs the tokens it found in public code as a JSON array, signed with one
// of its published ECDSA P-256 keys; every live token reported is revoked
// at once (revoked_reason "leaked") and the answer labels each report.

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/keystore"
)

// MaxLeakBodyBytes bounds a leak report's body; MaxLeakReports the reports
// in one body.
const (
	MaxLeakBodyBytes = 1 << 20
	MaxLeakReports   = 1000
)

// The labels of a leak answer.
const (
	LabelTruePositive  = "true_positive"
	LabelFalsePositive = "false_positive"
)

// LeakKeys are the public keys leak reports are signed with, by
// key_identifier.
type LeakKeys map[string]*ecdsa.PublicKey

// ParseLeakKeys reads GitHub's key document,
// {"public_keys":[{"key_identifier","key","is_current"}]}, each key a PEM
// "PUBLIC KEY" of ECDSA P-256. Every listed key verifies (a report signed
// just before a rotation still does); a document without a usable key is
// an error.
func ParseLeakKeys(data []byte) (LeakKeys, error) {
	var doc struct {
		PublicKeys []struct {
			ID  string `json:"key_identifier"`
			Key string `json:"key"`
		} `json:"public_keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a public_keys document: %v", err)
	}
	keys := make(LeakKeys, len(doc.PublicKeys))
	for i, k := range doc.PublicKeys {
		if k.ID == "" {
			return nil, fmt.Errorf("public_keys[%d]: empty key_identifier", i)
		}
		block, _ := pem.Decode([]byte(k.Key))
		if block == nil || block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("public_keys[%d]: key is not a PEM PUBLIC KEY", i)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		ec, ok := pub.(*ecdsa.PublicKey)
		if err != nil || !ok || ec.Curve.Params().Name != "P-256" {
			return nil, fmt.Errorf("public_keys[%d]: not an ECDSA P-256 public key", i)
		}
		keys[k.ID] = ec
	}
	if len(keys) == 0 {
		return nil, errors.New("no public key listed")
	}
	return keys, nil
}

// ErrUnknownLeakKey is VerifyLeak's answer for a key identifier the keys do
// not hold (the caller may refresh them and try again).
var ErrUnknownLeakKey = errors.New("unknown key identifier")

// VerifyLeak checks a leak report's signature: sig is the base64 of an
// ASN.1 ECDSA signature over SHA-256 of body, by the key keyID names.
func VerifyLeak(keys LeakKeys, keyID, sig string, body []byte) error {
	if keyID == "" || sig == "" {
		return errors.New("missing Github-Public-Key-Identifier or Github-Public-Key-Signature")
	}
	key, ok := keys[keyID]
	if !ok {
		return ErrUnknownLeakKey
	}
	der, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return errors.New("the signature is not base64")
	}
	digest := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(key, digest[:], der) {
		return errors.New("bad signature")
	}
	return nil
}

// LeakReport is one token GitHub found.
type LeakReport struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// LeakLabel is the answer about one report.
type LeakLabel struct {
	TokenRaw  string `json:"token_raw"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

// ParseLeakReports reads a leak body: a JSON array of at most
// MaxLeakReports objects whose token, type, url and source are strings
// (other fields are ignored: the format is GitHub's).
func ParseLeakReports(body []byte) ([]LeakReport, error) {
	if len(body) > MaxLeakBodyBytes {
		return nil, fmt.Errorf("body larger than %d bytes", MaxLeakBodyBytes)
	}
	var reports []LeakReport
	if len(body) == 0 || body[0] != '[' {
		return nil, errors.New("want a JSON array of {token, type, url, source}")
	}
	if err := json.Unmarshal(body, &reports); err != nil {
		return nil, errors.New("want a JSON array of {token, type, url, source}")
	}
	if len(reports) > MaxLeakReports {
		return nil, fmt.Errorf("more than %d reports", MaxLeakReports)
	}
	return reports, nil
}

// LeakOutcome is what was done about one report, for the log and metrics:
// never the token.
type LeakOutcome struct {
	// TokenID is the token the report named ("" when none).
	TokenID, Workspace string
	// Revoked: the token was live and is now revoked; a known token that
	// was already revoked or expired is a true positive, not revoked again.
	Revoked bool
	// URL and Source are where the token was found, as reported.
	URL, Source string
	Label       string
}

// RevokeLeaked revokes every live token among reports at now, recording
// revoked_reason "leaked", and returns the answer's labels and what was
// done. A report that is not a deplo token, or no token of the store, is a
// false positive (the store is not asked about a value that cannot be a
// token). A store failure stops and is returned: the sender retries, and
// revocations already made stand.
func RevokeLeaked(ctx context.Context, store keystore.HashRevoker, reports []LeakReport, now time.Time) ([]LeakLabel, []LeakOutcome, error) {
	labels := make([]LeakLabel, 0, len(reports))
	outcomes := make([]LeakOutcome, 0, len(reports))
	for _, r := range reports {
		o := LeakOutcome{URL: r.URL, Source: r.Source, Label: LabelFalsePositive}
		if apikey.Check(r.Token, false) == nil {
			rec, active, err := store.RevokeHash(ctx, keystore.Hash(apikey.Sum(r.Token)), now, keystore.RevokedLeaked)
			switch {
			case errors.Is(err, keystore.ErrNotFound):
			case err != nil:
				return nil, outcomes, err
			default:
				o.TokenID, o.Workspace, o.Revoked, o.Label = rec.ID, rec.Workspace, active, LabelTruePositive
			}
		}
		labels = append(labels, LeakLabel{TokenRaw: r.Token, TokenType: r.Type, Label: o.Label})
		outcomes = append(outcomes, o)
	}
	return labels, outcomes, nil
}

// LeakAnswer is the 200 answer to a verified report.
func LeakAnswer(labels []LeakLabel) Answer {
	return jsonAnswer(http.StatusOK, labels)
}

// ErrorAnswer is an error answer of the token API's form.
func ErrorAnswer(status int, code, description string) Answer {
	return errorAnswer(status, code, description)
}
