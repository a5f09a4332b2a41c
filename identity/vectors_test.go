package identity

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

type vectorKey struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

func (k vectorKey) key() Key { return Key{ID: k.ID, Secret: []byte(k.Secret)} }

type vector struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Key         vectorKey         `json:"key"`
	TS          int64             `json:"ts"`
	Method      string            `json:"method"`
	Path        string            `json:"path"`
	Headers     map[string]string `json:"headers"`
	Canonical   string            `json:"canonical"`
	Signature   string            `json:"signature"`
}

type refusalVector struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Keys        []vectorKey       `json:"keys"`
	Now         int64             `json:"now"`
	Method      string            `json:"method"`
	Path        string            `json:"path"`
	Headers     map[string]string `json:"headers"`
	Error       string            `json:"error"`
}

type vectorFile struct {
	Description string          `json:"description"`
	Prefix      string          `json:"prefix"`
	MaxAge      int             `json:"max_age"`
	MaxSkew     int             `json:"max_skew"`
	Vectors     []vector        `json:"vectors"`
	Refusals    []refusalVector `json:"refusals"`
}

const vectorsPath = "testdata/vectors.json"

func loadVectors(t *testing.T) (vectorFile, []byte) {
	t.Helper()
	b, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var vf vectorFile
	if err := dec.Decode(&vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Vectors) < 5 || len(vf.Refusals) < 5 {
		t.Fatalf("%d vectors and %d refusals: too few", len(vf.Vectors), len(vf.Refusals))
	}
	if vf.Prefix != DefaultPrefix || time.Duration(vf.MaxAge)*time.Second != DefaultMaxAge || time.Duration(vf.MaxSkew)*time.Second != DefaultMaxSkew {
		t.Fatalf("vector file parameters %q %d %d differ from the package defaults", vf.Prefix, vf.MaxAge, vf.MaxSkew)
	}
	return vf, b
}

var sentinels = map[string]error{
	"ErrNoIdentity": ErrNoIdentity, "ErrNoSignature": ErrNoSignature, "ErrBadSignature": ErrBadSignature,
	"ErrUnknownKey": ErrUnknownKey, "ErrExpired": ErrExpired, "ErrMalformed": ErrMalformed,
}

func TestVectors(t *testing.T) {
	vf, _ := loadVectors(t)
	names := map[string]bool{}
	for _, v := range vf.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			if names[v.Name] {
				t.Fatal("duplicate name")
			}
			names[v.Name] = true
			now := time.Unix(v.TS, 0)

			// The MAC, computed independently of the package.
			mac := hmac.New(sha256.New, []byte(v.Key.Secret))
			mac.Write([]byte(v.Canonical))
			if !strings.HasSuffix(v.Signature, " sig="+base64.RawURLEncoding.EncodeToString(mac.Sum(nil))) {
				t.Fatal("signature is not the HMAC-SHA256 of canonical")
			}
			if strings.Count(v.Canonical, "\n") != 9 {
				t.Fatalf("canonical %q is not ten lines", v.Canonical)
			}

			// Verify the request as an upstream receives it.
			r := httptest.NewRequest(v.Method, v.Path, nil)
			for n, x := range v.Headers {
				r.Header[n] = []string{x}
			}
			id, err := FromRequest(r)
			if err != nil {
				t.Fatal(err)
			}
			r.Header["X-Deplo-Signature"] = []string{v.Signature}
			got, err := mustVerifier(t, "", v.Key.key()).Verify(r, now)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got != id {
				t.Fatalf("verified %+v, headers say %+v", got, id)
			}

			// The package produces the canonical string and the signature.
			c, err := Canonical(v.Key.ID, v.TS, v.Method, v.Path, id)
			if err != nil || c != v.Canonical {
				t.Fatalf("Canonical = %q, %v\nwant        %q", c, err, v.Canonical)
			}
			s := mustSigner(t, "", v.Key.key())
			if sig, err := s.Sign(v.Method, v.Path, id, now); err != nil || sig != v.Signature {
				t.Fatalf("Sign = %q, %v; want %q", sig, err, v.Signature)
			}
			r.Header.Del("X-Deplo-Signature")
			if err := s.SignRequest(r, now); err != nil || r.Header.Get("X-Deplo-Signature") != v.Signature {
				t.Fatalf("SignRequest set %q, %v; want %q", r.Header.Get("X-Deplo-Signature"), err, v.Signature)
			}
			// The headers are the ones the gateway writes for that identity.
			h := httptest.NewRequest("GET", "/", nil).Header
			(Parser{}).SetHeaders(h, id)
			if len(h) != len(v.Headers) {
				t.Fatalf("vector headers %v, gateway would write %v", v.Headers, h)
			}
		})
	}
	for _, rv := range vf.Refusals {
		t.Run("refusal/"+rv.Name, func(t *testing.T) {
			want, ok := sentinels[rv.Error]
			if !ok {
				t.Fatalf("unknown error %q", rv.Error)
			}
			var keys []Key
			for _, k := range rv.Keys {
				keys = append(keys, k.key())
			}
			r := httptest.NewRequest(rv.Method, rv.Path, nil)
			for n, x := range rv.Headers {
				r.Header[n] = []string{x}
			}
			if _, err := mustVerifier(t, "", keys...).Verify(r, time.Unix(rv.Now, 0)); !errors.Is(err, want) {
				t.Fatalf("err = %v, want %v", err, want)
			}
		})
	}
}

// readmeBlock is a fenced block of README.md introduced by a marker comment
// <!-- kind: name -->.
type readmeBlock struct {
	kind, name, lang, body string
}

func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []readmeBlock
	sc := bufio.NewScanner(bytes.NewReader(b))
	var cur *readmeBlock
	inFence := false
	var body []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case inFence && line == "```":
			inFence = false
			if cur != nil {
				cur.body = strings.Join(body, "\n")
				blocks = append(blocks, *cur)
				cur = nil
			}
		case inFence:
			body = append(body, line)
		case strings.HasPrefix(line, "```"):
			inFence, body = true, nil
			if cur != nil {
				cur.lang = strings.TrimPrefix(line, "```")
			}
		case strings.HasPrefix(line, "<!-- ") && strings.HasSuffix(line, " -->"):
			kind, name, ok := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(line, "<!-- "), " -->"), ": ")
			if !ok {
				t.Fatalf("README marker %q", line)
			}
			cur = &readmeBlock{kind: kind, name: name}
		case cur != nil && strings.TrimSpace(line) != "":
			t.Fatalf("README marker %s: %s is not followed by a fenced block", cur.kind, cur.name)
		}
	}
	if inFence || cur != nil {
		t.Fatal("README: unterminated block")
	}
	return blocks
}

func readmeSnippet(t *testing.T, lang string) string {
	t.Helper()
	for _, b := range readmeBlocks(t) {
		if b.kind == "snippet" && b.name == lang {
			return b.body + "\n"
		}
	}
	t.Fatalf("README has no %s snippet", lang)
	return ""
}

// TestREADMEVectors keeps the vectors shown in README.md equal to the
// vectors file.
func TestREADMEVectors(t *testing.T) {
	_, raw := loadVectors(t)
	var file struct {
		Vectors []map[string]any `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	byName := map[string]map[string]any{}
	for _, v := range file.Vectors {
		byName[v["name"].(string)] = v
	}
	var nv, nc int
	for _, b := range readmeBlocks(t) {
		switch b.kind {
		case "vector":
			nv++
			var got map[string]any
			if err := json.Unmarshal([]byte(b.body), &got); err != nil {
				t.Fatalf("README vector %s: %v", b.name, err)
			}
			if got["name"] != b.name {
				t.Fatalf("README vector marked %s is named %v", b.name, got["name"])
			}
			if !reflect.DeepEqual(got, byName[b.name]) {
				t.Errorf("README vector %s differs from %s:\n%v\n%v", b.name, vectorsPath, got, byName[b.name])
			}
		case "canonical":
			nc++
			v, ok := byName[b.name]
			if !ok || b.body != v["canonical"] {
				t.Errorf("README canonical string %s differs from %s:\n%q", b.name, vectorsPath, b.body)
			}
		case "snippet":
		default:
			t.Errorf("README marker kind %q", b.kind)
		}
	}
	if nv == 0 || nc == 0 {
		t.Fatalf("README shows %d vectors and %d canonical strings; want at least one of each", nv, nc)
	}
}

// TestDocCanonicalExample keeps the example in the package documentation
// equal to the vector it names.
func TestDocCanonicalExample(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	doc := f.Doc.Text()
	vf, _ := loadVectors(t)
	for _, v := range vf.Vectors {
		if !strings.Contains(doc, "(test vector "+v.Name) {
			continue
		}
		lines := strings.Split(v.Canonical, "\n")
		for i, l := range lines {
			if l != "" {
				lines[i] = "\t" + l
			}
		}
		if !strings.Contains(doc, strings.Join(lines, "\n")+"\n\n") {
			t.Fatalf("package doc example differs from vector %s", v.Name)
		}
		return
	}
	t.Fatal("package doc shows no test vector")
}

// snippetVectors writes the vectors file plus a "fresh" vector signed now
// (for the snippets' default clock) to a temporary file.
func snippetVectors(t *testing.T) string {
	t.Helper()
	_, raw := loadVectors(t)
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	s := mustSigner(t, "", testKey1)
	r := signedRequest(t, s, idProject, "POST", "/v1/fresh%2Fpath", time.Now())
	h := map[string]string{}
	for n, vs := range r.Header {
		h[n] = vs[0]
	}
	data["fresh"] = map[string]any{
		"key": map[string]string{"id": testKey1.ID, "secret": string(testKey1.Secret)}, "method": "POST", "path": "/v1/fresh%2Fpath", "headers": h,
	}
	b, _ := json.Marshal(data)
	p := filepath.Join(t.TempDir(), "vectors.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runSnippet(t *testing.T, tool string, versionArg string, file string, src string) {
	t.Helper()
	bin, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not on PATH: README snippet not run", tool)
	}
	if out, err := exec.Command(bin, versionArg).CombinedOutput(); err != nil {
		t.Skipf("%s does not run (%v: %s): README snippet not run", tool, err, out)
	}
	dir := t.TempDir()
	prog := filepath.Join(dir, file)
	if err := os.WriteFile(prog, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, prog, snippetVectors(t)).CombinedOutput()
	t.Logf("%s:\n%s", tool, out)
	if err != nil {
		t.Fatalf("%s snippet failed: %v", tool, err)
	}
	if !bytes.Contains(out, []byte("all ok")) {
		t.Fatal("harness did not finish")
	}
}

const pythonHarness = `
import json, sys

def raw(s):  # header bytes as a WSGI server hands them over
    return s.encode("utf-8").decode("latin-1")

data = json.load(open(sys.argv[1], encoding="utf-8"))
fails = 0
for v in data["vectors"] + [dict(data["fresh"], name="fresh", signature=None, ts=None)]:
    headers = {k: raw(x) for k, x in v["headers"].items()}
    if v["signature"]:
        headers["X-Deplo-Signature"] = v["signature"]
    keys = {v["key"]["id"]: v["key"]["secret"].encode("utf-8")}
    try:
        got = verify(headers, v["method"], v["path"], keys, now=v["ts"]) if v["ts"] else verify(headers, v["method"], v["path"], keys)
    except Exception as e:
        print("FAIL", v["name"], "refused:", repr(e)); fails += 1; continue
    want = {f.lower(): raw(v["headers"].get("X-Deplo-" + f, "")) for f in FIELDS}
    if got != want:
        print("FAIL", v["name"], got, want); fails += 1
    else:
        print("ok", v["name"])
    if v["ts"]:
        for now in (v["ts"] - 6, v["ts"] + 31):
            try:
                verify(headers, v["method"], v["path"], keys, now=now)
                print("FAIL", v["name"], "accepted at", now); fails += 1
            except PermissionError:
                pass
for r in data["refusals"]:
    headers = {k: raw(x) for k, x in r["headers"].items()}
    keys = {k["id"]: k["secret"].encode("utf-8") for k in r["keys"]}
    try:
        verify(headers, r["method"], r["path"], keys, now=r["now"])
        print("FAIL", r["name"], "accepted"); fails += 1
    except PermissionError:
        print("ok refused", r["name"])
if fails:
    sys.exit(1)
print("all ok")
`

func TestREADMEPython(t *testing.T) {
	runSnippet(t, "python3", "--version", "verify.py", readmeSnippet(t, "python")+pythonHarness)
}

const nodeHarness = `
const fs = require("node:fs");
const raw = (s) => Buffer.from(s, "utf8").toString("latin1"); // as Node hands header bytes over
const lower = (h) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), raw(v)]));
const data = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
let fails = 0;
for (const v of [...data.vectors, { ...data.fresh, name: "fresh" }]) {
  const headers = lower(v.headers);
  if (v.signature) headers["x-deplo-signature"] = v.signature;
  const keys = new Map([[v.key.id, v.key.secret]]);
  let got;
  try {
    got = v.ts ? verify(headers, v.method, v.path, keys, { now: v.ts }) : verify(headers, v.method, v.path, keys);
  } catch (e) {
    console.log("FAIL", v.name, "refused:", e.message); fails++; continue;
  }
  const want = Object.fromEntries(["Auth", "Subject", "Workspace", "Project", "Scopes"].map((f) => [f.toLowerCase(), raw(v.headers["X-Deplo-" + f] ?? "")]));
  if (JSON.stringify(got) !== JSON.stringify(want)) { console.log("FAIL", v.name, got, want); fails++; } else console.log("ok", v.name);
  if (v.ts) for (const now of [v.ts - 6, v.ts + 31]) {
    try { verify(headers, v.method, v.path, keys, { now }); console.log("FAIL", v.name, "accepted at", now); fails++; } catch (e) {}
  }
}
for (const r of data.refusals) {
  const keys = new Map(r.keys.map((k) => [k.id, Buffer.from(k.secret, "utf8")]));
  try { verify(lower(r.headers), r.method, r.path, keys, { now: r.now }); console.log("FAIL", r.name, "accepted"); fails++; }
  catch (e) { console.log("ok refused", r.name); }
}
if (fails) process.exit(1);
console.log("all ok");
`

func TestREADMENode(t *testing.T) {
	runSnippet(t, "node", "--version", "verify.js", readmeSnippet(t, "node")+nodeHarness)
}

// TestREADMEGo type-checks the Go snippet of README.md with go vet.
func TestREADMEGo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go vet")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	// Inside the module, so that the snippet's import resolves; under
	// testdata, so that ./... never sees it.
	dir, err := os.MkdirTemp("testdata", "readme-go-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(readmeSnippet(t, "go")), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, goTool, "vet", "./"+filepath.ToSlash(dir)).CombinedOutput(); err != nil {
		t.Fatalf("go vet of the README snippet: %v\n%s", err, out)
	}
}
