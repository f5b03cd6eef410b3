package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A container's processes are told apart by their executable as the
// container sees it (/proc/PID/exe): the proxy hook's paths, which the
// bench does not import. With proxy.init the task's own pid is cellinit,
// and the app and the proxy are its children; without it the task's pid
// is the app.
const (
	initExe = "/etc/cf-assets/cellinit"
	// The proxy (cellproxy or Envoy) is mounted as a file at the assets
	// path, or as a directory holding it.
	proxyExe    = "/etc/cf-assets/envoy"
	proxyDirExe = "/etc/cf-assets/envoy/envoy"
)

type procKind string

const (
	kindApp   procKind = "app"
	kindProxy procKind = "proxy"
	kindInit  procKind = "cellinit"
)

// processKind tells what pid is by its executable under procRoot (/proc);
// false when the process is gone.
func processKind(procRoot string, pid int) (procKind, bool) {
	exe, err := os.Readlink(filepath.Join(procRoot, strconv.Itoa(pid), "exe"))
	if err != nil {
		return "", false
	}
	// A binary replaced on the host while it runs reads "PATH (deleted)".
	switch strings.TrimSuffix(exe, " (deleted)") {
	case initExe:
		return kindInit, true
	case proxyExe, proxyDirExe:
		return kindProxy, true
	default:
		return kindApp, true
	}
}

// containerProcs are one container's pids by kind.
type containerProcs map[procKind][]int

func classify(procRoot string, pids []int) containerProcs {
	cp := containerProcs{}
	for _, p := range pids {
		if k, ok := processKind(procRoot, p); ok {
			cp[k] = append(cp[k], p)
		}
	}
	return cp
}

// procMemory is one process's memory in MB: VmRSS, RssAnon (private heap
// and stacks) and Pss (shared pages split among the processes mapping
// them, /proc/PID/smaps_rollup).
type procMemory struct{ rss, anon, pss float64 }

func readProcMemory(procRoot string, pid int) procMemory {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	rss, _ := procKB(filepath.Join(dir, "status"), "VmRSS")
	anon, _ := procKB(filepath.Join(dir, "status"), "RssAnon")
	pss, _ := procKB(filepath.Join(dir, "smaps_rollup"), "Pss")
	return procMemory{rss: float64(rss) / 1024, anon: float64(anon) / 1024, pss: float64(pss) / 1024}
}

// ProcMemory is one kind of process's memory over all instances (MB).
type ProcMemory struct {
	Count   int     `json:"count"`
	PssMed  float64 `json:"pss_median_mb"`
	PssMax  float64 `json:"pss_max_mb"`
	RSSMed  float64 `json:"rss_median_mb"`
	RSSMax  float64 `json:"rss_max_mb"`
	AnonMed float64 `json:"anon_median_mb"`
	AnonMax float64 `json:"anon_max_mb"`
}

// memorySample gathers every instance's processes' memory by kind, and
// per instance what the proxy costs it: the proxy and cellinit together.
type memorySample struct {
	pss, rss, anon    map[procKind][]float64
	overPss, overAnon []float64 // per instance: proxy + cellinit
}

func newMemorySample() *memorySample {
	return &memorySample{pss: map[procKind][]float64{}, rss: map[procKind][]float64{}, anon: map[procKind][]float64{}}
}

// add measures one instance's processes.
func (s *memorySample) add(procRoot string, cp containerProcs) {
	var overPss, overAnon float64
	for k, pids := range cp {
		for _, p := range pids {
			m := readProcMemory(procRoot, p)
			s.pss[k], s.rss[k], s.anon[k] = append(s.pss[k], m.pss), append(s.rss[k], m.rss), append(s.anon[k], m.anon)
			if k != kindApp {
				overPss, overAnon = overPss+m.pss, overAnon+m.anon
			}
		}
	}
	if len(cp[kindProxy]) > 0 {
		s.overPss, s.overAnon = append(s.overPss, overPss), append(s.overAnon, overAnon)
	}
}

func (s *memorySample) of(k procKind) ProcMemory {
	return ProcMemory{Count: len(s.pss[k]),
		PssMed: median(s.pss[k]), PssMax: maxOf(s.pss[k]),
		RSSMed: median(s.rss[k]), RSSMax: maxOf(s.rss[k]),
		AnonMed: median(s.anon[k]), AnonMax: maxOf(s.anon[k])}
}
