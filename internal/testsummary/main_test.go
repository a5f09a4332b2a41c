package main

import (
	"bytes"
	"strings"
	"testing"
)

// run is `go test -json` output of a run with a pass, a skip with a
// reason, a skipped subtest, a failure and a package line.
const run = `{"Action":"start","Package":"m/a"}
{"Action":"run","Package":"m/a","Test":"TestOK"}
{"Action":"output","Package":"m/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"m/a","Test":"TestOK","Output":"--- PASS: TestOK (0.00s)\n"}
{"Action":"pass","Package":"m/a","Test":"TestOK"}
{"Action":"run","Package":"m/a","Test":"TestNginx"}
{"Action":"output","Package":"m/a","Test":"TestNginx","Output":"=== RUN   TestNginx\n"}
{"Action":"output","Package":"m/a","Test":"TestNginx","Output":"    sidecar_test.go:42: nginx not found: install Debian's nginx-light\n"}
{"Action":"output","Package":"m/a","Test":"TestNginx","Output":"--- SKIP: TestNginx (0.00s)\n"}
{"Action":"skip","Package":"m/a","Test":"TestNginx"}
{"Action":"run","Package":"m/a","Test":"TestStores/postgres"}
{"Action":"output","Package":"m/a","Test":"TestStores/postgres","Output":"    --- SKIP: TestStores/postgres (0.00s)\n"}
{"Action":"output","Package":"m/a","Test":"TestStores/postgres","Output":"        helpers_test.go:9: DEPLO_AUTH_TEST_POSTGRES is not set\n"}
{"Action":"skip","Package":"m/a","Test":"TestStores/postgres"}
{"Action":"output","Package":"m/a","Output":"PASS\n"}
{"Action":"output","Package":"m/a","Output":"ok  \tm/a\t0.1s\n"}
{"Action":"pass","Package":"m/a"}
{"Action":"run","Package":"m/b","Test":"TestBroken"}
{"Action":"output","Package":"m/b","Test":"TestBroken","Output":"=== RUN   TestBroken\n"}
{"Action":"output","Package":"m/b","Test":"TestBroken","Output":"    b_test.go:7: want 1, got 2\n"}
{"Action":"output","Package":"m/b","Test":"TestBroken","Output":"--- FAIL: TestBroken (0.00s)\n"}
{"Action":"fail","Package":"m/b","Test":"TestBroken"}
{"Action":"output","Package":"m/b","Output":"FAIL\tm/b\t0.1s\n"}
{"Action":"fail","Package":"m/b"}
`

func TestSummarize(t *testing.T) {
	var out bytes.Buffer
	s, err := summarize(strings.NewReader(run), &out)
	if err != nil {
		t.Fatal(err)
	}
	if !s.failed || s.results != 6 {
		t.Errorf("failed = %v, results = %d; want true, 6", s.failed, s.results)
	}
	got := out.String()
	for _, want := range []string{"ok  \tm/a\t0.1s\n", "b_test.go:7: want 1, got 2\n--- FAIL: TestBroken", "FAIL\tm/b"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"TestOK", "PASS\n", "nginx not found"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("output has %q (only failures and package lines belong there):\n%s", unwanted, got)
		}
	}
	var list bytes.Buffer
	writeSkips(&list, s.skips)
	want := "2 tests skipped (a green run did not run them):\n" +
		"  m/a TestNginx: nginx not found: install Debian's nginx-light\n" +
		"  m/a TestStores/postgres: DEPLO_AUTH_TEST_POSTGRES is not set\n"
	if list.String() != want {
		t.Errorf("skip list =\n%s\nwant\n%s", list.String(), want)
	}
}

func TestSummarizeGreen(t *testing.T) {
	green := `{"Action":"pass","Package":"m/a","Test":"TestOK"}` + "\n" + `{"Action":"pass","Package":"m/a"}` + "\n"
	s, err := summarize(strings.NewReader(green), &bytes.Buffer{})
	if err != nil || s.failed || s.results != 2 || len(s.skips) != 0 {
		t.Errorf("summarize(green) = %+v, %v", s, err)
	}
	var list bytes.Buffer
	writeSkips(&list, nil)
	if list.String() != "no test was skipped\n" {
		t.Errorf("writeSkips(nil) = %q", list.String())
	}
}

func TestSummarizeBuildFailure(t *testing.T) {
	in := `{"ImportPath":"m/c","Action":"build-output","Output":"c.go:3:1: syntax error\n"}
{"ImportPath":"m/c","Action":"build-fail"}
{"Action":"output","Package":"m/c","Output":"FAIL\tm/c [build failed]\n"}
{"Action":"fail","Package":"m/c"}
`
	var out bytes.Buffer
	s, err := summarize(strings.NewReader(in), &out)
	if err != nil || !s.failed {
		t.Fatalf("summarize(build failure) = %+v, %v", s, err)
	}
	if !strings.Contains(out.String(), "syntax error") || !strings.Contains(out.String(), "[build failed]") {
		t.Errorf("output lacks the build error:\n%s", out.String())
	}
}
