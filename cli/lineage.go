package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/keystore"
)

// tokenRotateCommand is "token rotate <id> | --self [--grace <duration>]".
func tokenRotateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate " + tokenModes + " [--workspace <ws>] [--grace <duration>] (<token id> | --self)",
		Short: "Replaces a token with a new one (printed once on stdout); the old one stops now, or after --grace",
		Long: "Replaces a token with a new one (printed once on stdout); the old one stops now, or after --grace.\n" +
			"With --api, --workspace is required.\n\n" + tokenModesHelp,
		Args: cobra.MaximumNArgs(1),
	}
	store := addStoreFlags(cmd)
	grace := cmd.Flags().Duration("grace", 0, "how long the old token keeps working, at most 168h (default: it stops at once)")
	self := cmd.Flags().Bool("self", false, "rotate the token in $DEPLO_KEY")
	api := addAPIFlags(cmd)
	addAdminFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		switch {
		case *self == (len(args) == 1):
			return errors.New("name the token to rotate, or give --self to rotate the one in $DEPLO_KEY")
		case *grace < 0 || *grace > 7*24*time.Hour:
			return errors.New("--grace: want a duration from 0s to 168h")
		}
		id := "self"
		if !*self {
			id = args[0]
		}
		c, err := api.client(cmd)
		if err != nil {
			return err
		}
		if c != nil {
			if err := adminWithAPI(cmd); err != nil {
				return err
			}
			var made struct{ ID, Token string }
			if err := c.call(cmd.Context(), http.MethodPost, c.tokensURL(id)+"/rotate",
				map[string]string{"grace": grace.String()}, &made); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "rotated into token %s through %s; it is shown once:\n", printable(made.ID), c.base)
			fmt.Fprintln(cmd.OutOrStdout(), printable(made.Token))
			return nil
		}
		return rotateInStore(cmd, store, id, *grace)
	}
	return cmd
}

// rotateInStore rotates in the key store the flags name, as the operator.
func rotateInStore(cmd *cobra.Command, store storeFlags, id string, grace time.Duration) error {
	admin, where, gw, closeStore, err := store.openTold(cmd)
	if err != nil {
		return err
	}
	defer closeStore()
	var old keystore.TokenRecord
	if id == "self" {
		if old, err = tokenOfKey(cmd.Context(), admin); err != nil {
			return err
		}
	} else if old, err = admin.Token(cmd.Context(), id); err != nil {
		return err
	}
	if ws, _ := cmd.Flags().GetString("workspace"); ws != "" && ws != old.Workspace {
		return keystore.NoTokenError("rotate token", old.ID)
	}
	raw, err := apikey.Generate()
	if err != nil {
		return err
	}
	newID, err := keystore.NewTokenID()
	if err != nil {
		return err
	}
	e, err := admin.Rotate(cmd.Context(), keystore.RotateRequest{ID: old.ID, Workspace: old.Workspace,
		NewID: newID, NewHash: apikey.Sum(raw).String(), Grace: grace})
	var reuse *keystore.ReuseError
	if errors.As(err, &reuse) {
		_ = gw.announce(cmd.Context(), store, old.Hash)
		return fmt.Errorf("token %s was rotated before: it and the %d tokens of its family are now revoked", old.ID, len(reuse.Revoked))
	}
	if err != nil {
		return err
	}
	announced := gw.announce(cmd.Context(), store, old.Hash)
	if err := gw.announce(cmd.Context(), store, e.Hash); announced == nil {
		announced = err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "rotated %s into token %s in %s; it is shown once:\n", old.ID, e.ID, where)
	fmt.Fprintln(cmd.OutOrStdout(), raw)
	return announced
}

// tokenOfKey finds the token of $DEPLO_KEY in the store, by its hash.
func tokenOfKey(ctx context.Context, admin keystore.TokenManager) (keystore.TokenRecord, error) {
	key := os.Getenv("DEPLO_KEY")
	if apikey.Check(key, false) != nil {
		return keystore.TokenRecord{}, errors.New("--self: $DEPLO_KEY does not hold an API token (sk_live_…)")
	}
	want := apikey.Sum(key).String()
	recs, err := admin.ListTokens(ctx, "")
	if err != nil {
		return keystore.TokenRecord{}, err
	}
	for _, r := range recs {
		if r.Hash == want {
			return r, nil
		}
	}
	return keystore.TokenRecord{}, keystore.NoTokenError("rotate token", "")
}

// revokeCreatedBy is "token revoke --created-by <tok_id|session:<sid>|user:<sub>>".
func revokeCreatedBy(cmd *cobra.Command, store storeFlags, api apiFlags, by string) error {
	f, err := keystore.ParseCreatorFilter(by)
	if err != nil {
		return fmt.Errorf("--created-by: %w", err)
	}
	workspace, _ := cmd.Flags().GetString("workspace")
	if workspace == "" {
		return errors.New("--created-by needs --workspace")
	}
	c, err := api.client(cmd)
	if err != nil {
		return err
	}
	var ids []string
	if c != nil {
		if err := adminWithAPI(cmd); err != nil {
			return err
		}
		var out struct{ Revoked []string }
		if err := c.call(cmd.Context(), http.MethodDelete, c.tokensURL("")+"?created_by="+url.QueryEscape(by), nil, &out); err != nil {
			return err
		}
		ids = out.Revoked
	} else {
		admin, _, gw, closeStore, err := store.openTold(cmd)
		if err != nil {
			return err
		}
		defer closeStore()
		if ids, err = admin.RevokeCreatedBy(cmd.Context(), workspace, "", f, time.Time{}); err != nil {
			return err
		}
		if err := announceIDs(cmd.Context(), gw, store, admin, ids); err != nil {
			return err
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "revoked %d tokens created by %s\n", len(ids), printable(by))
	for _, id := range ids {
		fmt.Fprintln(cmd.OutOrStdout(), printable(id))
	}
	return nil
}

// announceIDs tells the gateway of the revoked tokens: a key file once, a
// PostgreSQL store token by token.
func announceIDs(ctx context.Context, gw gateway, store storeFlags, admin keystore.TokenManager, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if orEnv(store.file, keysFileEnv) != "" {
		return gw.announce(ctx, store, "")
	}
	for _, id := range ids {
		rec, err := admin.Token(ctx, id)
		if err != nil {
			return err
		}
		if err := gw.announce(ctx, store, rec.Hash); err != nil {
			return err
		}
	}
	return nil
}
