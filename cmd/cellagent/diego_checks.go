package main

import (
	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/rep/cell"
)

// The store is the Diego cell's route updater and result file reader
// (rep/cell may not import it).
var (
	_ cell.RouteUpdater = (*containerstore.Store)(nil)
	_ cell.FileReader   = (*containerstore.Store)(nil)
)
