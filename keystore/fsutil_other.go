//go:build !unix

package keystore

import "os"

// syncDir is a no-op where directories cannot be fsynced.
func syncDir(string) error { return nil }

// keepOwner is a no-op where files have no unix owner.
func keepOwner(*os.File, os.FileInfo) {}
