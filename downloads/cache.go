package downloads

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/internal/atomicfile"
)

// Config says where the cache lives and how much it may hold.
type Config struct {
	// Dir holds the cache (data_dir/downloads).
	Dir string
	// MaxBytes bounds what the cache keeps: archives and extracted trees
	// that no container uses are evicted, least recently used first, to
	// stay under it. Trees in use are never evicted.
	MaxBytes int64
	// MaxArtifactBytes bounds one download, and what one archive may
	// extract to.
	MaxArtifactBytes int64
	// Client makes the requests; nil: a client whose connections and
	// response headers time out and that never decodes a Content-Encoding
	// (the bytes checked are the bytes stored). The body has no overall
	// deadline (droplets are large) but IdleTimeout.
	Client *http.Client
	// IdleTimeout fails a download that receives no byte for that long
	// after its response headers; 0: DefaultIdleTimeout.
	IdleTimeout time.Duration
	Clock       clock.Clock
}

// DefaultIdleTimeout is Config.IdleTimeout's default.
const DefaultIdleTimeout = time.Minute

// Kinds of cache entries: an archive streamed into containers (setup
// downloads) or an extracted tree mounted into them (cached dependencies).
const (
	kindArchive = "archive"
	kindTree    = "tree"
)

// entry is one cache key's content, persisted as meta.json beside it.
type entry struct {
	Key  string `json:"key"`
	Kind string `json:"kind"`
	URL  string `json:"url"`
	validators
	// Digests are the content's hex digests by algorithm (of the archive,
	// also for a tree), so a request's checksum is checked on a hit too.
	Digests map[string]string `json:"digests"`
	// Size is the bytes the entry holds on disk.
	Size int64 `json:"size"`
	// Tree is the current tree directory's name (kind tree).
	Tree     string    `json:"tree,omitempty"`
	LastUsed time.Time `json:"last_used"`
}

// Cache is the cell's download cache (Diego's cacheddownloader): content
// by cache key, revalidated with the server on each use, evicted least
// recently used first when it passes MaxBytes.
type Cache struct {
	cfg    Config
	client *http.Client

	mu       sync.Mutex                 // guards entries, holders, keyLocks
	entries  map[string]*entry          // by entry id (entryID of the key)
	holders  map[string]map[string]bool // tree path -> holders (container guids) using it
	keyLocks map[string]chan struct{}   // entry id -> closed when its fetch ends
}

// New opens the cache in cfg.Dir: entries a previous run left are kept
// (their meta.json read back), half-done downloads removed, and the trees
// containers still hold (holders/GUID files) kept for them.
func New(logger lager.Logger, cfg Config) (*Cache, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.NewClock()
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	client := cfg.Client
	if client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = time.Minute
		// A blobstore object stored with Content-Encoding: gzip is the
		// archive itself: decoding it would fail its checksum.
		t.DisableCompression = true
		client = &http.Client{Transport: t}
	}
	c := &Cache{cfg: cfg, client: client, entries: map[string]*entry{}, holders: map[string]map[string]bool{},
		keyLocks: map[string]chan struct{}{}}
	if err := os.RemoveAll(c.tmpDir()); err != nil {
		return nil, err
	}
	for _, d := range []string{c.tmpDir(), c.entriesDir(), c.holdersDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if err := c.loadHolders(); err != nil {
		return nil, err
	}
	dirs, err := os.ReadDir(c.entriesDir())
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		c.loadEntry(logger, d.Name())
	}
	return c, nil
}

func (c *Cache) tmpDir() string            { return filepath.Join(c.cfg.Dir, "tmp") }
func (c *Cache) entriesDir() string        { return filepath.Join(c.cfg.Dir, "entries") }
func (c *Cache) holdersDir() string        { return filepath.Join(c.cfg.Dir, "holders") }
func (c *Cache) entryDir(id string) string { return filepath.Join(c.entriesDir(), id) }

// entryID names a key's directory: keys are free text from the control
// plane, never a path.
func entryID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

func (c *Cache) loadEntry(logger lager.Logger, id string) {
	dir := c.entryDir(id)
	var e entry
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err == nil {
		err = json.Unmarshal(b, &e)
	}
	if err == nil && entryID(e.Key) != id {
		err = fmt.Errorf("meta.json names key %q", e.Key)
	}
	if err == nil && e.Kind == kindArchive {
		var fi os.FileInfo
		if fi, err = os.Stat(filepath.Join(dir, "archive")); err == nil && fi.Size() != e.Size {
			err = fmt.Errorf("the archive has %d bytes, meta.json says %d", fi.Size(), e.Size)
		}
	}
	if err != nil {
		logger.Info("cache-entry-dropped", lager.Data{"entry": id, "error": err.Error()})
		c.removeUnheld(dir)
		return
	}
	c.entries[id] = &e
	// Trees of older content stay only while a container holds them.
	children, _ := os.ReadDir(dir)
	for _, ch := range children {
		if strings.HasPrefix(ch.Name(), "tree-") && ch.Name() != e.Tree {
			c.removeUnheld(filepath.Join(dir, ch.Name()))
		}
	}
}

// removeUnheld removes path unless a container holds it (or a tree
// under it).
func (c *Cache) removeUnheld(path string) {
	for tree, hs := range c.holders {
		if len(hs) > 0 && (tree == path || strings.HasPrefix(tree, path+"/")) {
			return
		}
	}
	os.RemoveAll(path)
}

// lockKey serialises fetches of one key (one download at a time, the
// others then revalidate what it brought).
func (c *Cache) lockKey(ctx context.Context, id string) (func(), error) {
	for {
		c.mu.Lock()
		ch, busy := c.keyLocks[id]
		if !busy {
			ch = make(chan struct{})
			c.keyLocks[id] = ch
			c.mu.Unlock()
			return func() {
				c.mu.Lock()
				delete(c.keyLocks, id)
				c.mu.Unlock()
				close(ch)
			}, nil
		}
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// current answers a copy of id's entry of kind when it can serve src:
// same kind and its digests match src's checksum.
func (c *Cache) current(id, kind string, src Source) (entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok || e.Kind != kind || verify(src, e.Digests) != nil {
		return entry{}, false
	}
	return *e, true
}

// Artifact is a downloaded archive, open for reading. Close it when done.
type Artifact struct {
	*os.File
	Size int64
	// Cached: the server said the cached copy is current (nothing downloaded).
	Cached bool
}

// Fetch answers src's archive: from the cache when the server says it
// has not changed, else downloaded (and cached under src.CacheKey unless
// that is empty or the archive is larger than the cache).
func (c *Cache) Fetch(ctx context.Context, logger lager.Logger, src Source) (*Artifact, error) {
	if src.CacheKey == "" {
		d, err := c.get(ctx, src, nil)
		if err != nil {
			return nil, err
		}
		return openUnlinked(d.path, d.size, false)
	}
	id := entryID(src.CacheKey)
	unlock, err := c.lockKey(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var prev *validators
	e, ok := c.current(id, kindArchive, src)
	if ok {
		prev = &e.validators
	}
	d, err := c.get(ctx, src, prev)
	if err != nil {
		return nil, err
	}
	archive := filepath.Join(c.entryDir(id), "archive")
	if d.notModified {
		f, err := os.Open(archive)
		if err == nil {
			c.touch(id)
			logger.Debug("cache-hit", lager.Data{"cache-key": src.CacheKey})
			return &Artifact{File: f, Size: e.Size, Cached: true}, nil
		}
		// Gone behind our back: download it again.
		if d, err = c.get(ctx, src, nil); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	old, isTree := c.entries[id]
	isTree = isTree && old.Kind == kindTree
	c.mu.Unlock()
	if d.size > c.cfg.MaxBytes || isTree {
		// Too large to keep, or the key names a cached dependency's tree.
		return openUnlinked(d.path, d.size, false)
	}
	c.makeRoom(logger, d.size, id)
	c.drop(id)
	if err := os.MkdirAll(c.entryDir(id), 0o700); err != nil {
		os.Remove(d.path)
		return nil, err
	}
	// The old record goes first: were the agent killed, or saveMeta to
	// fail, after the rename, no record would describe the new bytes
	// (a restarted agent drops the entry; loadEntry checks the size too).
	if err := os.Remove(filepath.Join(c.entryDir(id), "meta.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		os.Remove(d.path)
		return nil, err
	}
	if err := os.Rename(d.path, archive); err != nil {
		os.Remove(d.path)
		return nil, err
	}
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	ne := &entry{Key: src.CacheKey, Kind: kindArchive, URL: redact(src.URL), validators: d.validators, Digests: d.digests, Size: d.size}
	c.store(logger, id, ne)
	return &Artifact{File: f, Size: d.size}, nil
}

// openUnlinked opens a temporary download and unlinks it: it goes away
// with its last reader.
func openUnlinked(path string, size int64, cached bool) (*Artifact, error) {
	f, err := os.Open(path)
	os.Remove(path)
	if err != nil {
		return nil, err
	}
	return &Artifact{File: f, Size: size, Cached: cached}, nil
}

// ExtractFunc extracts an archive into the directory root, answering
// the bytes written; it stops when ctx ends.
type ExtractFunc func(ctx context.Context, f *os.File, root *os.Root) (int64, error)

// FetchTree answers the directory holding src's archive extracted by
// extract, held for holder (a container guid) until Release(holder): it
// is not evicted, nor removed when newer content replaces it, while held.
// size is what was downloaded (0 on a hit).
func (c *Cache) FetchTree(ctx context.Context, logger lager.Logger, holder string, src Source, extract ExtractFunc) (dir string, size int64, err error) {
	if src.CacheKey == "" {
		return "", 0, errors.New("a cached dependency needs a cache key")
	}
	id := entryID(src.CacheKey)
	unlock, err := c.lockKey(ctx, id)
	if err != nil {
		return "", 0, err
	}
	defer unlock()
	var prev *validators
	e, ok := c.current(id, kindTree, src)
	if ok {
		if _, err := os.Stat(filepath.Join(c.entryDir(id), e.Tree)); err == nil {
			prev = &e.validators
		}
	}
	d, err := c.get(ctx, src, prev)
	if err != nil {
		return "", 0, err
	}
	if d.notModified {
		tree := filepath.Join(c.entryDir(id), e.Tree)
		if err := c.hold(holder, tree); err != nil {
			return "", 0, err
		}
		c.touch(id)
		return tree, 0, nil
	}
	defer os.Remove(d.path)
	f, err := os.Open(d.path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	if err := os.MkdirAll(c.entryDir(id), 0o700); err != nil {
		return "", 0, err
	}
	tree, err := os.MkdirTemp(c.entryDir(id), "tree-")
	if err != nil {
		return "", 0, err
	}
	// The tree is mounted read-only for any container user to read.
	if err := os.Chmod(tree, 0o755); err != nil {
		return "", 0, err
	}
	root, err := os.OpenRoot(tree)
	if err != nil {
		return "", 0, err
	}
	n, err := extract(ctx, f, root)
	root.Close()
	if err != nil {
		os.RemoveAll(tree)
		return "", 0, err
	}
	c.makeRoom(logger, n, id)
	c.mu.Lock()
	old := c.entries[id]
	c.mu.Unlock()
	ne := &entry{Key: src.CacheKey, Kind: kindTree, URL: redact(src.URL), validators: d.validators, Digests: d.digests,
		Size: n, Tree: filepath.Base(tree)}
	c.store(logger, id, ne)
	if old != nil && old.Kind == kindTree {
		c.mu.Lock()
		c.removeUnheld(filepath.Join(c.entryDir(id), old.Tree))
		c.mu.Unlock()
	} else if old != nil {
		os.Remove(filepath.Join(c.entryDir(id), "archive"))
	}
	if err := c.hold(holder, tree); err != nil {
		return "", 0, err
	}
	return tree, d.size, nil
}

// store records id's new entry and persists it.
func (c *Cache) store(logger lager.Logger, id string, e *entry) {
	e.LastUsed = c.cfg.Clock.Now()
	c.mu.Lock()
	c.entries[id] = e
	c.mu.Unlock()
	c.saveMeta(logger, id, e)
}

func (c *Cache) saveMeta(logger lager.Logger, id string, e *entry) {
	b, err := json.Marshal(e)
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(c.entryDir(id), "meta.json"), b, 0o600, atomicfile.NoSync)
	}
	if err != nil {
		// The content is still served; a restarted agent drops the entry.
		logger.Error("save-cache-entry", err, lager.Data{"cache-key": e.Key})
	}
}

// touch marks id used now (in memory; persisted with the next change).
func (c *Cache) touch(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[id]; ok {
		e.LastUsed = c.cfg.Clock.Now()
	}
}

// drop forgets id's archive entry before new content replaces it.
func (c *Cache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[id]; ok && e.Kind == kindArchive {
		delete(c.entries, id)
	}
}

// makeRoom evicts entries, least recently used first, until need more
// bytes fit under MaxBytes. Entries whose tree a container holds, and
// except (the one being filled), stay.
func (c *Cache) makeRoom(logger lager.Logger, need int64, except string) {
	c.mu.Lock()
	var total int64
	var candidates []string
	for id, e := range c.entries {
		total += e.Size
		_, fetching := c.keyLocks[id]
		if id == except || fetching || (e.Kind == kindTree && len(c.holders[filepath.Join(c.entryDir(id), e.Tree)]) > 0) {
			continue
		}
		candidates = append(candidates, id)
	}
	sort.Slice(candidates, func(i, j int) bool {
		return c.entries[candidates[i]].LastUsed.Before(c.entries[candidates[j]].LastUsed)
	})
	var victims []string
	for _, id := range candidates {
		if total+need <= c.cfg.MaxBytes {
			break
		}
		total -= c.entries[id].Size
		logger.Info("cache-evict", lager.Data{"cache-key": c.entries[id].Key, "bytes": c.entries[id].Size})
		delete(c.entries, id)
		victims = append(victims, id)
	}
	for _, id := range victims {
		c.removeUnheld(c.entryDir(id))
	}
	c.mu.Unlock()
}

// hold records that holder uses tree, on disk too (holders/HOLDER), so a
// restarted agent keeps the trees its adopted containers mount.
func (c *Cache) hold(holder, tree string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holders[tree] == nil {
		c.holders[tree] = map[string]bool{}
	}
	c.holders[tree][holder] = true
	return c.saveHolderLocked(holder)
}

func (c *Cache) saveHolderLocked(holder string) error {
	var trees []string
	for tree, hs := range c.holders {
		if hs[holder] {
			trees = append(trees, tree)
		}
	}
	path := filepath.Join(c.holdersDir(), holder)
	if len(trees) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	sort.Strings(trees)
	b, _ := json.Marshal(trees)
	return atomicfile.WriteFile(path, b, 0o600, atomicfile.SyncFile)
}

func (c *Cache) loadHolders() error {
	files, err := os.ReadDir(c.holdersDir())
	if err != nil {
		return err
	}
	for _, f := range files {
		if atomicfile.IsTemp(f.Name()) {
			os.Remove(filepath.Join(c.holdersDir(), f.Name()))
			continue
		}
		b, err := os.ReadFile(filepath.Join(c.holdersDir(), f.Name()))
		if err != nil {
			return err
		}
		var trees []string
		if err := json.Unmarshal(b, &trees); err != nil {
			return fmt.Errorf("holders of %s: %w", f.Name(), err)
		}
		for _, t := range trees {
			if c.holders[t] == nil {
				c.holders[t] = map[string]bool{}
			}
			c.holders[t][f.Name()] = true
		}
	}
	return nil
}

// Release drops every tree holder holds; a tree that is no longer any
// entry's current one and that nobody else holds is removed. Safe to repeat.
func (c *Cache) Release(holder string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for tree, hs := range c.holders {
		if !hs[holder] {
			continue
		}
		delete(hs, holder)
		if len(hs) == 0 {
			delete(c.holders, tree)
			if !c.isCurrentLocked(tree) {
				os.RemoveAll(tree)
			}
		}
	}
	return c.saveHolderLocked(holder)
}

// ReleaseUnless releases every holder keep answers false for (containers
// the store no longer has).
func (c *Cache) ReleaseUnless(keep func(holder string) bool) error {
	c.mu.Lock()
	gone := map[string]bool{}
	for _, hs := range c.holders {
		for h := range hs {
			if !keep(h) {
				gone[h] = true
			}
		}
	}
	c.mu.Unlock()
	var errs []error
	for h := range gone {
		errs = append(errs, c.Release(h))
	}
	return errors.Join(errs...)
}

func (c *Cache) isCurrentLocked(tree string) bool {
	for id, e := range c.entries {
		if e.Kind == kindTree && filepath.Join(c.entryDir(id), e.Tree) == tree {
			return true
		}
	}
	return false
}
