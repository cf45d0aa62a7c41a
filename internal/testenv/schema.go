package testenv

import (
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/eventline/eventline/docs/schema"
)

// SchemaAgreement checks that the JSON Schema sch and eventline (accepts:
// nil when it accepts a document) judge every case alike, received at now
// for the context tenant. A case that touches a rule JSON Schema cannot
// express (schema.Unexpressible) is not compared: it is logged with the
// rules that exclude it. It returns how many cases were compared.
func SchemaAgreement(t testing.TB, sch *jsonschema.Schema, cases map[string][]byte, accepts func(doc []byte) error, now time.Time, tenant string) int {
	t.Helper()
	checked, excluded := 0, map[schema.Rule]int{}
	for name, doc := range cases {
		ours, theirs := accepts(doc), schema.Validate(sch, doc)
		if rules := schema.Unexpressible(doc, now, tenant); len(rules) > 0 {
			for _, r := range rules {
				excluded[r]++
			}
			t.Logf("not compared, %s: %v (eventline accepts %v, the schema %v)", name, rules, ours == nil, theirs == nil)
			continue
		}
		checked++
		if (ours == nil) != (theirs == nil) {
			t.Errorf("%s: eventline accepts %v, the schema accepts %v\ndocument %.300q\neventline: %v\nschema: %v", name, ours == nil, theirs == nil, doc, ours, theirs)
		}
	}
	t.Logf("%d cases compared; not compared, by rule: %v", checked, excluded)
	return checked
}
