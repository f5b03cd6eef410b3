package main

import (
	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/rep/cell"
)

// The store is the Diego cell's route updater (rep/cell may not import it).
var _ cell.RouteUpdater = (*containerstore.Store)(nil)
