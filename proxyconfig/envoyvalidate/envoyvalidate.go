// Package envoyvalidate checks generated proxy files against Envoy's own API
// types (go-control-plane): the YAML is turned into JSON, parsed with
// protojson exactly as Envoy parses its config (unknown fields are errors,
// Any resolves through the extension types linked below), and every message,
// including the ones packed in Any, must pass its ValidateAll().
//
// It links Envoy's API types (tens of MB of code), so it is meant for tests
// and tools; the agent and cellproxy do not import it.
package envoyvalidate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// The extension types a generated file may pack in an Any. Naming them here
// links them, so protojson resolves their type URLs.
var (
	_ = &tcpproxyv3.TcpProxy{}
	_ = &tlsv3.DownstreamTlsContext{}
	_ = &tlsv3.Secret{}
)

type validator interface{ ValidateAll() error }

// Bootstrap parses an envoy.yaml and validates it and every typed config in it.
func Bootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	b := &bootstrapv3.Bootstrap{}
	if err := unmarshalYAML(data, b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	var errs []error
	for _, l := range b.GetStaticResources().GetListeners() {
		for i, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if _, err := unpack(f.GetTypedConfig()); err != nil {
					errs = append(errs, fmt.Errorf("listener %s filter chain %d filter %s: %w", l.GetName(), i, f.GetName(), err))
				}
			}
			if ts := fc.GetTransportSocket(); ts != nil {
				if _, err := unpack(ts.GetTypedConfig()); err != nil {
					errs = append(errs, fmt.Errorf("listener %s filter chain %d transport socket %s: %w", l.GetName(), i, ts.GetName(), err))
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

// Secrets parses a file-based SDS file (a DiscoveryResponse) and returns its
// secrets, each validated.
func Secrets(data []byte) (*discoveryv3.DiscoveryResponse, []*tlsv3.Secret, error) {
	r := &discoveryv3.DiscoveryResponse{}
	if err := unmarshalYAML(data, r); err != nil {
		return nil, nil, fmt.Errorf("sds: %w", err)
	}
	if err := r.ValidateAll(); err != nil {
		return nil, nil, fmt.Errorf("sds: %w", err)
	}
	var secrets []*tlsv3.Secret
	for i, res := range r.GetResources() {
		m, err := unpack(res)
		if err != nil {
			return nil, nil, fmt.Errorf("sds: resource %d: %w", i, err)
		}
		s, ok := m.(*tlsv3.Secret)
		if !ok {
			return nil, nil, fmt.Errorf("sds: resource %d is a %T, not a Secret", i, m)
		}
		secrets = append(secrets, s)
	}
	return r, secrets, nil
}

// Dir validates the bootstrap and every SDS file it references, reading them
// from hostDir (the bootstrap names in-container paths; only the base name
// is used).
func Dir(hostDir, bootstrapName string) error {
	data, err := os.ReadFile(filepath.Join(hostDir, bootstrapName))
	if err != nil {
		return err
	}
	b, err := Bootstrap(data)
	if err != nil {
		return err
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			ts := fc.GetTransportSocket()
			if ts == nil {
				continue
			}
			m, err := unpack(ts.GetTypedConfig())
			if err != nil {
				return err
			}
			ctx, ok := m.(*tlsv3.DownstreamTlsContext)
			if !ok {
				continue
			}
			refs := ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()
			if v := ctx.GetCommonTlsContext().GetValidationContextSdsSecretConfig(); v != nil {
				refs = append(refs, v)
			}
			for _, ref := range refs {
				p := ref.GetSdsConfig().GetPathConfigSource().GetPath()
				sds, err := os.ReadFile(filepath.Join(hostDir, filepath.Base(p)))
				if err != nil {
					return fmt.Errorf("listener %s: secret %s: %w", l.GetName(), ref.GetName(), err)
				}
				_, secrets, err := Secrets(sds)
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				if !hasSecret(secrets, ref.GetName()) {
					return fmt.Errorf("%s: no secret named %q", p, ref.GetName())
				}
			}
		}
	}
	return nil
}

func hasSecret(secrets []*tlsv3.Secret, name string) bool {
	for _, s := range secrets {
		if s.GetName() == name {
			return true
		}
	}
	return false
}

func unmarshalYAML(data []byte, m proto.Message) error {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	return protojson.UnmarshalOptions{}.Unmarshal(j, m)
}

func unpack(a *anypb.Any) (proto.Message, error) {
	if a == nil {
		return nil, errors.New("missing typed_config")
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, err
	}
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return nil, err
		}
	}
	return m, nil
}
