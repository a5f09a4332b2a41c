// Command xcaddy-build is a Caddy binary with the standard modules and
// deplo_auth, for development and the integration tests:
//
//	go build -o caddy ./cmd/xcaddy-build
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/deplo-sh/deplo-auth/caddymodule"
	_ "github.com/deplo-sh/deplo-auth/cli"
)

func main() {
	caddycmd.Main()
}
