package config

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
)

// ErrSyntax is wrapped by a decode error that left nothing decoded: the
// file is not one JSON value.
var ErrSyntax = errors.New("not a JSON object")

// Decode decodes JSON over cfg and reports every problem at once: each
// unknown key and each value of the wrong type, named by its JSON path
// (proxy.enabled). Keys that decode are applied even when others do not,
// so Validate can report the rest of the file's problems in the same run.
// A syntax error (or more than one value) is reported alone and wraps
// ErrSyntax.
func Decode(b []byte, cfg *Config) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("%w: %s", ErrSyntax, describeSyntax(b, err))
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: more than one JSON value (or trailing data after it)", ErrSyntax)
	}
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return fmt.Errorf("%w: the file must hold one JSON object", ErrSyntax)
	}
	var problems []error
	decodeValue("", raw, reflect.ValueOf(cfg).Elem(), &problems)
	return errors.Join(problems...)
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// decodeValue decodes raw into v, which is at path; what does not fit is
// appended to problems and leaves v as it was.
func decodeValue(path string, raw json.RawMessage, v reflect.Value, problems *[]error) {
	t := v.Type()
	if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct && !t.Implements(jsonUnmarshaler) {
		// An optional section (diego): null removes it, an object is
		// decoded key by key like any other section.
		if string(bytes.TrimSpace(raw)) == "null" {
			v.Set(reflect.Zero(t))
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		decodeValue(path, raw, v.Elem(), problems)
		return
	}
	leaf := t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler)
	if leaf {
		tmp := reflect.New(t)
		tmp.Elem().Set(v) // a map decodes over the defaults, as a whole file would
		if err := json.Unmarshal(raw, tmp.Interface()); err != nil {
			*problems = append(*problems, fmt.Errorf("%s: %s", path, describeValue(err)))
			return
		}
		v.Set(tmp.Elem())
		return
	}
	if string(bytes.TrimSpace(raw)) == "null" {
		return // as encoding/json: null leaves a struct alone
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		*problems = append(*problems, fmt.Errorf("%s: %s", orTop(path), describeValue(err)))
		return
	}
	// The members apply in the file's order, each occurrence of a key
	// (in any case) in turn, as encoding/json does: the last value wins
	// and objects merge. Their problems are reported in key order.
	ms := members(raw)
	found := make([][]error, len(ms))
	for j, m := range ms {
		sub := join(path, m.key)
		i, ok := fieldIndex(t, m.key)
		if !ok {
			found[j] = append(found[j], fmt.Errorf("%s: unknown key", sub))
			continue
		}
		decodeValue(sub, m.raw, v.Field(i), &found[j])
	}
	order := make([]int, len(ms))
	for j := range order {
		order[j] = j
	}
	sort.SliceStable(order, func(a, b int) bool { return ms[order[a]].key < ms[order[b]].key })
	for _, j := range order {
		*problems = append(*problems, found[j]...)
	}
}

type member struct {
	key string
	raw json.RawMessage
}

// members lists the members of raw, a valid JSON object, in order and
// with every repeated key (a map keeps only the last).
func members(raw json.RawMessage) []member {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // the opening brace
		return nil
	}
	var ms []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ms
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return ms
		}
		ms = append(ms, member{key, val})
	}
	return ms
}

// fieldIndex finds the field of struct t whose JSON name is key, matched
// as encoding/json does: exactly, else ignoring case.
func fieldIndex(t reflect.Type, key string) (int, bool) {
	fold := -1
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		if name == key {
			return i, true
		}
		if fold < 0 && strings.EqualFold(name, key) {
			fold = i
		}
	}
	return fold, fold >= 0
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orTop(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

// describeValue says what is wrong with a value in the file's terms, not
// in Go's ("a number where a string is expected").
func describeValue(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := te.Type.Kind().String()
		switch te.Type.Kind() {
		case reflect.Struct, reflect.Map:
			want = "an object"
		case reflect.Slice, reflect.Array:
			want = "a list"
		case reflect.Bool:
			want = "true or false"
		case reflect.String:
			want = "a string"
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			want = "an integer"
		}
		where := ""
		if te.Field != "" {
			where = " (at " + te.Field + ")"
		}
		return fmt.Sprintf("%s%s where %s is expected", article(te.Value), where, want)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func article(jsonType string) string {
	switch {
	case jsonType == "":
		return "a value"
	case strings.HasPrefix(jsonType, "number "):
		return "the number " + strings.TrimPrefix(jsonType, "number ")
	case strings.ContainsAny(jsonType[:1], "aeiou"):
		return "an " + jsonType
	}
	return "a " + jsonType
}

// describeSyntax places a syntax error at its line and column.
func describeSyntax(b []byte, err error) string {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		if errors.Is(err, io.EOF) {
			return "empty file"
		}
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	off := int(min(se.Offset, int64(len(b))))
	line := 1 + bytes.Count(b[:off], []byte("\n"))
	col := off - bytes.LastIndexByte(b[:off], '\n') - 1 // Offset is just past the bad byte
	return fmt.Sprintf("line %d, column %d: %s", line, col, se.Error())
}
