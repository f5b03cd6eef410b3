package config_test

import (
	"fmt"
	"testing"

	"github.com/cellagent/cellagent/config"
)

// FuzzDecode reads arbitrary bytes as a config file over the defaults, as
// Load does, and validates the result whether or not decoding succeeded
// (a failed decode leaves a half-written config). Nothing may panic, and a
// config that validates must have a usable host port range.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{}`), "40000-59999")
	f.Add([]byte(`{"cell_id":"cell-7","zone":"z2","network":{"host_port_range":"61000-61999","subnet":"10.0.0.0/16"}}`), "1-65535")
	f.Add([]byte(`{"network":{"host_port_range":"59999-40000"}}`), "59999-40000")
	f.Add([]byte(`{"listen":{"admin":"0.0.0.0:1800"},"proxy":{"kind":"envoy"}}`), "0-10")
	f.Add([]byte(`{"cell_id":"a","unknown":1}`), "65535-65536")
	f.Add([]byte(`{"start_timeout":"-1s","preloaded_rootfs":{"../x":"rel"}} {}`), "-")

	f.Fuzz(func(t *testing.T, data []byte, portRange string) {
		checkPortRange(t, portRange)

		cfg := config.DefaultConfig()
		decodeErr := config.Decode(data, &cfg)
		err := cfg.Validate()
		if decodeErr != nil || err != nil {
			return
		}
		if _, _, err := config.ParsePortRange(cfg.Network.HostPortRange); err != nil {
			t.Fatalf("Validate accepted host_port_range %q: %v", cfg.Network.HostPortRange, err)
		}
		if cfg.Capacity.MaxContainers <= 0 || cfg.LogMaxBytes < 4096 {
			t.Fatalf("Validate accepted max_containers %d, log_max_bytes %d", cfg.Capacity.MaxContainers, cfg.LogMaxBytes)
		}
	})
}

func checkPortRange(t *testing.T, s string) {
	t.Helper()
	lo, hi, err := config.ParsePortRange(s)
	if err != nil {
		if lo != 0 || hi != 0 {
			t.Fatalf("ParsePortRange(%q) = %d, %d with error %v", s, lo, hi, err)
		}
		return
	}
	if lo == 0 || lo > hi {
		t.Fatalf("ParsePortRange(%q) = %d-%d", s, lo, hi)
	}
	// The canonical form reads back the same.
	if l2, h2, err := config.ParsePortRange(fmt.Sprintf("%d-%d", lo, hi)); err != nil || l2 != lo || h2 != hi {
		t.Fatalf("ParsePortRange(%q) = %d-%d, which reads back as %d-%d, %v", s, lo, hi, l2, h2, err)
	}
}
