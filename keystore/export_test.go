package keystore

// SetBeforeInsert sets the hook FileTokenManager.Create calls under the file
// lock, after its checks and before its write (for the interleaving test).
func SetBeforeInsert(a *FileTokenManager, f func()) { a.beforeInsert = f }
