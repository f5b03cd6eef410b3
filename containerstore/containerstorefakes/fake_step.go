package containerstorefakes

// Written by hand: counterfeiter makes no fakes of generic interfaces.

import (
	"context"
	"sync"

	lager "code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/containerstore"
)

// FakeStep is a containerstore.SetupStep[R] in counterfeiter's manner:
// each method calls its Stub when set, or answers what Returns set.
type FakeStep[R containerstore.Result] struct {
	NameStub       func() string
	SetupStub      func(context.Context, lager.Logger, containerstore.Instance) (R, error)
	TeardownStub   func(context.Context, lager.Logger, string) error
	mu             sync.RWMutex
	name           string
	setupArgs      []containerstore.Instance
	setupResult    R
	setupErr       error
	teardownArgs   []string
	teardownErr    error
	teardownOnCall map[int]error
}

var _ containerstore.SetupStep[containerstore.NetworkResult] = (*FakeStep[containerstore.NetworkResult])(nil)

func (f *FakeStep[R]) Name() string {
	f.mu.RLock()
	stub, name := f.NameStub, f.name
	f.mu.RUnlock()
	if stub != nil {
		return stub()
	}
	return name
}

// NameReturns sets what Name answers.
func (f *FakeStep[R]) NameReturns(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.name = name
}

func (f *FakeStep[R]) Setup(ctx context.Context, logger lager.Logger, in containerstore.Instance) (R, error) {
	f.mu.Lock()
	f.setupArgs = append(f.setupArgs, in)
	stub, res, err := f.SetupStub, f.setupResult, f.setupErr
	f.mu.Unlock()
	if stub != nil {
		return stub(ctx, logger, in)
	}
	return res, err
}

// SetupReturns sets what Setup answers (and drops SetupStub).
func (f *FakeStep[R]) SetupReturns(res R, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.SetupStub = nil
	f.setupResult, f.setupErr = res, err
}

// SetupCallCount is how many times Setup was called.
func (f *FakeStep[R]) SetupCallCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.setupArgs)
}

// SetupArgsForCall answers the i-th Setup's instance.
func (f *FakeStep[R]) SetupArgsForCall(i int) containerstore.Instance {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.setupArgs[i]
}

func (f *FakeStep[R]) Teardown(ctx context.Context, logger lager.Logger, guid string) error {
	f.mu.Lock()
	n := len(f.teardownArgs)
	f.teardownArgs = append(f.teardownArgs, guid)
	stub, err := f.TeardownStub, f.teardownErr
	if e, ok := f.teardownOnCall[n]; ok {
		err = e
	}
	f.mu.Unlock()
	if stub != nil {
		return stub(ctx, logger, guid)
	}
	return err
}

// TeardownReturns sets what Teardown answers (and drops TeardownStub).
func (f *FakeStep[R]) TeardownReturns(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.TeardownStub = nil
	f.teardownErr = err
}

// TeardownReturnsOnCall sets what the i-th Teardown answers (and drops
// TeardownStub).
func (f *FakeStep[R]) TeardownReturnsOnCall(i int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.TeardownStub = nil
	if f.teardownOnCall == nil {
		f.teardownOnCall = map[int]error{}
	}
	f.teardownOnCall[i] = err
}

// TeardownCallCount is how many times Teardown was called.
func (f *FakeStep[R]) TeardownCallCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.teardownArgs)
}

// TeardownArgsForCall answers the i-th Teardown's guid.
func (f *FakeStep[R]) TeardownArgsForCall(i int) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.teardownArgs[i]
}
