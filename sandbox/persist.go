package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyrot/keyrot/internal/atomicfile"
)

const stateFile = "state.json"

// persister keeps DATADIR/state.json up to date: services signal a change,
// a background goroutine coalesces the signals and writes the file
// atomically, and close writes it one last time. A call that changed the
// state is answered only once the change is on disk (sync), as AWS answers
// only committed writes: a sandbox killed with -9 and restarted on its data
// has every change it acknowledged. Last-use records (touch) are written
// in the background only.
type persister struct {
	dir    string
	logger *slog.Logger

	names    []string
	services map[string]persistent

	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	changes atomic.Uint64 // changes signalled so far
	touched atomic.Bool   // a change not counted in changes is not on disk
	writeMu sync.Mutex    // one write at a time
	written uint64        // changes on disk; guarded by writeMu
	once    sync.Once
}

func newPersister(dir string, logger *slog.Logger) *persister {
	return &persister{
		dir:      dir,
		logger:   logger,
		services: map[string]persistent{},
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// register adds a service under name, if it is persistent.
func (p *persister) register(name string, svc any) {
	ps, ok := svc.(persistent)
	if !ok {
		return
	}
	p.names = append(p.names, name)
	p.services[name] = ps
}

// signal tells the persister that some state changed, to be on disk
// before the next sync returns. It never blocks.
func (p *persister) signal() {
	p.changes.Add(1)
	p.wake()
}

// touch asks for a background write of a change that need not be on disk
// before its call is answered. It never blocks.
func (p *persister) touch() {
	p.touched.Store(true)
	p.wake()
}

func (p *persister) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// load restores each service from the state file, if there is one.
func (p *persister) load() error {
	b, err := os.ReadFile(filepath.Join(p.dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	var state map[string]json.RawMessage
	if err := json.Unmarshal(b, &state); err != nil {
		return fmt.Errorf("decode state file %q: %w", stateFile, err)
	}
	for _, name := range p.names {
		raw, ok := state[name]
		if !ok {
			continue
		}
		if err := p.services[name].restore(raw); err != nil {
			return fmt.Errorf("restore %s: %w", name, err)
		}
	}
	return nil
}

func (p *persister) start() {
	go p.loop()
}

// backgroundEvery spaces the background writes: a call that changed the
// state has written it already (sync), so these carry last-use records and
// the admin endpoints' changes, which need not be on disk at once.
const backgroundEvery = 500 * time.Millisecond

// loop writes the state at most every backgroundEvery while changes keep
// coming.
func (p *persister) loop() {
	defer close(p.done)
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
		}
		if err := p.flushPending(); err != nil {
			p.logger.Error("persist state", "dir", p.dir, "err", err)
		}
		select {
		case <-p.stop:
			return
		case <-time.After(backgroundEvery):
		}
	}
}

// close stops the background writer and writes the final state.
func (p *persister) close() error {
	p.once.Do(func() { close(p.stop) })
	<-p.done
	return p.flush()
}

// flushPending writes the state if a change is not on disk yet.
func (p *persister) flushPending() error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	if !p.touched.Load() && p.written >= p.changes.Load() {
		return nil // the calls that made the changes wrote them
	}
	return p.flushLocked()
}

// sync returns once every change signalled before it was called is on
// disk, writing the file if a change is not.
func (p *persister) sync() error {
	want := p.changes.Load()
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	if p.written >= want {
		return nil // another call's write took ours with it
	}
	return p.flushLocked()
}

// flush writes every service's snapshot to state.json atomically: a
// temporary file in the same directory, fsync, rename, fsync the directory.
func (p *persister) flush() error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	return p.flushLocked()
}

func (p *persister) flushLocked() error {
	upTo := p.changes.Load() // the snapshots below include at least these
	p.touched.Store(false)
	state := make(map[string]json.RawMessage, len(p.names))
	for _, name := range p.names {
		raw, err := p.services[name].snapshot()
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", name, err)
		}
		state[name] = raw
	}
	b, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := atomicfile.Write(p.dir, stateFile, append(b, '\n')); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	p.written = upTo
	return nil
}
