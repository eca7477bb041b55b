//go:build !unix

package main

import iofs "io/fs"

func describeOwner(iofs.FileInfo) string { return "" }
