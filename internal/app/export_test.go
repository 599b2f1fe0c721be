package app

// SetLoopDone sets the hook told when each of the API's background
// goroutines ends, for the tests of package app_test.
func SetLoopDone(o *APIOptions, f func(name string)) { o.loopDone = f }
