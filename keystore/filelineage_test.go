package keystore_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/keystore/admintest"
)

// blockedOn reports whether some flock waits on the file at path: a line
// of /proc/locks marked "->" names a blocked request, with the file's
// device and inode.
func blockedOn(t *testing.T, path string) bool {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := info.Sys().(*syscall.Stat_t)
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	ino := ":" + strconv.FormatUint(st.Ino, 10) + " "
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, "->") && strings.Contains(line, "FLOCK") && strings.Contains(line+" ", ino) {
			return true
		}
	}
	return false
}

// TestFileCreateRevokeInterleaved: see admintest.CreateRevokeInterleaved;
// the revocation goes through another admin, as another process would.
func TestFileCreateRevokeInterleaved(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the barrier reads /proc/locks (Linux only)")
	}
	path := filepath.Join(t.TempDir(), "keys.json")
	creator := &keystore.FileTokenManager{Path: path}
	admintest.CreateRevokeInterleaved(t, creator, &keystore.FileTokenManager{Path: path},
		func(f func()) { keystore.SetBeforeInsert(creator, f) },
		func() bool { return blockedOn(t, path+".lock") })
}
