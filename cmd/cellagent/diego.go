package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"
	"github.com/tedsuo/ifrit/http_server"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/executor/httpapi"
	"github.com/cellagent/cellagent/metrics"
	"github.com/cellagent/cellagent/rep/api"
	"github.com/cellagent/cellagent/rep/bbs"
	"github.com/cellagent/cellagent/rep/cell"
	"github.com/cellagent/cellagent/rep/locket"
	"github.com/cellagent/cellagent/rep/mtls"
)

// diegoMembers are the runners of a Diego cell (nil without a diego
// section), in start order: the rep API, the cell (BBS reports), and the
// Locket presence last, so the control plane only learns of the cell once
// it can be called, and forgets it first on shutdown. The view is the
// cell's part of GET /v1/state.
func diegoMembers(logger lager.Logger, cfg config.Config, store *containerstore.Store, total executor.ResourceTotals,
	clk clock.Clock, met *metrics.Metrics) (grouper.Members, httpapi.DiegoView, error) {
	d := cfg.Diego
	if d == nil {
		return nil, nil, nil
	}
	calls := metrics.NewBBSCalls()
	if err := met.Register(calls); err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	bbsClient, err := bbs.New(bbs.Config{URL: d.BBS.URL, TLS: mtls.Files{CACert: d.BBS.CACert, Cert: d.BBS.Cert, Key: d.BBS.Key},
		Observe: calls.Observe})
	if err != nil {
		return nil, nil, err
	}
	stacks := make([]string, 0, len(d.Stacks))
	for s := range d.Stacks {
		stacks = append(stacks, s)
	}
	sort.Strings(stacks)
	tlsOn := d.Rep.TLS != (config.TLS{})
	repURL := ""
	if tlsOn {
		repURL = d.Rep.URL
	}
	var presence *locket.Presence // set below, before anything runs
	c := cell.New(logger, cell.Config{CellID: cfg.CellID, Zone: cfg.Zone, RepURL: repURL, Stacks: d.Stacks,
		EmitRoutes: d.RoutesEmitted(), PlacementTags: d.PlacementTags, OptionalPlacementTags: d.OptionalPlacementTags,
		PreferInstanceAddress: cfg.Routing.InstanceAddress, AllowPrivileged: cfg.AllowPrivileged, Routes: store, Files: store,
		PresenceHeld: func() bool { return presence.Held() }}, store, bbsClient, clk)

	value, err := json.Marshal(api.CellPresence{CellID: cfg.CellID, RepAddress: d.Rep.URL, RepURL: repURL, Zone: cfg.Zone,
		Capacity:              api.Capacity{MemoryMB: total.MemoryMB, DiskMB: total.DiskMB, Containers: total.Containers},
		RootFSProviders:       []api.Provider{{Name: "preloaded", Properties: stacks}, {Name: "docker"}},
		PlacementTags:         nonNilStrings(d.PlacementTags),
		OptionalPlacementTags: nonNilStrings(d.OptionalPlacementTags)})
	if err != nil {
		return nil, nil, err
	}
	presence, err = locket.New(logger, locket.Config{Address: d.Locket.Address, Key: cfg.CellID, Value: value, Clock: clk,
		OwnerFile: filepath.Join(cfg.DataDir, "diego-locket-owner"),
		TLS:       mtls.Files{CACert: d.Locket.CACert, Cert: d.Locket.Cert, Key: d.Locket.Key}})
	if err != nil {
		return nil, nil, err
	}

	handler := api.New(logger, c)
	var server ifrit.Runner = http_server.New(d.Rep.Listen, handler)
	if tlsOn {
		tc, err := mtls.Server(mtls.Files{CACert: d.Rep.TLS.ClientCA, Cert: d.Rep.TLS.Cert, Key: d.Rep.TLS.Key})
		if err != nil {
			return nil, nil, fmt.Errorf("diego.rep.tls: %w", err)
		}
		server = http_server.NewTLSServer(d.Rep.Listen, handler, tc)
	}
	return grouper.Members{
		{Name: "diego-rep-api", Runner: server},
		{Name: "diego-cell", Runner: c},
		{Name: "diego-presence", Runner: presence},
	}, c, nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
