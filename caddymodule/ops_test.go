package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/deplo-sh/deplo-auth/decide"
	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/policy"
	"github.com/deplo-sh/deplo-auth/tokencache"
)

// The ops/ artefacts (Grafana dashboard, Prometheus alerts, their README)
// are checked here against the metrics the module really exports, so that
// renaming a metric or a label value breaks a test instead of a dashboard.

const (
	opsDashboardPath = "../ops/grafana/deplo-auth.json"
	opsAlertsPath    = "../ops/prometheus/alerts.yml"
	opsReadmePath    = "../ops/README.md"
	opsDatasourceUID = "${DS_PROMETHEUS}"
)

// opsMetric is one exported metric family.
type opsMetric struct {
	labels    []string // variable labels
	histogram bool     // exposed as _bucket, _sum and _count only
	summary   bool     // exposed as itself (quantiles), _sum and _count
}

// opsCatalog is what PromQL written for this module may refer to.
type opsCatalog struct {
	metrics map[string]opsMetric
	// values holds the valid values of a label, by metric ("" for any
	// metric carrying that label).
	values map[string]map[string][]string // label -> metric -> values
}

var (
	opsFqName     = regexp.MustCompile(`fqName: "([^"]*)"`)
	opsVarLabels  = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	opsNameInText = regexp.MustCompile(`deplo_auth_[A-Za-z0-9_]+`)
	opsPlainValue = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
)

// opsModuleLabels are the label names the module sets; a matcher on one of
// them must name a metric that has it. Other labels (instance, job, …) come
// from the scrape and are not checked.
var opsModuleLabels = []string{"method", "outcome", "reason", "result", "store", "source", "cache", "path", "jwks", "le", "quantile"}

// opsKnownCatalog reads the metric names and labels from allCollectors and
// the label values from the code that sets them.
func opsKnownCatalog(t *testing.T) *opsCatalog {
	t.Helper()
	c := &opsCatalog{metrics: make(map[string]opsMetric)}
	for _, coll := range allCollectors {
		hist, summ := false, false
		switch coll.(type) {
		case *prometheus.HistogramVec, prometheus.Histogram:
			hist = true
		case *prometheus.SummaryVec, prometheus.Summary:
			summ = true
		}
		ch := make(chan *prometheus.Desc, 16)
		go func() { coll.Describe(ch); close(ch) }()
		for d := range ch {
			s := d.String()
			m := opsFqName.FindStringSubmatch(s)
			if m == nil || m[1] == "" {
				t.Fatalf("cannot read fqName from %s", s)
			}
			var labels []string
			if v := opsVarLabels.FindStringSubmatch(s); v != nil && v[1] != "" {
				for l := range strings.SplitSeq(v[1], ",") {
					l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")")
					labels = append(labels, l)
				}
			}
			c.metrics[m[1]] = opsMetric{labels: labels, histogram: hist, summary: summ}
		}
	}
	if len(c.metrics) == 0 {
		t.Fatal("allCollectors describes no metric")
	}

	var methods []string
	for k := grant.KindNone; k <= grant.KindJWT; k++ {
		methods = append(methods, k.String())
	}
	reasons := append(slices.Clone(decide.Reasons()), policy.ReasonAllowed.String(), policy.ReasonPublic.String())
	var cacheResults []string
	for _, r := range []tokencache.Result{tokencache.Hit, tokencache.NegativeHit, tokencache.Miss} {
		cacheResults = append(cacheResults, r.String())
	}
	c.values = map[string]map[string][]string{
		"method":  {"": methods},
		"outcome": {"": {outcomeAllowed, outcomeDenied, outcomeError}},
		"reason":  {"": reasons},
		"result": {
			"deplo_auth_cache_lookups_total": cacheResults,
			// storeObserver's labels.
			"deplo_auth_store_requests_total": {"found", "not_found", "error"},
		},
		"store": {"": {"file", "postgres"}},
		// revocationObserver's sources and the admin purge.
		"source": {"": {"postgres", "postgres_resync", "admin_purge"}},
		"cache":  {"": {"api_key", "api_key_negative", "jwt"}},
	}
	c.values["result"]["deplo_auth_jwks_refreshes_total"] = []string{"success", "error"}
	c.values["result"]["deplo_auth_keyfile_reloads_total"] = []string{"success", "error"}
	return c
}

// resolve maps a series name to its metric family. ok is false for a name
// the module does not export (including a histogram named without one of
// its suffixes, which is no series at all).
func (c *opsCatalog) resolve(name string) (family string, m opsMetric, bucket, ok bool) {
	if m, ok := c.metrics[name]; ok {
		return name, m, false, !m.histogram
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suf)
		if !found {
			continue
		}
		m, ok := c.metrics[base]
		if !ok {
			continue
		}
		if m.histogram || (m.summary && suf != "_bucket") {
			return base, m, suf == "_bucket", true
		}
	}
	return "", opsMetric{}, false, false
}

// checkName reports a deplo_auth_ name that is not an exported series.
func (c *opsCatalog) checkName(name string) string {
	if !strings.HasPrefix(name, "deplo_auth_") {
		return ""
	}
	if _, _, _, ok := c.resolve(name); !ok {
		if m, exists := c.metrics[name]; exists && m.histogram {
			return fmt.Sprintf("histogram %s is only exported as %[1]s_bucket, %[1]s_sum and %[1]s_count", name)
		}
		return fmt.Sprintf("unknown metric %s (exported: %s)", name, strings.Join(c.names(), ", "))
	}
	return ""
}

func (c *opsCatalog) names() []string {
	out := make([]string, 0, len(c.metrics))
	for n := range c.metrics {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// opsToken is a PromQL token, as far as these checks need one.
type opsToken struct {
	kind byte // 'i' identifier, 's' string, 'n' number/duration, 'v' Grafana variable, 'o' operator/punctuation
	text string
}

// opsLex splits a PromQL expression (with Grafana's $variables) into tokens.
func opsLex(expr string) ([]opsToken, error) {
	var toks []opsToken
	isIdent := func(b byte, first bool) bool {
		return b == '_' || b == ':' || ('a' <= b && b <= 'z') || ('A' <= b && b <= 'Z') || (!first && '0' <= b && b <= '9')
	}
	for i := 0; i < len(expr); {
		b := expr[i]
		switch {
		case b == ' ' || b == '\t' || b == '\n' || b == '\r':
			i++
		case b == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case b == '"' || b == '\'' || b == '`':
			j := i + 1
			var sb strings.Builder
			for ; j < len(expr) && expr[j] != b; j++ {
				if expr[j] == '\\' && b != '`' && j+1 < len(expr) {
					j++
				}
				sb.WriteByte(expr[j])
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at offset %d", i)
			}
			toks = append(toks, opsToken{'s', sb.String()})
			i = j + 1
		case b == '$':
			j := i + 1
			if j < len(expr) && expr[j] == '{' {
				k := strings.IndexByte(expr[j:], '}')
				if k < 0 {
					return nil, fmt.Errorf("unterminated ${ at offset %d", i)
				}
				j += k + 1
			} else {
				for j < len(expr) && isIdent(expr[j], false) {
					j++
				}
			}
			toks = append(toks, opsToken{'v', expr[i:j]})
			i = j
		case isIdent(b, true):
			j := i
			for j < len(expr) && isIdent(expr[j], false) {
				j++
			}
			toks = append(toks, opsToken{'i', expr[i:j]})
			i = j
		case '0' <= b && b <= '9' || b == '.':
			j := i
			for j < len(expr) && (isIdent(expr[j], false) || expr[j] == '.') {
				j++
			}
			toks = append(toks, opsToken{'n', expr[i:j]})
			i = j
		default:
			if i+1 < len(expr) {
				switch two := expr[i : i+2]; two {
				case "=~", "!~", "!=", "==", ">=", "<=":
					toks = append(toks, opsToken{'o', two})
					i += 2
					continue
				}
			}
			toks = append(toks, opsToken{'o', string(b)})
			i++
		}
	}
	return toks, nil
}

// checkExpr returns the problems of one PromQL expression: unbalanced
// brackets, unknown deplo_auth_ metrics, module labels on a metric that
// lacks them, and label values the module never sets.
func (c *opsCatalog) checkExpr(expr string) []string {
	toks, err := opsLex(expr)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	var stack []string
	pairs := map[string]string{")": "(", "]": "[", "}": "{"}
	for _, tk := range toks {
		if tk.kind != 'o' {
			continue
		}
		switch tk.text {
		case "(", "[", "{":
			stack = append(stack, tk.text)
		case ")", "]", "}":
			if len(stack) == 0 || stack[len(stack)-1] != pairs[tk.text] {
				add("unbalanced %q", tk.text)
				return problems
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		add("unclosed %q", stack[len(stack)-1])
		return problems
	}

	for i, tk := range toks {
		if tk.kind == 'i' {
			if p := c.checkName(tk.text); p != "" {
				add("%s", p)
			}
		}
		if tk.kind != 'o' || tk.text != "{" {
			continue
		}
		// A selector: the metric name before the braces, if any.
		metric := ""
		if i > 0 && toks[i-1].kind == 'i' {
			metric = toks[i-1].text
		}
		j := i + 1
		type matcher struct{ label, op, value string }
		var ms []matcher
		for j < len(toks) && toks[j].text != "}" {
			switch {
			case toks[j].text == ",":
				j++
			case toks[j].kind == 's' && j+1 < len(toks) && (toks[j+1].text == "," || toks[j+1].text == "}"):
				metric = toks[j].text // {"metric_name", …}
				if p := c.checkName(metric); p != "" {
					add("%s", p)
				}
				j++
			case j+2 < len(toks) && (toks[j].kind == 'i' || toks[j].kind == 's') && toks[j+2].kind == 's' &&
				slices.Contains([]string{"=", "!=", "=~", "!~"}, toks[j+1].text):
				ms = append(ms, matcher{toks[j].text, toks[j+1].text, toks[j+2].text})
				j += 3
			default:
				add("cannot read label matcher at %q in %q", toks[j].text, expr)
				return problems
			}
		}
		for _, m := range ms {
			if m.label == "__name__" && (m.op == "=" || m.op == "!=") {
				metric = m.value
				if p := c.checkName(metric); p != "" {
					add("%s", p)
				}
			}
		}
		for _, m := range ms {
			problems = append(problems, c.checkMatcher(metric, m.label, m.op, m.value)...)
		}
	}
	return problems
}

// checkMatcher checks one label matcher of a selector of metric ("" if the
// selector names none).
func (c *opsCatalog) checkMatcher(metric, label, op, value string) []string {
	if !slices.Contains(opsModuleLabels, label) || (metric != "" && !strings.HasPrefix(metric, "deplo_auth_")) {
		return nil // a scrape label, or another exporter's metric
	}
	var problems []string
	family, m, bucket, ok := c.resolve(metric)
	if ok {
		has := slices.Contains(m.labels, label) || (label == "le" && bucket) || (label == "quantile" && m.summary && family == metric)
		if !has {
			problems = append(problems, fmt.Sprintf("%s has no label %q (labels: %s)", metric, label, strings.Join(m.labels, ", ")))
			return problems
		}
	} else if strings.HasPrefix(metric, "deplo_auth_") {
		return nil // already reported as unknown
	}
	byMetric, checked := c.values[label]
	if !checked {
		return nil
	}
	valid, found := byMetric[family]
	if !found {
		valid, found = byMetric[""]
	}
	if !found {
		// A label whose values depend on the metric, on a selector
		// without a known metric: any metric's value will do.
		for _, vs := range byMetric {
			valid = append(valid, vs...)
		}
	}
	if strings.HasPrefix(value, "$") && opsPlainValue.MatchString(strings.Trim(value[1:], "{}")) {
		return nil // a Grafana variable
	}
	alts := []string{value}
	if op == "=~" || op == "!~" {
		alts = strings.Split(value, "|")
	}
	for _, a := range alts {
		if (op == "=~" || op == "!~") && !opsPlainValue.MatchString(a) {
			problems = append(problems, fmt.Sprintf("%s%s%q: use plain alternatives (a|b), not a pattern, so the values can be checked", label, op, value))
			continue
		}
		if !slices.Contains(valid, a) {
			problems = append(problems, fmt.Sprintf("%s=%q is not a value the module sets on %s (valid: %s)", label, a, orAny(metric), strings.Join(valid, ", ")))
		}
	}
	return problems
}

func orAny(metric string) string {
	if metric == "" {
		return "any metric"
	}
	return metric
}

// opsDashboard is the parsed dashboard and what the checks need of it.
type opsDashboard struct {
	raw       []byte
	root      map[string]any
	exprs     []string // every targets[].expr, rows included
	templates []string // query variables' definitions
	problems  []string // structural problems
}

func opsParseDashboard(raw []byte) (*opsDashboard, error) {
	d := &opsDashboard{raw: raw}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&d.root); err != nil {
		return nil, fmt.Errorf("dashboard is not valid JSON: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("dashboard has data after the JSON object")
	}
	bad := func(format string, args ...any) { d.problems = append(d.problems, fmt.Sprintf(format, args...)) }
	ids := make(map[string]string)
	checkDS := func(where string, v any) {
		ds, _ := v.(map[string]any)
		if ds == nil || ds["uid"] != opsDatasourceUID {
			bad("%s: datasource must be {\"type\": \"prometheus\", \"uid\": %q}, got %v", where, opsDatasourceUID, v)
		}
	}
	var walk func(panels []any, path string)
	walk = func(panels []any, path string) {
		for i, p := range panels {
			panel, ok := p.(map[string]any)
			if !ok {
				bad("%s[%d] is not an object", path, i)
				continue
			}
			title, _ := panel["title"].(string)
			where := fmt.Sprintf("%s[%d] %q", path, i, title)
			id, ok := panel["id"].(json.Number)
			if _, err := id.Int64(); !ok || err != nil {
				bad("%s: id %v is not an integer", where, panel["id"])
			} else if prev, dup := ids[id.String()]; dup {
				bad("%s: id %s already used by %s", where, id, prev)
			} else {
				ids[id.String()] = where
			}
			if _, ok := panel["gridPos"].(map[string]any); !ok {
				bad("%s: no gridPos", where)
			}
			typ, _ := panel["type"].(string)
			if typ == "row" {
				if sub, ok := panel["panels"].([]any); ok {
					walk(sub, where+".panels")
				}
				continue
			}
			checkDS(where, panel["datasource"])
			targets, _ := panel["targets"].([]any)
			if len(targets) == 0 {
				bad("%s: no targets", where)
			}
			refs := make(map[string]bool)
			for k, tg := range targets {
				target, _ := tg.(map[string]any)
				expr, _ := target["expr"].(string)
				if strings.TrimSpace(expr) == "" {
					bad("%s: targets[%d] has no expr", where, k)
					continue
				}
				checkDS(fmt.Sprintf("%s targets[%d]", where, k), target["datasource"])
				ref, _ := target["refId"].(string)
				if ref == "" || refs[ref] {
					bad("%s: targets[%d] refId %q missing or repeated", where, k, ref)
				}
				refs[ref] = true
				d.exprs = append(d.exprs, expr)
			}
		}
	}
	panels, ok := d.root["panels"].([]any)
	if !ok || len(panels) == 0 {
		bad("no panels")
	}
	walk(panels, "panels")

	templating, _ := d.root["templating"].(map[string]any)
	vars, _ := templating["list"].([]any)
	haveVar := make(map[string]string)
	for _, v := range vars {
		tv, _ := v.(map[string]any)
		name, _ := tv["name"].(string)
		typ, _ := tv["type"].(string)
		haveVar[name] = typ
		if typ == "query" {
			checkDS("variable "+name, tv["datasource"])
			if def, _ := tv["definition"].(string); def != "" {
				d.templates = append(d.templates, def)
			}
			switch q := tv["query"].(type) {
			case string:
				d.templates = append(d.templates, q)
			case map[string]any:
				if s, _ := q["query"].(string); s != "" {
					d.templates = append(d.templates, s)
				}
			}
		}
	}
	if haveVar["DS_PROMETHEUS"] != "datasource" {
		bad("no datasource variable DS_PROMETHEUS")
	}
	if haveVar["instance"] != "query" {
		bad("no query variable instance")
	}
	if s, _ := d.root["schemaVersion"].(json.Number); s == "" {
		bad("no schemaVersion")
	}
	return d, nil
}

// opsRules is a Prometheus rule file.
type opsRules struct {
	Groups []struct {
		Name        string            `yaml:"name"`
		Interval    string            `yaml:"interval"`
		Limit       int               `yaml:"limit"`
		QueryOffset string            `yaml:"query_offset"`
		Labels      map[string]string `yaml:"labels"`
		Rules       []struct {
			Alert         string            `yaml:"alert"`
			Record        string            `yaml:"record"`
			Expr          string            `yaml:"expr"`
			For           string            `yaml:"for"`
			KeepFiringFor string            `yaml:"keep_firing_for"`
			Labels        map[string]string `yaml:"labels"`
			Annotations   map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

var opsDuration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)

func opsReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func opsLoadRules(t *testing.T) *opsRules {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(opsReadFile(t, opsAlertsPath)))
	dec.KnownFields(true)
	var rules opsRules
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("%s: %v", opsAlertsPath, err)
	}
	if len(rules.Groups) == 0 {
		t.Fatalf("%s: no rule groups", opsAlertsPath)
	}
	return &rules
}

// opsReadmePromQL returns the ```promql blocks of the ops README.
func opsReadmePromQL(readme string) []string {
	var out []string
	rest := readme
	for {
		_, after, ok := strings.Cut(rest, "```promql\n")
		if !ok {
			return out
		}
		block, tail, ok := strings.Cut(after, "```")
		if !ok {
			return out
		}
		out = append(out, block)
		rest = tail
	}
}

// TestOpsMetricsExist checks every metric name and label value used by the
// dashboard, the alerts and the ops README against the exported metrics.
func TestOpsMetricsExist(t *testing.T) {
	cat := opsKnownCatalog(t)

	raw := opsReadFile(t, opsDashboardPath)
	dash, err := opsParseDashboard(raw)
	if err != nil {
		t.Fatal(err)
	}
	type source struct{ where, expr string }
	var exprs []source
	for i, e := range dash.exprs {
		exprs = append(exprs, source{fmt.Sprintf("dashboard expr %d", i), e})
	}
	for i, e := range dash.templates {
		exprs = append(exprs, source{fmt.Sprintf("dashboard variable query %d", i), e})
	}
	rules := opsLoadRules(t)
	nAlertExprs := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, source{fmt.Sprintf("alerts.yml %s/%s%s", g.Name, r.Alert, r.Record), r.Expr})
			nAlertExprs++
		}
	}
	readme := opsReadFile(t, opsReadmePath)
	for i, e := range opsReadmePromQL(string(readme)) {
		exprs = append(exprs, source{fmt.Sprintf("README promql block %d", i), e})
	}
	if len(dash.exprs) < 10 || nAlertExprs < 5 {
		t.Fatalf("found only %d dashboard and %d alert expressions: is the parsing broken?", len(dash.exprs), nAlertExprs)
	}

	used := make(map[string]bool)
	for _, s := range exprs {
		for _, p := range cat.checkExpr(s.expr) {
			t.Errorf("%s: %s\n\t%s", s.where, p, strings.ReplaceAll(strings.TrimSpace(s.expr), "\n", "\n\t"))
		}
		for _, name := range opsNameInText.FindAllString(s.expr, -1) {
			if family, _, _, ok := cat.resolve(name); ok {
				used[family] = true
			}
		}
	}
	// Names in free text (descriptions, annotations, the README) too; there
	// a histogram may go by its family name.
	for file, text := range map[string][]byte{opsDashboardPath: raw, opsAlertsPath: opsReadFile(t, opsAlertsPath), opsReadmePath: readme} {
		seen := make(map[string]bool)
		for _, name := range opsNameInText.FindAllString(string(text), -1) {
			if _, family := cat.metrics[name]; family || seen[name] {
				continue
			}
			seen[name] = true
			if p := cat.checkName(name); p != "" {
				t.Errorf("%s mentions %s", file, p)
			}
		}
	}
	for _, n := range cat.names() {
		if !used[n] {
			t.Logf("note: metric %s is exported but used by no dashboard panel or alert", n)
		}
	}
}

// TestOpsDashboard checks the dashboard's structure: valid JSON, unique
// panel ids, the templated Prometheus datasource and an expr per target.
func TestOpsDashboard(t *testing.T) {
	dash, err := opsParseDashboard(opsReadFile(t, opsDashboardPath))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.problems {
		t.Errorf("%s: %s", opsDashboardPath, p)
	}
}

// TestOpsAlerts checks that every alert is complete and documented.
func TestOpsAlerts(t *testing.T) {
	rules := opsLoadRules(t)
	readme := string(opsReadFile(t, opsReadmePath))
	seen := make(map[string]bool)
	for _, g := range rules.Groups {
		if g.Name == "" {
			t.Errorf("a rule group has no name")
		}
		for _, r := range g.Rules {
			if r.Alert == "" {
				if r.Record == "" {
					t.Errorf("group %s: a rule is neither an alert nor a record", g.Name)
				}
				continue
			}
			where := g.Name + "/" + r.Alert
			if seen[r.Alert] {
				t.Errorf("%s: alert defined twice", where)
			}
			seen[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: no expr", where)
			}
			if !opsDuration.MatchString(r.For) {
				t.Errorf("%s: for %q is missing or not a duration", where, r.For)
			}
			if s := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
				t.Errorf("%s: severity %q is not critical, warning or info", where, s)
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", where, a)
				}
			}
			if !strings.Contains(readme, "\n### "+r.Alert+"\n") {
				t.Errorf("%s: %s has no \"### %s\" section", where, opsReadmePath, r.Alert)
			}
			if !strings.Contains(r.Annotations["runbook"], "ops/README.md#"+strings.ToLower(r.Alert)) {
				t.Errorf("%s: runbook does not point to ops/README.md#%s", where, strings.ToLower(r.Alert))
			}
		}
	}
	if len(seen) == 0 {
		t.Fatal("no alerts")
	}
}

// TestOpsCheckerCatchesMistakes makes sure the checks above can fail.
func TestOpsCheckerCatchesMistakes(t *testing.T) {
	cat := opsKnownCatalog(t)
	good := []string{
		`sum by (reason) (rate(deplo_auth_requests_total{instance=~"$instance",outcome=~"denied|error",reason!="public"}[$__rate_interval]))`,
		`histogram_quantile(0.99, sum by (le) (rate(deplo_auth_decision_duration_seconds_bucket{method="jwt",le!=""}[5m])))`,
		`rate(deplo_auth_store_requests_total{store="postgres",result="not_found"}[5m]) / rate(deplo_auth_store_duration_seconds_count[5m])`,
		`deplo_auth_cache_lookups_total{result="negative_hit"} # comment deplo_auth_bogus`,
		`{__name__="deplo_auth_keyfile_tokens", path="/etc/keys.json"}`,
		`label_values(deplo_auth_requests_total, instance)`,
		`caddy_http_requests_total{method="GET"} and up{job="caddy"}`,
	}
	for _, e := range good {
		if p := cat.checkExpr(e); len(p) > 0 {
			t.Errorf("false alarm on %s: %v", e, p)
		}
	}
	bad := map[string]string{
		`rate(deplo_auth_bogus_total[5m])`:                                   "unknown metric",
		`rate(deplo_auth_requests_totl[5m])`:                                 "unknown metric",
		`rate(deplo_auth_requests_total_bucket[5m])`:                         "unknown metric",
		`deplo_auth_decision_duration_seconds`:                               "only exported as",
		`rate(deplo_auth_requests_total{reason="unknown_tokens"}[5m])`:       "not a value",
		`rate(deplo_auth_requests_total{reason=~"unknown_token|bogus"}[5m])`: "not a value",
		`rate(deplo_auth_requests_total{reason=~".*_token"}[5m])`:            "plain alternatives",
		`rate(deplo_auth_requests_total{outcome="refused"}[5m])`:             "not a value",
		`rate(deplo_auth_requests_total{method="apikey"}[5m])`:               "not a value",
		`rate(deplo_auth_cache_lookups_total{result="found"}[5m])`:           "not a value",
		`rate(deplo_auth_store_requests_total{result="hit"}[5m])`:            "not a value",
		`rate(deplo_auth_cache_lookups_total{reason="public"}[5m])`:          "has no label",
		`rate(deplo_auth_requests_total{le="0.1"}[5m])`:                      "has no label",
		`{__name__="deplo_auth_nope"}`:                                       "unknown metric",
		`sum(rate(deplo_auth_requests_total[5m])`:                            "unclosed",
		`rate(deplo_auth_requests_total{outcome="denied"]}[5m])`:             "unbalanced",
		`rate(deplo_auth_requests_total{outcome="denied}[5m])`:               "unterminated",
	}
	for e, want := range bad {
		p := cat.checkExpr(e)
		if !strings.Contains(strings.Join(p, "\n"), want) {
			t.Errorf("%s: want a problem containing %q, got %v", e, want, p)
		}
	}

	// The dashboard walker finds targets in collapsed rows and catches
	// repeated ids, missing exprs and a hard-wired datasource.
	const nested = `{"schemaVersion": 39, "panels": [
	  {"id": 1, "type": "row", "gridPos": {}, "collapsed": true, "panels": [
	    {"id": 2, "type": "timeseries", "gridPos": {}, "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
	     "targets": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, "expr": "deplo_auth_nested_bogus"}]},
	    {"id": 1, "type": "stat", "gridPos": {}, "datasource": {"type": "prometheus", "uid": "abc123"},
	     "targets": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}}]}]}],
	  "templating": {"list": [{"name": "DS_PROMETHEUS", "type": "datasource"}, {"name": "instance", "type": "query",
	    "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, "definition": "label_values(deplo_auth_requests_total, instance)"}]}}`
	d, err := opsParseDashboard([]byte(nested))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.exprs) != 1 || d.exprs[0] != "deplo_auth_nested_bogus" {
		t.Errorf("nested exprs = %q", d.exprs)
	}
	probs := strings.Join(d.problems, "\n")
	for _, want := range []string{"already used", "has no expr", "uid:abc123"} {
		if !strings.Contains(probs, want) {
			t.Errorf("nested dashboard: want a problem containing %q, got:\n%s", want, probs)
		}
	}
	if p := cat.checkExpr(d.exprs[0]); len(p) == 0 {
		t.Error("nested bogus metric not reported")
	}
	if _, err := opsParseDashboard([]byte(`{"panels": [}`)); err == nil {
		t.Error("invalid JSON accepted")
	}
}
