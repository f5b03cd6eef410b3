package routeemitter

// Exported for tests only.

// HoldJournal takes the journal's write lock, as a write in progress holds
// it, until release is called.
func (e *Emitter) HoldJournal() (release func()) {
	e.journalMu.Lock()
	return e.journalMu.Unlock
}

// JournalTurns answers how many calls reached saveJournal.
func (e *Emitter) JournalTurns() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.journalGen
}

// JournalWrites answers how many journal writes began.
func (e *Emitter) JournalWrites() int {
	e.journalMu.Lock()
	defer e.journalMu.Unlock()
	return e.journalWrites
}
