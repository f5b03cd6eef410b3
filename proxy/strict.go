package proxy

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// decoder walks a YAML document (as decoded JSON) and remembers the first
// problem with the path of the field it concerns. Methods on a failed decoder
// return zero values, so parsing code reads straight through and checks once.
type decoder struct {
	file string
	err  error
}

func (d *decoder) failf(path, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%s: %s: %s", d.file, path, fmt.Sprintf(format, args...))
	}
}

// object is one mapping in the document. Keys read through it are marked
// used; done() rejects the rest.
type object struct {
	d    *decoder
	path string
	m    map[string]any
	used map[string]bool
}

func (d *decoder) root(v any) *object {
	return d.asObject("(top level)", v)
}

func (d *decoder) asObject(path string, v any) *object {
	m, ok := v.(map[string]any)
	if !ok && d.err == nil {
		d.failf(path, "expected a mapping, got %s", kind(v))
	}
	return &object{d: d, path: path, m: m, used: map[string]bool{}}
}

func (o *object) at(key string) string {
	if o.path == "(top level)" {
		return key
	}
	return o.path + "." + key
}

func (o *object) get(key string, required bool) (any, bool) {
	o.used[key] = true
	v, ok := o.m[key]
	if (!ok || v == nil) && required {
		o.d.failf(o.at(key), "missing")
	}
	return v, ok && v != nil
}

func (o *object) has(key string) bool {
	v, ok := o.m[key]
	return ok && v != nil
}

func (o *object) str(key string, required bool) string {
	v, ok := o.get(key, required)
	if !ok {
		return ""
	}
	s, isStr := v.(string)
	if !isStr {
		o.d.failf(o.at(key), "expected a string, got %s", kind(v))
	}
	if s == "" && required {
		o.d.failf(o.at(key), "empty")
	}
	return s
}

func (o *object) boolean(key string) bool {
	v, ok := o.get(key, false)
	if !ok {
		return false
	}
	b, isBool := v.(bool)
	if !isBool {
		o.d.failf(o.at(key), "expected true or false, got %s", kind(v))
	}
	return b
}

func (o *object) uint(key string, required bool, max uint64) uint64 {
	v, ok := o.get(key, required)
	if !ok {
		return 0
	}
	f, isNum := v.(float64)
	if !isNum || f < 0 || f != math.Trunc(f) || f > float64(max) {
		o.d.failf(o.at(key), "expected an integer from 0 to %d, got %v", max, v)
		return 0
	}
	return uint64(f)
}

func (o *object) object(key string, required bool) *object {
	v, ok := o.get(key, required)
	if !ok {
		return nil
	}
	return o.d.asObject(o.at(key), v)
}

// list returns the elements of a sequence as objects.
func (o *object) list(key string, required bool) []*object {
	v, ok := o.get(key, required)
	if !ok {
		return nil
	}
	items, isList := v.([]any)
	if !isList {
		o.d.failf(o.at(key), "expected a list, got %s", kind(v))
		return nil
	}
	out := make([]*object, len(items))
	for i, it := range items {
		out[i] = o.d.asObject(fmt.Sprintf("%s[%d]", o.at(key), i), it)
	}
	return out
}

func (o *object) strings(key string) []string {
	v, ok := o.get(key, false)
	if !ok {
		return nil
	}
	items, isList := v.([]any)
	if !isList {
		o.d.failf(o.at(key), "expected a list, got %s", kind(v))
		return nil
	}
	out := make([]string, len(items))
	for i, it := range items {
		s, isStr := it.(string)
		if !isStr {
			o.d.failf(fmt.Sprintf("%s[%d]", o.at(key), i), "expected a string, got %s", kind(it))
		}
		out[i] = s
	}
	return out
}

// only declares the keys o may have and rejects any other before a missing
// key is reported: "filename: not supported" says more than
// "inline_string: missing".
func (o *object) only(keys ...string) {
	for _, k := range keys {
		o.used[k] = true
	}
	o.done()
}

// done rejects keys nobody asked for: cellproxy would silently ignore them,
// and a proxy that ignores config lies about what it does.
func (o *object) done() {
	if o == nil || o.d.err != nil {
		return
	}
	var unknown []string
	for k := range o.m {
		if !o.used[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return
	}
	sort.Strings(unknown)
	known := make([]string, 0, len(o.used))
	for k := range o.used {
		known = append(known, k)
	}
	sort.Strings(known)
	o.d.failf(o.at(unknown[0]), "not supported by cellproxy (understood here: %s)", strings.Join(known, ", "))
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "nothing"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}
