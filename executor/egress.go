package executor

import (
	"bytes"
	"encoding/json"
)

// UnmarshalJSON refuses unknown fields inside a rule wherever it is
// decoded (a config file's decoder checks only the keys above a list): a
// misspelt "port" must not leave a rule open to every port.
func (r *EgressRule) UnmarshalJSON(b []byte) error {
	type plain EgressRule
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p plain
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*r = EgressRule(p)
	return nil
}
