package containerstore

import (
	"fmt"
	"reflect"
	"slices"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

// fill sets every settable field of v to a non-zero value made of n (depth
// bounds recursive types); two fills with different n differ in every
// field but bools.
func fill(v reflect.Value, n int) { fillDepth(v, n, 0) }

func fillDepth(v reflect.Value, n, depth int) {
	if depth > 6 {
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprint("v", n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(n))
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fillDepth(s.Index(0), n, depth+1)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fillDepth(k, n, depth+1)
		fillDepth(e, n, depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fillDepth(p.Elem(), n, depth+1)
		v.Set(p)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				fillDepth(v.Field(i), n, depth+1)
			}
		}
	}
}

// changed answers the names of inst's fields that differ from before's.
func changed(before, after Instance) []string {
	var out []string
	b, a := reflect.ValueOf(before), reflect.ValueOf(after)
	for i := range b.NumField() {
		if !reflect.DeepEqual(b.Field(i).Interface(), a.Field(i).Interface()) {
			out = append(out, b.Type().Field(i).Name)
		}
	}
	return out
}

var _ = Describe("the pipeline's results", func() {
	// owns is which Instance fields each step's result writes. Mounts and
	// Env are appended to, so several steps share them; every other field
	// has one owner, and the store's own (GUID, Request, User, DiskMB) none.
	owns := map[string][]string{
		"DownloadsResult":   {"Mounts"},
		"ProxyPortsResult":  {"ProxyPorts", "ProxyAdminPort", "MemoryOverheadMB"},
		"NetworkResult":     {"NetNSPath", "InternalIP", "InternalIPv6", "ExternalIP", "Ports"},
		"CredentialsResult": {"Mounts", "Env", "Credentials", "CertPEM", "KeyPEM"},
		"ProxyResult":       {"Mounts", "Init"},
		"BindMountsResult":  {"Mounts"},
	}
	results := []Result{DownloadsResult{}, ProxyPortsResult{}, NetworkResult{}, CredentialsResult{}, ProxyResult{}, BindMountsResult{}}
	storeOwned := []string{"GUID", "Request", "User", "DiskMB"}

	It("each write only their step's fields of the instance", func() {
		for _, r := range results {
			full := reflect.New(reflect.TypeOf(r)).Elem()
			fill(full, 2)
			var before Instance
			fill(reflect.ValueOf(&before).Elem(), 1)
			after := before.clone()
			full.Interface().(Result).merge(&after)
			name := reflect.TypeOf(r).Name()
			Expect(changed(before, after)).To(ConsistOf(owns[name]), name)
		}
	})

	It("have one owner per field, the appended ones aside, and cover every field the store does not fill", func() {
		owner := map[string]string{}
		for name, fields := range owns {
			for _, f := range fields {
				if f == "Mounts" || f == "Env" {
					continue
				}
				Expect(owner).NotTo(HaveKey(f), "%s is written by %s and %s", f, owner[f], name)
				owner[f] = name
			}
		}
		t := reflect.TypeFor[Instance]()
		for i := range t.NumField() {
			f := t.Field(i).Name
			if slices.Contains(storeOwned, f) || f == "Mounts" || f == "Env" {
				continue
			}
			Expect(owner).To(HaveKey(f), "no step's result writes Instance.%s", f)
		}
		Expect(owns).To(HaveLen(len(results)))
	})

	It("are merged from a step's copy: what a step does to its input stays there", func() {
		var inst Instance
		fill(reflect.ValueOf(&inst).Elem(), 1)
		before := inst.clone()
		in := inst.clone()
		in.ProxyPorts[1] = 9 // fill(1) made the key 1
		in.Ports[0].HostPort = 9
		in.Mounts[0].Source = "y"
		in.Env[0] = "y"
		in.CertPEM[0], in.KeyPEM[0] = 'y', 'y'
		in.Credentials.Serial = "y"
		in.Init.Path = "y"
		Expect(inst).To(Equal(before))
	})

	It("keep the recorded addresses when a network result has none (host mode, a restore)", func() {
		inst := Instance{InternalIP: "10.0.0.2", ExternalIP: "10.1.0.1"}
		NetworkResult{NetNSPath: "/run/netns/x", Ports: []executor.PortMapping{{ContainerPort: 8080, HostPort: 61000}}}.merge(&inst)
		Expect(inst.InternalIP).To(Equal("10.0.0.2"))
		Expect(inst.ExternalIP).To(Equal("10.1.0.1"))
		Expect(inst.NetNSPath).To(Equal("/run/netns/x"))
		Expect(inst.Ports).To(Equal([]executor.PortMapping{{ContainerPort: 8080, HostPort: 61000}}))
	})
})
