package testkit

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback address ("127.0.0.1:PORT") that was free a
// moment ago, for a program the test starts that takes an address rather
// than a listener.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
