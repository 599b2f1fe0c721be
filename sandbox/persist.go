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
	"time"

	"github.com/keyrot/keyrot/internal/atomicfile"
)

const stateFile = "state.json"

// persister keeps DATADIR/state.json up to date: services signal a change,
// a background goroutine coalesces the signals and writes the file
// atomically, and close writes it one last time.
type persister struct {
	dir    string
	logger *slog.Logger

	names    []string
	services map[string]persistent

	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	writeMu sync.Mutex // one write at a time
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

// signal tells the persister that some state changed. It never blocks.
func (p *persister) signal() {
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

// loop writes the state at most every 50ms while changes keep coming.
func (p *persister) loop() {
	defer close(p.done)
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
		}
		if err := p.flush(); err != nil {
			p.logger.Error("persist state", "dir", p.dir, "err", err)
		}
		select {
		case <-p.stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// close stops the background writer and writes the final state.
func (p *persister) close() error {
	p.once.Do(func() { close(p.stop) })
	<-p.done
	return p.flush()
}

// flush writes every service's snapshot to state.json atomically: a
// temporary file in the same directory, fsync, rename, fsync the directory.
func (p *persister) flush() error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
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
	return nil
}
