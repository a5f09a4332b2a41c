package jwtauth_test

import (
	"context"
	"fmt"
	"time"

	"github.com/deplo-sh/deplo-auth/jwtauth"
)

func Example() {
	secret := []byte("example-secret-0123456789abcdefghijklmnop")
	v, err := jwtauth.New(context.Background(), jwtauth.Config{
		Algorithms:  []string{"HS256"},
		Secret:      secret,
		Issuer:      "https://dash.deplo.sh",
		MaxLifetime: 15 * time.Minute,
	})
	if err != nil {
		panic(err)
	}
	defer v.Close()

	now := time.Now()
	token, _ := jwtauth.Mint("HS256", secret, "", map[string]any{
		"iss": "https://dash.deplo.sh", "sub": "user_42", "workspace": "ws_acme",
		"scope": "read deploy", "iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(),
	})
	if !jwtauth.LooksLikeJWT(token) {
		panic("not a JWT")
	}
	s, err := v.Verify(token, now)
	fmt.Println(s.Principal.Subject, s.Principal.Workspace, s.Principal.Scopes, err)

	_, err = v.Verify(token, now.Add(time.Hour))
	fmt.Println(jwtauth.Reason(err))
	// Output:
	// user_42 ws_acme deploy read <nil>
	// jwt_expired
}
