package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/cellagent/cellagent/config"
)

// FuzzDecodeAsEncodingJSON: Decode accepts a JSON object exactly when a
// strict encoding/json decode (DisallowUnknownFields, one value) does, and
// then decodes it to the same config.
func FuzzDecodeAsEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"zone":"a","Zone":"b"}`, `{"proxy":{"enabled":false},"proxy":{"kind":"envoy"}}`,
		`{"proxy":null,"stop_grace":null,"network":{"cni_plugin_dirs":null}}`, `{"capacity":{"memory_mb":1e3}}`,
		`{"preloaded_rootfs":{"x":"/y"},"PRELOADED_ROOTFS":{"z":"/w"}}`, `{"nats":{"tls":{"cert":"a"}},"NATS":{"urls":["x"]}}`,
		`{"stop_grace":"5s","log_max_bytes":9223372036854775808}`, `{"cell_id":5,"bogus":1}`,
		`{"diego":{"stacks":{"a":"b"}},"DIEGO":{"rep":{"listen":"x"}}}`, `{"diego":{"emit_routes":false},"diego":null}`,
		`{"diego":{"bbs":{"bogus":1}}}`, `{"diego":5}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
			return // Decode wants one object; encoding/json also takes null
		}
		want := config.DefaultConfig()
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		wantErr := dec.Decode(&want)
		if wantErr == nil {
			if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
				wantErr = errors.New("trailing data")
			}
		}
		got := config.DefaultConfig()
		gotErr := config.Decode(data, &got)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%s: Decode = %v, encoding/json = %v", data, gotErr, wantErr)
		}
		if gotErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: Decode gave\n%+v\nencoding/json\n%+v", data, got, want)
		}
	})
}
