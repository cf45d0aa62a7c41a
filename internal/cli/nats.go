package cli

import (
	"fmt"
	"io"

	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/natsauth"
)

// natsCmd prints eventline's NATS accounts, identities and permissions
// (internal/natsauth) for a server: deploy/nats/auth.conf and the Helm
// values are this output.
func natsCmd(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "config" {
		return usageError{"nats: say config"}
	}
	var helm bool
	var issuer, xkey string
	set := config.New("eventline nats config")
	set.Bool(&helm, "helm", "EVENTLINE_NATS_HELM", false, "print YAML for the NATS Helm chart's config.merge instead")
	set.String(&issuer, "callout-issuer", "NATS_CALLOUT_ISSUER", "", "public account nkey (A...) that signs the auth callout's answers; empty: no callout")
	set.String(&xkey, "callout-xkey", "NATS_CALLOUT_XKEY", "", "public curve key (X...) the server encrypts callout requests with (optional)")
	if err := parse(set, args[1:]); err != nil {
		return err
	}
	var c natsauth.Config
	if issuer != "" {
		c.Callout = &natsauth.Callout{Issuer: issuer, XKey: xkey}
	} else if xkey != "" {
		return usageError{"nats config: --callout-xkey needs --callout-issuer"}
	}
	if !helm {
		_, err := io.WriteString(stdout, c.Conf())
		return err
	}
	out, err := c.Helm()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s", out)
	return err
}
