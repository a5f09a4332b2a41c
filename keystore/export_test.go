package keystore

// SetBeforeInsert sets the hook FileAdmin.Create calls under the file
// lock, after its checks and before its write (for the interleaving test).
func SetBeforeInsert(a *FileAdmin, f func()) { a.beforeInsert = f }
